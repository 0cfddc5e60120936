"""The README's Python examples run as written, top to bottom, in one namespace (except those
fenced as `python no-run`, which take minutes: the training examples)."""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / 'README.md'


def test_readme_examples_run(capsys):
    blocks = re.findall(r'```python\n(.*?)```', README.read_text(), flags=re.S)
    assert len(blocks) >= 4
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), 'exec'), namespace)
    assert '(2, 10)' in capsys.readouterr().out
