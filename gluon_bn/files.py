"""Result files: checked before a long run, written whole or not at all, never lost."""
import os
import tempfile


def unwritable(path):
    """Why a file cannot be written at `path`, or None. Tried for real (a scratch file in the
    folder), since permissions do not tell: root ignores them, /proc refuses everyone."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return f"{path} is a folder"
    if os.path.exists(path) and not os.path.isfile(path):
        return f"{path} is not a regular file"
    if not os.path.isdir(folder):
        return f"folder {folder} does not exist"
    try:
        fd, scratch = tempfile.mkstemp(dir=folder, prefix='.write-test-')
    except OSError as error:
        return f"cannot write in {folder} ({error.strerror or error})"
    os.close(fd)
    os.unlink(scratch)
    return None


def write_atomically(path, content):
    """Write bytes to a temporary file beside `path`, flush, then rename it: never half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path) + '.')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def write_or_keep(path, content):
    """Write `content` to `path`; if that fails, keep it in a new file in the temporary folder.
    Returns (the file that holds it, the error that stopped `path` or None)."""
    try:
        write_atomically(path, content)
        return path, None
    except OSError as error:
        name, suffix = os.path.splitext(os.path.basename(path))
        fd, kept = tempfile.mkstemp(prefix=f'{name}-', suffix=suffix)
        with os.fdopen(fd, 'wb') as f:
            f.write(content)
        return kept, error
