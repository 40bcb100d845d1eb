"""The learning-rate range test: train briefly with a learning rate growing exponentially from
``start`` to ``end``, record the smoothed loss, suggest the rate where it falls fastest, and leave
the model, optimizer, gradient scaler and random streams exactly as they were. Each step is the
model's own ``train_step`` (clipping and the gradient scaler included). Layer 3: uses resume (RNG
states) and the loop's StepContext.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ember.data.adapt import as_batches
from ember.errors import ConfigError, DataError
from ember.loop import StepContext
from ember.optim import update_scaler
from ember.resume import restore_rng_states, rng_states

__all__ = ["LRFinderResult", "find_lr"]


@dataclass
class LRFinderResult:
    """Learning rates tried, the smoothed loss at each, and the suggested rate."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    suggestion: float | None = None

    def plot(self, path: str | Path | None = None) -> Any:
        """Loss against learning rate (log scale), the suggestion marked; a PNG when ``path`` is given."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(6, 4), layout="constrained")
        FigureCanvasAgg(figure)
        ax = figure.subplots()
        ax.plot(self.lrs, self.losses)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("smoothed loss")
        if self.suggestion is not None:
            ax.axvline(
                self.suggestion, linestyle="--", color="tab:red", label=f"suggestion {self.suggestion:.2e}"
            )
            ax.legend()
        if path is not None:
            figure.savefig(path, dpi=100)
        return figure


def _cycle(batches: Iterable[Any]) -> Iterator[Any]:
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise DataError("the data for find_lr yielded no batches")


def _steepest(lrs: list[float], losses: list[float]) -> float | None:
    if len(losses) < 5:
        return None
    slopes = np.gradient(np.asarray(losses), np.log(np.asarray(lrs)))
    skip = max(1, len(losses) // 10)  # the first points are noise
    return float(lrs[skip + int(np.argmin(slopes[skip:-1]))]) if len(losses) > skip + 1 else None


def find_lr(
    model: Any,
    data: Any,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    batch_size: int | None = None,
    smoothing: float = 0.98,
    diverge: float = 4.0,
) -> LRFinderResult:
    """Run the range test on a compiled ``model`` (see ``Model.find_lr``)."""
    if not 0 < start < end or steps < 2:
        raise ConfigError(f"find_lr needs 0 < start < end and steps >= 2, got {start}, {end}, {steps}")
    scaler = model.scaler
    saved = (
        copy.deepcopy(model.net.state_dict()),
        {name: copy.deepcopy(opt.state_dict()) for name, opt in model.optimizers.items()},
        rng_states(),
        None if scaler is None else copy.deepcopy(scaler.state_dict()),
    )
    batches = as_batches(data, batch_size, True, "find_lr data")  # after saving: it may draw a seed
    result, average, best = LRFinderResult(), 0.0, math.inf
    model.net.train()
    context, model.step_context = model.step_context, StepContext()
    try:
        for i, batch in zip(range(steps), _cycle(batches), strict=False):
            lr = start * (end / start) ** (i / (steps - 1))
            for optimizer in model.optimizers.values():  # every optimizer the step uses
                for group in optimizer.param_groups:
                    group["lr"] = lr
            out = model.train_step(batch)  # the fit's own step: clipping, the gradient scaler
            update_scaler(model.scaler)
            if out.loss is None:
                raise ConfigError("find_lr reads the loss train_step returns; this train_step returns none")
            value = float(out.loss.detach())
            average = smoothing * average + (1 - smoothing) * value
            smoothed = average / (1 - smoothing ** (i + 1))
            if not math.isfinite(smoothed) or smoothed > diverge * best:
                break
            best = min(best, smoothed)
            result.lrs.append(lr)
            result.losses.append(smoothed)
    finally:
        model.net.load_state_dict(saved[0])
        for name, optimizer in model.optimizers.items():
            optimizer.load_state_dict(saved[1][name])
        restore_rng_states(saved[2])
        model.step_context = context
        if scaler is not None:
            scaler.load_state_dict(saved[3])
    result.suggestion = _steepest(result.lrs, result.losses)
    return result
