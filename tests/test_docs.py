"""Every python block of docs/*.md runs, in order, page by page, in a temporary folder."""

import re
from pathlib import Path

import matplotlib
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("0*.md")))
def test_every_code_block_runs(page, tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    blocks = BLOCK.findall((DOCS / page).read_text())
    assert blocks, f"{page} has no python blocks"
    namespace: dict = {"__name__": "__docs__"}
    for number, code in enumerate(blocks, 1):
        try:
            exec(compile(code, f"{page}[block {number}]", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"{page}, block {number} failed: {exc!r}\n{code}") from exc
