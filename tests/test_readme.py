"""The README's Python examples run as written, top to bottom, in one namespace (except those
fenced as `python no-run`, which take minutes: the training examples). A block that ends in a
comment line shows what it prints: the output must hold it."""
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / 'README.md'


@pytest.mark.real_data
@pytest.mark.filterwarnings('ignore:Cannot decide type')   # SymbolBlock.imports, as MXNet says
def test_readme_examples_run_and_print_what_they_say(capsys):
    blocks = re.findall(r'```python\n(.*?)```', README.read_text(), flags=re.S)
    assert len(blocks) >= 6
    namespace, shown = {}, 0
    for block in blocks:
        exec(compile(block, str(README), 'exec'), namespace)
        out = capsys.readouterr().out
        last = block.rstrip().splitlines()[-1]
        if last.startswith('# '):
            assert last[2:] in out, (block, out)
            shown += 1
    assert shown >= 1
