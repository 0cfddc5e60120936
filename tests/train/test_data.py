"""The offline Fashion-MNIST loader: small IDX files written here, and the real files if present."""
import gzip
import struct

import d2lzh
import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from gluon_bn.book import compat
from gluon_bn.train import data
from gluon_bn.train.data import DataError, IdxSpec, read_idx


def idx_bytes(magic, items):
    return struct.pack(f'>{2 + items.ndim - 1}I', magic, *items.shape) + items.tobytes()


def write_gz(path, content):
    with gzip.open(path, 'wb') as f:
        f.write(content)
    return str(path)


IMAGES = np.arange(5 * 28 * 28, dtype=np.uint8).reshape(5, 28, 28)
LABELS = np.array([0, 9, 3, 3, 1], dtype=np.uint8)
IMAGE_SPEC = IdxSpec(data.IMAGES, 5, (28, 28))
LABEL_SPEC = IdxSpec(data.LABELS, 5, ())


def test_reads_valid_files(tmp_path):
    images = read_idx(write_gz(tmp_path / 'i.gz', idx_bytes(data.IMAGES, IMAGES)), IMAGE_SPEC)
    labels = read_idx(write_gz(tmp_path / 'l.gz', idx_bytes(data.LABELS, LABELS)), LABEL_SPEC)
    np.testing.assert_array_equal(images, IMAGES)
    np.testing.assert_array_equal(labels, LABELS)


def broken_files():
    good = idx_bytes(data.IMAGES, IMAGES)
    compressed = gzip.compress(good)
    return {   # name: (raw bytes of the file, words the error must contain)
        'truncated-gzip': (compressed[:len(compressed) // 2], ['not a complete gzip file']),
        'not-gzip': (good, ['not a complete gzip file']),
        'empty': (b'', ['shorter than an IDX header']),
        'wrong-magic': (gzip.compress(idx_bytes(2049, IMAGES)), ['magic number 2049', '2051']),
        'wrong-count': (gzip.compress(idx_bytes(data.IMAGES, IMAGES[:4])),
                        ['4 items', 'expected 5']),
        'wrong-image-size': (gzip.compress(idx_bytes(data.IMAGES, IMAGES.reshape(5, 56, 14))),
                             ['(56, 14)', '(28, 28)']),
        'truncated-content': (gzip.compress(good[:-100]), ['bytes after decompression']),
        'trailing-bytes': (gzip.compress(good + b'x'), ['bytes after decompression']),
    }


@pytest.mark.parametrize('name', broken_files())
def test_broken_file_raises_one_clear_error(tmp_path, name):
    raw, words = broken_files()[name]
    path = tmp_path / f'{name}.gz'
    path.write_bytes(raw)
    with pytest.raises(DataError) as raised:
        read_idx(str(path), IMAGE_SPEC)
    message = str(raised.value)
    for word in words + [str(path), 'apt-get install dataset-fashion-mnist']:
        assert word in message


def test_label_out_of_range(tmp_path):
    path = write_gz(tmp_path / 'l.gz', idx_bytes(data.LABELS, np.array([0, 10, 1, 2, 3], np.uint8)))
    with pytest.raises(DataError, match='label 10 out of range 0..9'):
        read_idx(path, LABEL_SPEC)


def test_content_digest_is_checked(tmp_path):
    path = write_gz(tmp_path / 'i.gz', idx_bytes(data.IMAGES, IMAGES))
    with pytest.raises(DataError, match='SHA-256 mismatch'):
        read_idx(path, IdxSpec(data.IMAGES, 5, (28, 28), sha256='0' * 64))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match='train-images-idx3-ubyte.gz: no such file'):
        data.load_fashion_mnist(True, root=str(tmp_path))


def test_a_folder_of_small_files_is_not_fashion_mnist(tmp_path):
    for split in data.FILES.values():
        for name, spec in split.items():
            items = IMAGES if spec.magic == data.IMAGES else LABELS
            write_gz(tmp_path / name, idx_bytes(spec.magic, items))
    with pytest.raises(DataError, match='5 items, expected 60000'):
        data.load_fashion_mnist(True, root=str(tmp_path))


@pytest.fixture
def nothing_local(tmp_path, monkeypatch):
    """No data anywhere the loader looks, and a download that records what it was asked."""
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, 'DEBIAN_DIR', str(tmp_path / 'debian'))
    monkeypatch.setenv('MXNET_HOME', str(tmp_path / 'mxnet'))
    asked = []

    def offline(url, path):
        asked.append((url, path))
        raise ConnectionError('no network')
    monkeypatch.setattr(gluon.utils, 'download', offline)
    return asked


def test_downloads_into_mxnets_cache_only_when_nothing_is_local(nothing_local, tmp_path):
    with pytest.raises(DataError) as raised:
        data.find_data_dir()
    url, path = nothing_local[0]
    assert url.endswith('train-images-idx3-ubyte.gz')
    assert path.startswith(str(tmp_path / 'mxnet' / 'datasets' / 'fashion-mnist'))
    assert 'ConnectionError' in str(raised.value) and str(tmp_path / 'debian') in str(raised.value)


