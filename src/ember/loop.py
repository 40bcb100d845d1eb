"""The fit loop: epochs of training steps, validation, logs, and callbacks.

The loop owns iteration and bookkeeping; the model facade owns what a step does (``train_step``,
``eval_step``, ``predict_step``). Values are read from the device only at refreshes (a few times a
second) and at epoch ends, in one copy each.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple, Protocol

import torch

from ember._tree import concat, to_device
from ember.budget import Budget, EpochPlan
from ember.callbacks.base import CallbackList
from ember.data.adapt import batch_weights, rewind, set_epoch
from ember.errors import DataError, NonFiniteLossError
from ember.interrupts import raise_if_interrupted
from ember.metrics.meter import Meter
from ember.options import length_of
from ember.state import TrainState

__all__ = [
    "PARTIAL_EPOCH",
    "Processes",
    "StepContext",
    "StepOutput",
    "Steps",
    "TrainFn",
    "fit_loop",
    "run_eval",
    "run_predict",
    "run_train_epoch",
    "start_fit",
]

DEFAULT_REFRESH_SECONDS = 1.0
PARTIAL_EPOCH = "batches"  # the history column of an epoch stopped early: the batches it trained


class StepOutput(NamedTuple):
    """What a train or eval step hands to the meter: mean loss (0-dim tensor), outputs, targets,
    n, and the batch's sample weights (None: unweighted)."""

    loss: torch.Tensor | None
    preds: Any
    target: Any
    size: int
    weight: torch.Tensor | None = None


@dataclass
class StepContext:
    """What the loop tells a training step, set on ``model.step_context`` before each call.

    Attributes:
        loss_scale: multiply the loss by this before backward (``Model.backward`` does): with several
            processes and an uneven last batch, ``real samples x N / global batch``, so DDP's average
            is the exact mean over the global batch; 1.0 otherwise. Inside an accumulation window
            also times the batch's sample count.
        update: this step ends an accumulation window: ``Model.optimize`` steps the optimizer (always
            True without accumulation; before the window's last micro-batch the gradients only add up).
        grad_divisor: what the summed gradients are divided by before the update (the window's
            sample count; 1.0 without accumulation).
        samples: from the loop: the samples of the global batch when the data is sharded, else None.
        last: from the loop: this is the epoch's last batch (False when the data has no length).
    """

    loss_scale: float = 1.0
    update: bool = True
    grad_divisor: float = 1.0
    samples: int | None = None
    last: bool = False


Recorder = Callable[[Any, Any, Any, int, torch.Tensor | None], None]
"""``record(loss, preds, target, n, weight)``: adds a training step's output to the epoch's meter."""


class TrainFn(Protocol):
    """What the loop needs from ``ember.steps.TrainFunction``."""

    def __call__(self, batch: Any, context: StepContext) -> StepOutput:
        """One training step."""

    updated: bool

    def recorder(self, meter: Meter) -> Recorder:
        """What adds a step's output to ``meter`` (called with ``Meter.update``'s arguments)."""

    def end_window(self) -> int:
        """Apply an open accumulation window (the epoch ended or stopped inside it); returns the
        number of optimizer updates made (0 or 1)."""

    def epoch_logs(self) -> dict[str, float]:
        """Extra epoch columns (``compile_seconds``)."""


class Steps(Protocol):
    """What the loop needs from the model facade."""

    net: torch.nn.Module

    def eval_step(self, batch: Any) -> StepOutput: ...
    def predict_step(self, batch: Any) -> Any: ...
    def end_epoch(self, logs: dict[str, float]) -> float: ...
    def validation_weights(self) -> AbstractContextManager[Any]: ...


def _note(exc: BaseException, text: str) -> None:
    if hasattr(exc, "add_note"):
        exc.add_note(text)


class Processes(Protocol):
    """What the loop needs from ``ember.runtime.Runtime``: one process is a null object whose
    reductions return their input, so the loop never asks how many processes there are."""

    rank: int
    world_size: int

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over every process."""

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order."""


def _read(meter: Meter, runtime: Processes | None, prefix: str = "") -> dict[str, float]:
    """The meter's values: this process's (``runtime=None``, or the only process: one host read),
    or every process's."""
    if runtime is None or runtime.world_size == 1:
        return meter.read(prefix)
    return meter.read(prefix, reduce=runtime.all_reduce_sum, gather=runtime.gather_objects)


def _checked_read(meter: Meter, state: TrainState, runtime: Processes | None = None) -> dict[str, float]:
    """The training values (this process's, or with ``runtime`` every process's); NonFiniteLossError
    naming the first bad step."""
    logs = _read(meter, runtime)
    if not math.isfinite(logs["loss"]) and meter.batches:
        bad = meter.first_nonfinite()
        if bad is not None:
            step = state.step - meter.batches + bad + 1
            raise NonFiniteLossError(
                f"the training loss became non-finite at epoch {state.epoch}, step {step} "
                f"(batch {bad + 1} of the epoch); lower the learning rate, clip gradients "
                "(compile(grad_clip=...)) or check the data for NaN/inf",
                epoch=state.epoch,
                step=step,
            )
    return logs


