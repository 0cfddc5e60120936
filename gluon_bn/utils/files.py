"""Result files: checked before a long run, written whole or not at all, never lost."""
import contextlib
import os
import re
import secrets
import tempfile

# What write_atomically's temporary files are called: .NAME.XXXXXXXX.tmp beside NAME.
TEMPORARY = re.compile(r'^\..+\.[0-9a-f]{8}\.tmp$')


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


def unwritable_place(path, folder=False):
    """Why an output cannot be written at `path` (a file, or with `folder` a folder to write
    files in), or None. Folders still missing count as the program will make them: the nearest
    one that exists must take a new entry. Nothing is created. Checked before any work starts,
    so that hours of results are not lost at the end."""
    if folder and os.path.exists(path) and not os.path.isdir(path):
        return f"{path} is a file, not a folder"
    if not folder and os.path.isdir(os.path.dirname(os.path.abspath(path))):
        return unwritable(path)
    existing = os.path.abspath(path if folder else os.path.dirname(os.path.abspath(path)))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"{existing} is a file, where a folder would have to be made"
    return unwritable(os.path.join(existing, '.probe'))


def write_atomically(path, content):
    """Write bytes to `path` whole or not at all.

    They go to a temporary file beside `path` (.NAME.XXXXXXXX.tmp), which is flushed to disk and
    renamed over `path`; then the folder is flushed too, so that the rename survives a power
    cut. A crash at any moment leaves the old file or the new one, never half of one (a SIGKILL
    can leave the temporary file: `remove_leftovers`). The file gets the permissions the umask
    gives, as with open().
    """
    folder = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(folder, f'.{os.path.basename(path)}.{secrets.token_hex(4)}.tmp')
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, 'wb') as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):   # some file systems cannot flush a folder
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def remove_leftovers(folder):
    """Delete the temporary files write_atomically left in `folder` when its process was
    killed. Only for a folder this process holds (a checkpoint folder under its lock): another
    process's file being written would go too."""
    for name in os.listdir(folder):
        if TEMPORARY.match(name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, name))


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
