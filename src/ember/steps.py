"""The training step of one fit call, chosen once when the fit starts (as Keras' make_train_function).

:class:`TrainFunction` wraps the model's ``train_step``, the user's override or the default one, so
there is one step body: called as it is, timed on its first call when the net is ``torch.compile``d
(the compilation happens there and goes to the ``compile_seconds`` column), or run through a
:class:`~ember.graphs.StepGraph` that captures that same ``train_step`` whole as a CUDA graph. Per
batch the loop hands it a :class:`~ember.loop.StepContext` (the loss scale of an uneven distributed
batch), which the model's helpers (``backward``, ``optimize``) apply; after every step it steps a
per-step LR scheduler, outside any captured graph, so a schedule changes what the replays read.
Layer 3: uses the loop's StepContext and StepOutput and the graphs' StepGraph.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from ember.accumulate import Accumulation, sample_count
from ember.graphs import StepGraph
from ember.loop import Recorder, StepContext, StepOutput
from ember.metrics.meter import Meter
from ember.optim import update_scaler

__all__ = ["TrainFunction"]


class TrainFunction:
    """``train_fn(batch, context) -> StepOutput`` for one fit call of ``model``.

    Args:
        model: the ``ember.Model`` being trained (its ``train_step``, scaler and scheduler).
        graphs: the model's StepGraph when ``compile(cuda_graphs=True)``, else None.
        jit: the net was compiled with ``torch.compile`` (the ``compile_seconds`` column is kept).
        time_first: time the first call as compile time (the first fit after compile).

    Example:
        >>> train_fn = TrainFunction(model, None, jit=False, time_first=False)  # doctest: +SKIP
        >>> out = train_fn(batch, StepContext())  # doctest: +SKIP
    """

    def __init__(self, model: Any, graphs: StepGraph | None, jit: bool, time_first: bool) -> None:
        self.model = model
        self.graphs = graphs
        self.window: Accumulation | None = model.accumulation if model.accumulation.every > 1 else None
        self.reports_compile = jit or graphs is not None
        self.updated = True  # whether the last call updated the weights
        self._window_context = StepContext()
        self._serial = model.runtime.world_size == 1  # no all-reduce to hold back inside a window
        self._first_call_pending = time_first
        self._compile_seconds = 0.0

    def __call__(self, batch: Any, context: StepContext) -> StepOutput:
        """One training step on ``batch`` with ``context``; after an optimizer update, a per-step
        scheduler step."""
        model = self.model
        if self.window is not None:
            context = self._in_window(batch, context)
        model.step_context = context
        started = time.perf_counter() if self._first_call_pending else None
        if self.graphs is not None:
            out = self.graphs.step(batch)
        elif context.update or self._serial:
            out = model.train_step(batch)
            if context.update and model.scaler is not None:  # update_scaler, without a call per step
                model.scaler.update()
        else:
            with model.no_sync():  # the window's last micro-batch all-reduces the summed gradients
                out = model.train_step(batch)
        if started is not None:
            self._first_call_pending = False
            self._compile_seconds += time.perf_counter() - started
        self.updated = context.update
        if context.update and model.scheduler is not None and model.scheduler_interval == "step":
            model.scheduler.step()
        return out

    def _in_window(self, batch: Any, context: StepContext) -> StepContext:
        """The context of a micro-batch: its loss weighted by its sample count, and whether it
        ends the window (then the summed gradients are divided by the window's count)."""
        samples = context.samples if context.samples is not None else sample_count(batch)
        update, divisor = self.window.plan(samples, context.last)  # type: ignore[union-attr]
        window = self._window_context  # one object, refilled per step
        window.loss_scale = context.loss_scale * samples
        window.update = update
        window.grad_divisor = divisor
        return window

    def end_window(self) -> int:
        """Apply an open accumulation window (the data ran out, or a callback stopped the epoch,
        inside it): every optimizer steps on the summed gradients. Returns the updates made."""
        if self.window is None or not self.window.open:
            return 0
        model = self.model
        model.step_context = StepContext(grad_divisor=self.window.close())
        model.apply_update()
        update_scaler(model.scaler)
        if model.scheduler is not None and model.scheduler_interval == "step":
            model.scheduler.step()
        return 1

    def recorder(self, meter: Meter) -> Recorder:
        """What adds a step's output to ``meter``, called as ``Meter.update``: the meter's own
        method (no frame in between), or the StepGraph's (a replayed CUDA graph wrote its loss and
        in-place metric sums already: the StepGraph finishes the record)."""
        return meter.update if self.graphs is None else partial(self.graphs.record, meter)

    def epoch_logs(self) -> dict[str, float]:
        """``{"compile_seconds": ...}`` spent since the last call (jit or CUDA graphs only)."""
        if not self.reports_compile:
            return {}
        seconds = self._compile_seconds + (0.0 if self.graphs is None else self.graphs.take_compile_seconds())
        self._compile_seconds = 0.0
        return {"compile_seconds": seconds}