def _position(state: TrainState, runtime: Processes) -> str:
    """Where a training step raised, for the note added to its exception."""
    where = f" on process {runtime.rank}" if runtime.world_size > 1 else ""
    position = f"epoch {state.epoch}, step {state.step + 1}, batch {state.batch + 1} of the epoch"
    return f"(ember: during {position}{where})"


def _sharded_step(train_fn: TrainFn, batch: Any, context: StepContext, share: Any, record: Recorder) -> None:
    """A step on this process's ``share`` of a global batch (a ``BatchShare``)."""
    context.loss_scale = share.loss_scale
    context.samples = share.total
    out = train_fn(batch, context)
    if share.real:  # a padding batch trains (DDP needs every process) but counts for nothing
        record(out.loss, out.preds, out.target, share.real, out.weight)


def run_train_epoch(
    model: Steps,
    train_fn: TrainFn,
    batches: Iterable[Any],
    meter: Meter,
    state: TrainState,
    cbs: CallbackList,
    runtime: Processes,
    plan: EpochPlan | None = None,
    fresh: bool = True,
) -> dict[str, float]:
    """One pass of ``train_fn`` steps; returns the epoch's exact loss and metrics over every process.

    ``plan`` says when to refresh, stop early and validate inside the epoch. ``fresh=False``
    continues a resumed epoch: the meter keeps its restored sums. Data sharded across processes
    counts each batch's real samples only.
    """
    plan = plan or EpochPlan()
    weights = batch_weights(batches)
    if fresh:
        meter.reset()
    model.net.train()
    state.read_running = lambda: _checked_read(meter, state)
    batch_hook = cbs.wants("on_train_batch_end")
    record = train_fn.recorder(meter)
    clock = time.monotonic
    next_refresh = clock() + plan.refresh_every
    context, progress, steps = StepContext(), state.progress, state.steps_per_epoch
    serial = runtime.world_size == 1
    pending = not fresh and plan.due(state)  # a resumed epoch owes the validation of its step
    try:
        for batch in batches if fresh or not plan.ends_epoch(state, serial) else ():
            if pending:
                plan.run_validation(state, cbs)
            context.last = progress.batch + 1 == steps
            if weights is None:
                out = train_fn(batch, context)
                record(out.loss, out.preds, out.target, out.size, out.weight)
            else:
                _sharded_step(train_fn, batch, context, weights(progress.batch), record)
            progress.batch += 1
            progress.step += 1
            progress.updates += train_fn.updated
            if batch_hook:
                cbs.call("on_train_batch_end", state)
            if state.interrupted is not None:
                raise_if_interrupted(state)
            if clock() >= next_refresh:
                next_refresh = _refresh(meter, state, cbs, plan.refresh_every)
            if plan.ends_epoch(state, serial):  # a callback, a budget or steps_per_epoch
                rewind(batches, state.epoch)
                break
            pending = plan.validates_steps and plan.due(state)
        progress.updates += train_fn.end_window()
    except Exception as exc:
        _note(exc, _position(state, runtime))
        raise
    return _epoch_logs(meter, state, runtime)


def _refresh(meter: Meter, state: TrainState, cbs: CallbackList, every: float) -> float:
    """Read the running values (one host copy), tell ``on_refresh``; returns the next refresh time."""
    state.running = _checked_read(meter, state)
    cbs.call("on_refresh", state)
    return time.monotonic() + every


def _epoch_logs(meter: Meter, state: TrainState, runtime: Processes) -> dict[str, float]:
    """The epoch's training values over every process; an epoch cut short says how short."""
    if meter.batches == 0 and runtime.world_size == 1:  # a process's shard may be empty
        raise DataError(f"the training data yielded no batches in epoch {state.epoch}")
    logs = _checked_read(meter, state, runtime)
    if state.should_stop and state.batch != state.steps_per_epoch:
        logs[PARTIAL_EPOCH] = float(state.batch)
    return logs


def run_eval(
    model: Steps, batches: Iterable[Any], meter: Meter, runtime: Processes, prefix: str = ""
) -> dict[str, float]:
    """One pass of evaluation steps (eval mode, no grad); returns loss and metrics of every
    process, each sample counted once."""
    meter.reset()
    weights = batch_weights(batches)
    was_training = model.net.training
    model.net.eval()
    try:
        with torch.no_grad():
            for b, batch in enumerate(batches):
                real = None if weights is None else weights(b)[0]
                if real != 0:  # a padding batch of a sharded last batch is skipped
                    out = model.eval_step(batch)
                    n = out.size if real is None else real
                    meter.update(out.loss, out.preds, out.target, n, out.weight)
    finally:
        model.net.train(was_training)
    if meter.batches == 0 and runtime.world_size == 1:
        raise DataError("the evaluation data yielded no batches")
    return _read(meter, runtime, prefix)