def test_search_order(nothing_local, tmp_path, monkeypatch):
    folders = {name: tmp_path / name for name in ('env', 'debian')}
    for folder in folders.values():
        folder.mkdir()
        for split in data.FILES.values():
            for name in split:
                (folder / name).write_bytes(b'')
    monkeypatch.setenv(data.ENV_VAR, str(folders['env']))
    assert data.find_data_dir() == str(folders['env'])
    assert data.find_data_dir(root=str(tmp_path)) == str(tmp_path)
    monkeypatch.delenv(data.ENV_VAR)
    assert data.find_data_dir() == str(folders['debian'])
    assert nothing_local == []


def test_a_fashion_mnist_dir_that_lacks_the_files_is_refused_not_passed_over(nothing_local,
                                                                             tmp_path,
                                                                             monkeypatch):
    debian, chosen = tmp_path / 'debian', tmp_path / 'chosen'
    for folder in (debian, chosen):
        folder.mkdir()
    for split in data.FILES.values():
        for name in split:
            (debian / name).write_bytes(b'')
    (chosen / 't10k-labels-idx1-ubyte.gz').write_bytes(b'')
    monkeypatch.setenv(data.ENV_VAR, str(chosen))
    with pytest.raises(DataError) as raised:
        data.find_data_dir()
    assert str(raised.value) == (
        f"${data.ENV_VAR} is {chosen}, which does not hold train-images-idx3-ubyte.gz, "
        f"train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz; point it to the folder of the "
        f"four files, or unset it")
    assert nothing_local == []


def test_array_loader_batches_every_sample_once_reshuffled_each_epoch():
    images = np.arange(10, dtype=np.uint8)[:, None, None].repeat(28, 1).repeat(28, 2)
    labels = np.arange(10, dtype=np.int32)
    mx.random.seed(0)
    loader = data.ArrayLoader(images, labels, 4, shuffle=True)
    epochs = [[(X, y) for X, y in loader] for _ in range(2)]
    assert len(loader) == 3 and [X.shape[0] for X, _ in epochs[0]] == [4, 4, 2]
    orders = [np.concatenate([y.asnumpy() for _, y in epoch]) for epoch in epochs]
    assert sorted(orders[0]) == list(range(10)) and list(orders[0]) != list(orders[1])
    for X, y in epochs[0]:   # images stay with their labels, scaled to [0, 1]
        np.testing.assert_allclose(X.asnumpy()[:, 0, 0, 0], y.asnumpy() / 255, rtol=1e-6)
    assert X.dtype == np.float32 and y.dtype == np.int32 and X.shape[1:] == (1, 28, 28)
    unshuffled = data.ArrayLoader(images, labels, 4, shuffle=False, resize=14)
    X, y = next(iter(unshuffled))
    assert X.shape == (4, 1, 14, 14) and list(y.asnumpy()) == [0, 1, 2, 3]


@pytest.mark.real_data
def test_arrays_are_cut_to_the_train_size_then_sharded_between_workers():
    (images, labels), (test_images, _) = data.load_arrays(train_size=1000)
    shards = [data.load_arrays(train_size=1000, rank=rank, workers=3)[0] for rank in range(3)]
    assert images.shape == (1000, 28, 28) and test_images.shape == (10000, 28, 28)
    assert [len(shard_labels) for _, shard_labels in shards] == [334, 333, 333]
    for rank, (shard_images, shard_labels) in enumerate(shards):   # every third image
        np.testing.assert_array_equal(shard_images, images[rank::3])
        np.testing.assert_array_equal(shard_labels, labels[rank::3])


@pytest.mark.real_data
def test_real_files_verify_and_are_balanced():
    for train, count in ((True, 60000), (False, 10000)):
        images, labels = data.load_fashion_mnist(train, data.DEBIAN_DIR)
        assert images.shape == (count, 28, 28) and images.dtype == np.uint8
        np.testing.assert_array_equal(np.bincount(labels), [count // 10] * 10)


@pytest.mark.real_data
def test_fast_loader_yields_what_the_books_pipeline_yields():
    _, test_iter = data.load_data_fashion_mnist(256, root=data.DEBIAN_DIR, ctx=mx.cpu())
    with compat.offline(data.DEBIAN_DIR):   # d2lzh's own loader: ToTensor, 4 workers
        _, book_test_iter = d2lzh.load_data_fashion_mnist(256)
    for (X, y), (X_book, y_book), _ in zip(test_iter, book_test_iter, range(3)):
        np.testing.assert_array_equal(X.asnumpy(), X_book.asnumpy())
        np.testing.assert_array_equal(y.asnumpy(), y_book.asnumpy())


@pytest.mark.real_data
def test_a_training_set_larger_than_the_data_is_refused_not_recorded(cli):
    with pytest.raises(DataError, match=r'60,000.*--train-size 60000 or less'):
        data.load_arrays(train_size=100000)
    ran = cli('train', '--train-size', 100000, '--epochs', 1)
    assert ran.returncode == 1 and 'a training set of 100,000 images' in ran.stderr
    assert len(ran.stderr.splitlines()) == 1
