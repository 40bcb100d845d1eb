"""The docs chapters as Jupyter notebooks, executed on a real ipykernel with nbclient: every python
block of ``docs/0*.md`` becomes a code cell (jupytext; shell blocks are left out), and the outputs
must be clean: no error, nothing on stderr (no warnings), no carriage-return redraws. A fit's bar
is one display per epoch, redrawn in place. Also: a History renders as an HTML table and
``history.plot()`` shows inline."""

from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext", reason="the notebook extra is not installed (ember[notebook])")
nbformat = pytest.importorskip("nbformat", reason="the notebook extra is not installed (ember[notebook])")
nbclient = pytest.importorskip("nbclient", reason="the notebook extra is not installed (ember[notebook])")
pytest.importorskip("ipykernel", reason="the notebook extra is not installed (ember[notebook])")

DOCS = Path(__file__).resolve().parents[1] / "docs"


def execute(cells: list[str], folder: Path) -> list:
    """Run ``cells`` in a fresh python3 kernel with ``folder`` as the working directory."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for code in cells])
    resources = {"metadata": {"path": str(folder)}}
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3", resources=resources).execute()
    return notebook.cells


def python_cells(page: Path) -> list[str]:
    notebook = jupytext.reads(page.read_text(), fmt="md")
    return [c.source for c in notebook.cells if c.cell_type == "code" and not c.source.startswith("%%")]


def streams(cell, name: str) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == name)


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("0*.md")))
def test_docs_chapter_runs_as_a_clean_notebook(page, tmp_path):
    cells = execute(python_cells(DOCS / page), tmp_path)  # raises CellExecutionError on an error
    assert cells
    for number, cell in enumerate(cells, 1):
        assert streams(cell, "stderr") == "", f"{page}, cell {number} wrote to stderr"
        assert "\r" not in streams(cell, "stdout"), f"{page}, cell {number} redraws a line"


def test_fit_prints_one_line_per_epoch_and_history_shows_as_table_and_plot(tmp_path):
    setup = (
        "import torch, ember\n"
        "net = torch.nn.Linear(4, 2)\n"
        "model = ember.Model(net).compile(torch.nn.CrossEntropyLoss(), metrics=['accuracy'], device='cpu')\n"
        "x = torch.randn(640, 4); y = (x[:, 0] > 0).long()"
    )
    fit = "history = model.fit((x, y), epochs=3, batch_size=8, validation_data=(x, y))"
    cells = execute([setup, fit, "history", "history.plot()"], tmp_path)
    bars = [output.data["text/plain"] for output in cells[1].outputs]  # each redrawn in place
    assert [bar.split(":")[0] for bar in bars] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    assert all("100%" in bar and "80/80" in bar and "val_accuracy: " in bar for bar in bars)
    assert streams(cells[1], "stderr") == ""
    (table,) = cells[2].outputs
    assert "<table" in table.data["text/html"] and "val_accuracy" in table.data["text/html"]
    (plot,) = cells[3].outputs
    assert plot.data["image/png"]  # drawn inline below the cell
