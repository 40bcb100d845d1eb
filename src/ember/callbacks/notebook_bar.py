"""NotebookBar: the progress bar inside a Jupyter notebook, without ipywidgets.

Each epoch's bar is one display below the cell (IPython's ``display`` with a display id), redrawn
in place at every refresh, so an epoch leaves exactly one line in the saved notebook whatever the
refresh rate; the text is tqdm's own meter. It offers the part of tqdm's interface that
``ProgressBar`` uses. Knows IPython (imported when a bar opens, inside a kernel only).
"""

from __future__ import annotations

import html
import time
from typing import Any

from tqdm import tqdm

__all__ = ["NotebookBar", "in_notebook"]


def in_notebook() -> bool:
    """True inside a Jupyter kernel (an IPython shell with a kernel attached)."""
    import sys

    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


class NotebookBar:
    """One epoch's bar as a display redrawn in place.

    Args:
        total: the epoch's steps (None when the data has no length).
        desc: the text before the meter (``Epoch 2/10``).
    """

    def __init__(self, total: int | None, desc: str) -> None:
        from IPython.display import display

        self.format_dict: dict[str, Any] = {"ncols": None}  # no width: values are never cut
        self.total = total
        self.desc = desc
        self.n = 0
        self._postfix = ""
        self._start = time.monotonic()
        self._handle = display(self._bundle(), raw=True, display_id=True)

    def update(self, steps: int) -> None:
        """Advance by ``steps`` (drawn at the next :meth:`refresh`)."""
        self.n += steps

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        """The values shown after the meter."""
        self._postfix = text
        if refresh:
            self.refresh()

    def refresh(self) -> None:
        """Redraw the display in place."""
        self._handle.update(self._bundle(), raw=True)

    def close(self) -> None:
        """Draw the final state (the display stays in the cell's output)."""
        self.refresh()

    def _bundle(self) -> dict[str, str]:
        text = tqdm.format_meter(
            self.n,
            self.total,
            time.monotonic() - self._start,
            prefix=self.desc,
            unit="step",
            postfix=self._postfix or None,
        )
        return {"text/plain": text, "text/html": f"<pre>{html.escape(text)}</pre>"}
