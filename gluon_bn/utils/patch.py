"""Attributes replaced on modules and classes, and put back exactly as they were."""
import ast
import importlib.abc
import importlib.util
import sys

_ABSENT = object()


class Patches:
    """A record of replaced attributes, undone in reverse order.

    `vars(owner)` is read rather than getattr, so an attribute a class only inherited is deleted
    again on undo() instead of being pinned on the subclass.

    when_imported(name, apply) defers patches to a module that may never be imported: apply
    (module) runs as soon as the module has been executed, or at once if it already was.
    """

    def __init__(self):
        self._saved = []

    def __bool__(self):
        return bool(self._saved)

    def set(self, owner, name, value):
        self._saved.append((owner, name, vars(owner).get(name, _ABSENT)))
        setattr(owner, name, value)

    def when_imported(self, name, apply=None, transform=None):
        """apply(module) right after the module's code ran (at once if it has); transform(tree),
        if given, rewrites the module's syntax tree before it runs (only for a module not yet
        imported)."""
        if name in sys.modules:
            if apply is not None:
                apply(sys.modules[name])
            return
        finder = next((f for f in sys.meta_path if isinstance(f, _AfterImport)
                       and f.name == name), None)
        if finder is None:
            finder = _AfterImport(name)
            sys.meta_path.insert(0, finder)
        entry = (apply, transform)
        finder.entries.append(entry)
        self._saved.append((finder, entry, None))

    def undo(self):
        while self._saved:
            owner, name, old = self._saved.pop()
            if isinstance(owner, _AfterImport):
                owner.entries.remove(name)
                if not owner.entries and owner in sys.meta_path:
                    sys.meta_path.remove(owner)
            elif old is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, old)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds `name` as the other finders do; its loader runs the module's code (rewritten by
    the entries' transforms) and then the entries' applies. The module and its spec are
    otherwise the usual ones."""

    def __init__(self, name):
        self.name, self.entries, self._finding = name, [], False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._finding = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _ApplyingLoader(spec.loader, list(self.entries))
        return spec


class _ApplyingLoader(importlib.abc.Loader):
    def __init__(self, loader, entries):
        self._loader, self._entries = loader, entries

    def __getattr__(self, name):   # get_source, get_filename, ...: the real loader's
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        transforms = [t for _, t in self._entries if t is not None]
        source = self._loader.get_source(module.__name__) if transforms else None
        if source is None:
            self._loader.exec_module(module)
        else:
            tree = ast.parse(source, module.__spec__.origin)
            for transform in transforms:
                tree = transform(tree)
            code = compile(ast.fix_missing_locations(tree), module.__spec__.origin, 'exec')
            exec(code, module.__dict__)
        for apply, _ in self._entries:
            if apply is not None:
                apply(module)
