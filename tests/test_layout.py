"""The package's layout is its architecture: each subpackage imports only what the README's
"Layout" table says it may, so dependencies run one way (no layer imports training)."""
import ast
import pathlib
import re

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'gluon_bn'
README = PACKAGE.parent / 'README.md'


def allowed():
    """subpackage -> the subpackages it may import, from the README's Layout table."""
    section = README.read_text().split('\n## Layout\n')[1].split('\n## ')[0]
    rows = re.findall(r'^\| `(\w+)/` \| [^|]+ \| ([^|]+) \|$', section, flags=re.M)
    return {name: set() if may.strip() == '-' else
            {part.strip().strip('`/') for part in may.split(',')} for name, may in rows}


def subpackage(module):
    """'gluon_bn.nn.sync' -> 'nn'; the top-level modules -> ''."""
    parts = module.split('.')
    return parts[1] if len(parts) > 2 or (PACKAGE / parts[-1]).is_dir() else ''


def imports(path):
    """The gluon_bn modules a file imports (relative imports resolved), with their lines."""
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    module = '.'.join(part for part in parts if part != '__init__')
    package = parts[:-1]   # the package the file is in
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = list(package[:len(package) - node.level + 1])
                base = '.'.join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
            # `from .. import ops` imports a module; `from ..nn import X` the package nn
            found += [(name if (PACKAGE.parent / name.replace('.', '/')).exists()
                       or (PACKAGE.parent / (name.replace('.', '/') + '.py')).exists() else base,
                       node.lineno) for name in names]
    return module, [(name, line) for name, line in found if name.split('.')[0] == 'gluon_bn']


def test_every_subpackage_is_in_the_readme_table_with_a_docstring():
    rules = allowed()
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / '__init__.py').exists())
    assert sorted(rules) == packages and len(packages) == 9
    for name in packages:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / '__init__.py').read_text()))
        assert doc and len(doc) > 100, name   # one paragraph at least, saying its job
    assert {p.name for p in PACKAGE.glob('*.py')} == {'__init__.py', '__main__.py'}


def test_dependencies_run_one_way():
    rules = allowed()
    broken = []
    for path in sorted(PACKAGE.rglob('*.py')):
        module, found = imports(path)
        here = subpackage(module)
        for name, line in found:
            there = subpackage(name)
            if here and there != here and there not in rules[here]:
                broken.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({here}) imports "
                              f"{name} ({there or 'gluon_bn'})")
    assert not broken, '\n'.join(broken)


def test_no_layer_imports_training_and_the_torch_worker_imports_neither_framework():
    assert 'train' not in allowed()['nn'] and 'nn' in allowed()['train']
    _, found = imports(PACKAGE / 'bench' / 'torch_peer.py')
    text = (PACKAGE / 'bench' / 'torch_peer.py').read_text()
    assert found == [] and 'import mxnet' not in text and 'from mxnet' not in text
