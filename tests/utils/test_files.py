"""The one atomic writer, and the check that a result file can be written."""
import errno
import os

import pytest

from gluon_bn.utils import files


@pytest.fixture
def umask():
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def test_a_file_written_whole_gets_the_permissions_the_umask_gives(tmp_path, umask):
    path = tmp_path / 'metrics.json'
    files.write_atomically(str(path), b'{}\n')
    path.with_name('plain').write_bytes(b'')   # what open() gives, for comparison
    assert path.read_bytes() == b'{}\n'
    assert path.stat().st_mode & 0o777 == 0o640 == path.with_name('plain').stat().st_mode & 0o777
    files.write_atomically(str(path), b'[]\n')   # replaced whole
    assert path.read_bytes() == b'[]\n' and sorted(os.listdir(tmp_path)) == ['metrics.json',
                                                                            'plain']


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    path = tmp_path / 'report.md'
    path.write_bytes(b'old')

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(files.os, 'fsync', full_disk)
    with pytest.raises(OSError, match='No space left on device'):
        files.write_atomically(str(path), b'new')
    assert path.read_bytes() == b'old' and os.listdir(tmp_path) == ['report.md']


def test_only_the_writers_own_leftovers_are_removed(tmp_path):
    names = ['.epoch-0002.ckpt.0123abcd.tmp', 'epoch-0001.ckpt', '.lock', '.notes.tmp',
             '.x.0123abcd.tmp.keep']
    for name in names:
        (tmp_path / name).write_bytes(b'')
    files.remove_leftovers(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == sorted(names[1:])


@pytest.mark.parametrize('where, problem', [
    ('/no/such/folder/out.json', 'folder /no/such/folder does not exist'),
    ('/tmp', '/tmp is a folder'),
    ('/dev/full', '/dev/full is not a regular file'),
    ('/proc/out.json', 'cannot write in /proc'),
])
def test_unwritable_says_why(where, problem):
    assert files.unwritable(where).startswith(problem)


def test_a_writable_place_is_fine_and_left_as_it_was(tmp_path):
    assert files.unwritable(str(tmp_path / 'out.json')) is None and os.listdir(tmp_path) == []
