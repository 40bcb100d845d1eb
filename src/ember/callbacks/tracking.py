"""Tracker: the shared half of the experiment-tracker callbacks (MLflow, Weights & Biases).

A tracker logs from the main process only: the run's parameters when a fit starts, the running
training values at every progress refresh (``train/<name>`` against the global step), each epoch's
values against the epoch, and files at the end. Every later call to the tracker's library runs on
one background thread, in order, so a slow or unreachable server never holds up a training step. The
first failure stops the tracker: one warning names it and the error, and training and checkpoints
go on. A resumed fit continues the same run (its id is in the checkpoint's callback state) and skips
the steps and epochs the run already holds, so no step is logged twice. The run itself is opened
when the fit starts, before any checkpoint can be written. Layer: callbacks (knows the
state and the model's public attributes, never a tracker library: subclasses import theirs).
"""

from __future__ import annotations

import queue
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ember.callbacks.base import Callback
from ember.state import TrainState

__all__ = ["Tracker", "checkpoint_to_upload", "run_params"]

_CLOSE_SECONDS = 60.0  # how long the end of a fit waits for queued tracker calls


class Tracker(Callback):
    """Base of the tracker callbacks. Subclasses implement the ``_`` methods below: ``_start`` runs
    when the fit starts; the others on the tracker's thread, in the order the fit produced them.

    Attributes:
        name: the tracker's name in warnings (``"MLflowLogger"``).
        run_id: the run being logged to (None until the first fit starts it; restored on resume).
        failed: the error that stopped the tracker, or None.
    """

    name = "Tracker"
    order = 150  # after ModelCheckpoint (100): the files it wrote exist when a fit ends
    refresh_interval = 1.0  # the running values are read (one host copy) at least once a second

    def __init__(self, log_checkpoints: bool = False) -> None:
        self.log_checkpoints = log_checkpoints
        self.run_id: str | None = None
        self.failed: BaseException | None = None
        self._queue: queue.Queue[Callable[[], None] | None] | None = None
        self._thread: threading.Thread | None = None
        self._warned = False
        self._logged_step = 0  # the run's highest training step and epoch already logged
        self._logged_epoch = 0

    # -- what a tracker implements (called on the tracker's thread) --------------------------
    def _start(self, params: dict[str, Any]) -> tuple[int, int]:
        """Open (or, with ``self.run_id`` set, reopen) the run, log ``params`` to a new run, set
        ``self.run_id``; returns the highest step and epoch the run already holds."""
        raise NotImplementedError

    def _log_metrics(self, values: dict[str, float], step: int, axis: str) -> None:
        """Log ``values`` at ``step`` of ``axis`` (``"step"``: global training steps, ``"epoch"``)."""
        raise NotImplementedError

    def _log_files(self, files: dict[str, str]) -> None:
        """Upload files: ``{artifact folder: local path}``."""
        raise NotImplementedError

    def _finish(self, status: str) -> None:
        """Close the run (``status``: ``"FINISHED"`` or ``"FAILED"``)."""
        raise NotImplementedError

    def _end_files(self, state: TrainState) -> dict[str, str]:
        """Files to upload when a fit ends: the history plot (``plots/history.png``) and, with
        ``log_checkpoints``, the checkpoint :func:`checkpoint_to_upload` picks."""
        files = {}
        if len(state.model.history):
            plot = Path(tempfile.mkdtemp(prefix="ember-tracker-")) / "history.png"
            state.model.history.plot(path=plot)
            files["plots"] = str(plot)
        checkpoint = checkpoint_to_upload(state) if self.log_checkpoints else None
        if checkpoint is not None:
            files[f"checkpoints/{checkpoint.name}"] = str(checkpoint)
        return files

    # -- callback hooks ---------------------------------------------------------------------
    def on_fit_start(self, state: TrainState) -> None:
        """Start the thread and the run (main process only)."""
        if not state.model.is_main:
            return
        self.failed = None
        self._warned = False
        if state.step == 0:  # a new model's first fit: a new run (a resumed or continued fit keeps it)
            self.run_id = None
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, args=(self._queue,), name=f"ember-{self.name}")
        self._thread.daemon = True
        self._thread.start()
        try:  # here, not on the thread: a checkpoint written from now on holds the run's id
            self._logged_step, self._logged_epoch = self._start(run_params(state))
        except Exception as exc:  # a tracker must never stop training
            self.failed = exc
            self._warn_once()

    def on_refresh(self, state: TrainState) -> None:
        """The running training values, as ``train/<name>`` at the global step."""
        if state.running:
            values = {f"train/{key}": value for key, value in state.running.items()}
            self._submit_metrics(values, state.step, "step")

    def on_validation_end(self, state: TrainState, logs: dict[str, float]) -> None:
        """A validation inside an epoch, as ``validation/<name>`` at the global step it followed
        (the epoch's own ``val_*`` values are logged against the epoch)."""
        self._submit_metrics({f"validation/{key}": value for key, value in logs.items()}, state.step, "step")

    def on_epoch_end(self, state: TrainState) -> None:
        """The epoch's values (the History row), at the epoch."""
        self._submit_metrics(dict(state.logs), state.epoch, "epoch")

    def on_fit_end(self, state: TrainState) -> None:
        """Upload the end files, close the run, wait for the queued calls."""
        if self._queue is None:
            return
        if self.failed is None:
            try:
                files = self._end_files(state)
            except Exception as exc:  # a plot that cannot be drawn must not end a finished fit
                self.failed = exc
            else:
                if files:
                    self._submit(lambda: self._log_files(files))
        self._close("FINISHED")

    def on_exception(self, state: TrainState, exc: BaseException) -> None:
        """Close the run as failed (what was logged stays; a resume continues it)."""
        if self._queue is not None:
            self._close("FAILED")

    def state_dict(self) -> dict[str, Any]:
        """The run id, so a resumed fit continues the same run."""
        return {"run_id": self.run_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the run a checkpoint names."""
        self.run_id = state.get("run_id")

    # -- the thread -------------------------------------------------------------------------
    def _submit_metrics(self, values: dict[str, float], step: int, axis: str) -> None:
        if values:
            self._submit(lambda: self._log_new(values, step, axis))

    def _log_new(self, values: dict[str, float], step: int, axis: str) -> None:
        """Log unless the run already holds this step (a resumed fit redoing steps it logged)."""
        if step > (self._logged_step if axis == "step" else self._logged_epoch):
            self._log_metrics(values, step, axis)

    def _submit(self, call: Callable[[], None]) -> None:
        self._warn_once()
        if self._queue is not None and self.failed is None:
            self._queue.put(call)

    def _work(self, calls: queue.Queue[Callable[[], None] | None]) -> None:
        while (call := calls.get()) is not None:
            if self.failed is not None:
                continue
            try:
                call()
            except Exception as exc:  # a tracker must never stop training
                self.failed = exc

    def _warn_once(self) -> None:
        if self.failed is not None and not self._warned:
            self._warned = True
            warnings.warn(
                f"{self.name} stopped logging after an error ({type(self.failed).__name__}: "
                f"{self.failed}); training and checkpoints go on",
                RuntimeWarning,
                stacklevel=4,
            )

    def _close(self, status: str) -> None:
        """Wait for the queued calls, then close the run with ``status`` (after a failure too, as
        far as the tracker still answers: a run is never left open)."""
        assert self._queue is not None and self._thread is not None
        self._queue.put(None)
        self._thread.join(_CLOSE_SECONDS)
        if self._thread.is_alive() and self.failed is None:
            self.failed = TimeoutError(f"queued calls unfinished after {_CLOSE_SECONDS:.0f} s")
        if self.run_id is not None and not self._thread.is_alive():
            try:
                self._finish(status if self.failed is None else "FAILED")
            except Exception as exc:  # the tracker is gone: nothing more to close
                self.failed = self.failed or exc
        self._warn_once()
        self._queue = self._thread = None


def checkpoint_to_upload(state: TrainState) -> Path | None:
    """The best checkpoint of the first ModelCheckpoint that kept one, else its newest."""
    for cb in state.callbacks:
        best = getattr(cb, "best_path", None)
        latest = cb.latest() if callable(getattr(cb, "latest", None)) else None
        for path in (best, latest):
            if path is not None and Path(path).exists():
                return Path(path)
    return None


def run_params(state: TrainState) -> dict[str, Any]:
    """The parameters a tracker records for a fit: the model's size, the compile and fit arguments
    (numbers, strings and flags as given; objects by type name) and the optimizer's hyper-parameters."""
    model = state.model
    params: dict[str, Any] = {
        "net": type(model.net).__name__,
        "parameters": sum(p.numel() for p in model.net.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.net.parameters() if p.requires_grad),
        "optimizer": type(model.optimizer).__name__,
    }
    for prefix, arguments in (("compile", model.compile_arguments), ("fit", model.fit_arguments)):
        params.update({f"{prefix}.{key}": _loggable(value) for key, value in arguments.items()})
    group = model.optimizer.param_groups[0]
    params.update({f"optimizer.{k}": _loggable(v) for k, v in group.items() if k != "params"})
    return params


def _loggable(value: Any) -> Any:
    """Numbers, strings, flags and None as they are; a tensor's value; containers and objects as
    short text (a class name for objects)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (list, tuple)):
        return str([_loggable(v) for v in value])
    if isinstance(value, dict):
        return str({k: _loggable(v) for k, v in value.items()})
    return type(value).__name__
