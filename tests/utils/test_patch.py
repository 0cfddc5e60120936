"""Patches: attributes put back exactly; patches deferred until a module is imported."""
import sys
import types

import pytest

from gluon_bn.utils.patch import Patches


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package `bookpkg` with a module `mxnet_part` that is not imported yet."""
    (tmp_path / 'bookpkg').mkdir()
    (tmp_path / 'bookpkg' / '__init__.py').write_text('')
    (tmp_path / 'bookpkg' / 'mxnet_part.py').write_text(
        'def try_gpu():\n    return "book"\n\ndef uses():\n    return try_gpu()\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    yield 'bookpkg.mxnet_part'
    for name in ('bookpkg.mxnet_part', 'bookpkg'):
        sys.modules.pop(name, None)


def test_a_patch_waits_for_the_import_and_comes_off(package):
    patches, seen = Patches(), []

    def apply(module):
        seen.append(module.__name__)
        patches.set(module, 'try_gpu', lambda: 'patched')
    patches.when_imported(package, apply)
    assert seen == [] and package not in sys.modules
    from bookpkg import mxnet_part
    assert seen == [package] and mxnet_part.uses() == 'patched'
    assert mxnet_part.__spec__.origin.endswith('mxnet_part.py')   # the usual module otherwise
    patches.undo()
    assert mxnet_part.uses() == 'book' and not any(
        type(f).__name__ == '_AfterImport' for f in sys.meta_path)


def test_a_module_imported_already_is_patched_at_once(package):
    __import__(package)
    patches = Patches()
    patches.when_imported(package, lambda m: patches.set(m, 'try_gpu', lambda: 'now'))
    assert sys.modules[package].uses() == 'now'
    patches.undo()
    assert sys.modules[package].uses() == 'book'


def test_an_inherited_attribute_is_deleted_again_not_pinned():
    class Base:
        def f(self):
            return 'base'

    class Child(Base):
        pass
    patches = Patches()
    patches.set(Child, 'f', lambda self: 'child')
    assert Child().f() == 'child'
    patches.undo()
    assert 'f' not in vars(Child) and Child().f() == 'base'
    module = types.ModuleType('m')
    patches.set(module, 'new', 1)
    patches.undo()
    assert not hasattr(module, 'new')
