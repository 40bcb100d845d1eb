"""History: the pandas DataFrame ``fit`` returns (one row per epoch) and its plot.

Importing this module imports pandas, so the package loads it on first use (``ember.History``, or
the first ``fit`` that returns one). Knows pandas and, inside ``plot``, matplotlib.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["History"]

_NOT_PLOTTED = {"epoch", "lr", "seconds"}


class History(pd.DataFrame):
    """A pandas DataFrame with one row per epoch: ``epoch, loss, <metric>..., val_*, lr, seconds``.

    Example:
        >>> h = History([{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}])
        >>> h["loss"].tolist()
        [0.5, 0.25]
    """

    @property
    def _constructor(self) -> type[History]:
        return History

    def plot(  # type: ignore[override]
        self, metrics: Sequence[str] | None = None, path: str | Path | None = None
    ) -> Any:
        """Draw each metric (and its ``val_`` twin on the same axes) against the epoch.

        Args:
            metrics: base names to draw (default: every column except epoch, lr, seconds).
            path: write a PNG there when given; without one, in a notebook the returned figure
                is shown below the cell.

        Returns:
            The matplotlib Figure (drawn without pyplot, so it works with no display).
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        names = (
            list(metrics)
            if metrics is not None
            else [c for c in self.columns if c not in _NOT_PLOTTED and not str(c).startswith("val_")]
        )
        figure = Figure(figsize=(4.5 * max(len(names), 1), 3.5), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.subplots(1, max(len(names), 1), squeeze=False)[0]
        epochs = self["epoch"] if "epoch" in self.columns else range(1, len(self) + 1)
        for ax, name in zip(axes, names, strict=False):
            for column, style in ((name, "o-"), (f"val_{name}", "s--")):
                if column in self.columns:
                    ax.plot(epochs, self[column], style, label=column)
            ax.set_xlabel("epoch")
            ax.set_title(name)
            ax.legend()
            ax.grid(alpha=0.3)
        if path is not None:
            figure.savefig(path, dpi=100)
        else:
            _show_returned_figures_inline()
        return figure


def _show_returned_figures_inline() -> None:
    """In a Jupyter kernel, have a returned Figure drawn as a PNG below the cell, as pyplot's
    inline backend would (the figure is made without pyplot, so nothing registered that yet)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None and getattr(shell, "kernel", None) is not None:
        from IPython.core.pylabtools import select_figure_formats

        select_figure_formats(shell, {"png"})