def run_predict(model: Steps, batches: Iterable[Any], runtime: Processes) -> Any:
    """Outputs of every batch, moved to CPU and concatenated in data order (eval mode, no grad):
    every process's outputs, each sample once, on every process."""
    weights = batch_weights(batches)
    was_training = model.net.training
    model.net.eval()
    cpu = torch.device("cpu")
    try:
        with torch.no_grad():
            outputs = [
                to_device(model.predict_step(batch), cpu) if weights is None or weights(b)[0] else None
                for b, batch in enumerate(batches)
            ]
    finally:
        model.net.train(was_training)
    per_rank = runtime.gather_objects(outputs)  # global batch b is the parts of ranks 0, 1, ... in order
    outputs = [part[b] for b in range(len(outputs)) for part in per_rank if part[b] is not None]
    if not outputs:
        raise DataError("the prediction data yielded no batches")
    return concat(outputs)


def _validate(model: Steps, val: Iterable[Any], meter: Meter, runtime: Processes) -> dict[str, float]:
    """A validation pass with the weights the model validates with (an EMA's): ``val_*`` values."""
    with model.validation_weights():
        return run_eval(model, val, meter, runtime, prefix="val_")


def start_fit(
    state: TrainState,
    data: tuple[Iterable[Any], Iterable[Any] | None],
    epochs: int,
    metrics: list[Any],
    device: torch.device,
    callbacks: list[Any],
    budget: Budget | None = None,
) -> tuple[Meter, Meter | None]:
    """Set ``state`` for a fit call of ``epochs`` more epochs over ``data`` (training, validation)
    within ``budget``; returns the training and validation meters."""
    train, val = data
    state.fit_start_epoch = state.epochs_done
    state.fit_start_updates = state.updates
    state.epochs = state.epochs_done + epochs
    state.should_stop = False
    state.validating = val is not None
    state.steps_per_epoch = (budget or Budget()).epoch_length(length_of(train))
    train_meter = Meter(metrics, device, state.steps_per_epoch)
    val_meter = None if val is None else Meter(metrics, device, length_of(val))
    state.train_data = train
    state.train_meter = train_meter
    state.callbacks = callbacks
    return train_meter, val_meter


def fit_loop(
    model: Steps,
    train_fn: TrainFn,
    data: tuple[Iterable[Any], Iterable[Any] | None],
    state: TrainState,
    cbs: CallbackList,
    meters: tuple[Meter, Meter | None],
    runtime: Processes,
    budget: Budget | None = None,
    resume_mid_epoch: bool = False,
) -> None:
    """Run epochs of ``train_fn`` (a ``steps.TrainFunction``) over ``data`` (training, validation)
    until ``state.epochs`` are done, ``budget`` is spent or a callback sets ``state.should_stop``.

    ``resume_mid_epoch``: the first epoch continues a restored one (its batch count and sums kept).
    """
    train, val = data
    budget = budget or Budget()
    train_meter, val_meter = meters
    validate = None
    if val is not None and val_meter is not None:
        validate = partial(_validate, model, val, val_meter, runtime)
    refresh = DEFAULT_REFRESH_SECONDS if cbs.refresh_interval is None else cbs.refresh_interval
    plan = EpochPlan(refresh, budget, validate)
    fresh = not resume_mid_epoch
    try:
        cbs.call("on_fit_start", state)
        while state.epochs_done < state.epochs and not state.should_stop:
            state.epoch, state.running = state.epochs_done + 1, {}
            state.batch = 0 if fresh else state.batch
            set_epoch(train, state.epoch - 1)
            if val is not None:
                set_epoch(val, state.epoch - 1)  # seeded validation transforms follow the epoch too
            cbs.call("on_epoch_start", state)
            started = time.perf_counter()
            logs = run_train_epoch(model, train_fn, train, train_meter, state, cbs, runtime, plan, fresh)
            fresh = True
            if budget.max_time is not None and runtime.world_size > 1:  # process 0's clock decides
                state.should_stop |= runtime.gather_objects(budget.spent(state))[0]
            last = state.should_stop or state.epoch == state.epochs
            if validate is not None and budget.validates_epoch(state.epoch, last):
                logs.update(validate())
            if budget.validate_every is not None:
                logs["step"] = float(state.step)
            logs.update(train_fn.epoch_logs())
            logs["lr"] = model.end_epoch(logs)
            logs["seconds"] = time.perf_counter() - started
            state.logs, state.epochs_done = logs, state.epoch
            cbs.call("on_epoch_end", state)
    except BaseException as exc:
        cbs.call("on_exception", state, exc)
        raise
    cbs.call("on_fit_end", state)
