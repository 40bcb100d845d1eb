"""Model: the facade users touch: ``compile``, ``fit``, ``evaluate``, ``predict``.

Wraps any ``nn.Module`` (no subclassing) and turns data of any usual form into batches; the loop in
``ember.loop`` does the iterating. Override ``train_step`` / ``eval_step`` / ``predict_step`` for
custom batches.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ember.accumulate import Accumulation
from ember.arguments import arguments_of
from ember.budget import Budget
from ember.callbacks import Callback, CallbackList, HistoryRecorder
from ember.callbacks.progress import default_progress
from ember.data.adapt import as_batches, fit_batches
from ember.data.order import Shard
from ember.data.stream import StreamEpochs
from ember.ema import WeightAverage
from ember.errors import ConfigError
from ember.fsdp import DEFAULT_MIN_PARAMS
from ember.graphs import StepGraph, step_graph_for
from ember.interrupts import trap_signals
from ember.loop import StepContext, fit_loop, run_eval, run_predict, start_fit
from ember.lr_finder import LRFinderResult, find_lr
from ember.metrics import Meter, Metric
from ember.objective import Objective
from ember.options import (
    accumulation_of,
    check_compile_arguments,
    check_fit_arguments,
    check_fit_optimizers,
    length_of,
    make_scheduler,
    named_optimizers,
    plateau_monitor,
    prepare_net,
    rebind_optimizers,
    sharding_of,
    with_sample_weight,
    with_target,
)
from ember.resume import interrupt_note, load_training, resolve_resume, save_training
from ember.runtime import Runtime, create_runtime
from ember.state import TrainState
from ember.step_methods import StepMethods
from ember.steps import TrainFunction

if TYPE_CHECKING:
    from ember.callbacks.frame import History

__all__ = ["Model"]

_FIT_DATA = ("train_data", "y", "validation_data", "callbacks", "sample_weight")  # not settings


def _device_of(net: nn.Module) -> torch.device:
    return next(net.parameters(), torch.empty(0)).device


class Model(StepMethods):
    """Train, evaluate and use a plain ``nn.Module``.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> model = Model(net).compile(loss=nn.CrossEntropyLoss(), metrics=["accuracy"], device="cpu")
        >>> x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
        >>> history = model.fit((x, y), epochs=2, verbose=0)
        >>> list(history.columns)
        ['epoch', 'loss', 'accuracy', 'lr', 'seconds']
    """

    def __init__(self, net: nn.Module) -> None:
        if not isinstance(net, nn.Module):
            raise ConfigError(f"Model wraps a torch.nn.Module, got {type(net).__name__}")
        self.net = net
        self.runtime: Runtime = Runtime(_device_of(net))  # serial, where the net lives; compile decides
        self.loss: Callable[..., torch.Tensor] | None = None  # None until compile
        self.metrics: list[Metric] = []
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.optimizer: Any = None
        self.scheduler: Any = None
        self.scaler: torch.amp.GradScaler | None = None
        self.objective = Objective(None)  # what batches hold and the loss: set by compile
        self.accumulation = Accumulation(1)  # compile(accumulate=k)
        self.ema: WeightAverage | None = None
        self.compiled = False
        self.compile_arguments: dict[str, Any] = {}  # as given to the last compile / fit call
        self.fit_arguments: dict[str, Any] = {}
        self.state = TrainState(model=self)
        self.history_rows: list[dict[str, float]] = []  # one dict per epoch, over every fit call
        self._unchecked = {"train", "eval"}  # passes whose first batch's loss inputs are checked
        self._train_net: nn.Module = net
        self.step_context = StepContext()  # set by the fit loop before each training step
        self._channels_last = self._jit = self._jit_untimed = False
        self._graphs: StepGraph | None = None

    # -- set-up ------------------------------------------------------------------------------
    def compile(
        self,
        loss: Callable[..., torch.Tensor] | Mapping[str, Any] | Sequence[Any] | None,
        optimizer: torch.optim.Optimizer | Mapping[str, torch.optim.Optimizer] | None = None,
        metrics: Sequence[Any] | Mapping[str, Any] | None = None,
        loss_weights: Mapping[str, float] | Sequence[float] | None = None,
        target: str | None = None,
        weighted: bool = False,
        scheduler: Any = None,
        scheduler_interval: str = "epoch",
        scheduler_monitor: str | None = None,
        grad_clip: float | None = None,
        accumulate: int = 1,
        ema: float | None = None,
        precision: str = "32",
        device: str | torch.device | None = None,
        channels_last: bool = False,
        jit: bool = False,
        cuda_graphs: bool = False,
        strategy: str = "ddp",
        fsdp_blocks: Sequence[type] = (),
        fsdp_min_params: int = DEFAULT_MIN_PARAMS,
        reshard_after_forward: bool = True,
    ) -> Model:
        """Choose loss, optimizer, metrics, schedule, precision and device; returns self.

        Args:
            loss: any callable ``loss(y_pred, y_true) -> scalar tensor`` with mean reduction;
                ``{output: loss}`` (or a list) for a net with several outputs (a dict or tuple
                of the same keys as its targets; columns ``<output>_loss``); None when the net
                computes its loss (its output's ``.loss``, e.g. a transformers model given labels).
            optimizer: a torch optimizer over this net's parameters; None -> Adam(lr=1e-3); or
                ``{name: optimizer}`` for a custom ``train_step`` that steps several
                (``model.optimizers[name]``; the first is ``model.optimizer``, which the default
                step, the scheduler and the ``lr`` column use); checkpoints hold them all.
            metrics: names ("accuracy", "mae", "mse", "rmse", "auc"), ember Metrics, torchmetrics
                metrics or plain functions ``f(y_pred, y_true) -> number``; a list or a name -> metric dict.
                Several losses: ``{output: [metrics]}`` (columns ``<output>_<metric>``). An output
                with ``.logits`` (transformers) is measured by its logits.
            loss_weights: with several losses, ``{output: weight}`` (default 1.0 each).
            target: the key of dict batches that holds the target (None: "labels", else "label");
                the other keys go to the net as keyword arguments.
            weighted: 3-tuple batches are ``(inputs, target, sample_weight)``: each batch's loss is
                ``sum(w * l) / sum(w)`` and metrics are weighted (without it, ``(x1, x2, target)``).
            scheduler: an LR scheduler over ``optimizer``, or a callable ``optimizer -> scheduler``.
            scheduler_interval: step it every "epoch" or every "step" (ReduceLROnPlateau: "epoch").
            scheduler_monitor: the history column a ReduceLROnPlateau steps on (e.g.
                "val_accuracy"); None: "val_loss", or "loss" when fit has no validation data. Its
                direction must agree with the scheduler's mode (checked here).
            grad_clip: clip the gradient norm to this value (> 0).
            accumulate: update the weights once every ``accumulate`` batches, with the gradient of
                one batch holding all their samples (also for a short last window); schedulers,
                clipping, the gradient scaler and the EMA act per update.
            ema: keep an exponential moving average of the weights with this decay (e.g. 0.999),
                updated after every optimizer update and used for validation; ``model.ema``
                (``copy_to()`` puts it into the net); checkpoints hold it.
            precision: "32", "bf16" or "16" (float16 with gradient scaling).
            device: None -> cuda when available, else cpu.
            channels_last: keep the net and 4-d input batches in channels-last memory format.
            jit: run training steps through ``torch.compile`` (the net and the loss); the compilation
                happens in the first step and its time is logged in the ``compile_seconds`` column.
            cuda_graphs: on CUDA, capture a whole ``train_step`` in one CUDA graph after three
                warm-up steps and replay it for every batch of the same shapes (other shapes, and
                steps that cannot be captured, run eagerly with a warning; the capture time goes to
                ``compile_seconds``). Elsewhere a warning says the steps run eagerly.
            strategy: how several processes (torchrun) share the work: "ddp" (each holds the
                whole model) or "fsdp" (PyTorch's FSDP2: each holds a shard of the weights, the
                gradients and the optimizer state; checkpoints are sharded). One process: unsharded.
            fsdp_blocks: module classes sharded one by one under "fsdp" (e.g. the transformer block).
            fsdp_min_params: without ``fsdp_blocks``, direct children with at least this many
                parameters are sharded one by one; the rest belongs to the root's unit.
            reshard_after_forward: under "fsdp", free gathered weights after each unit's forward.
        """
        self.compile_arguments = arguments_of(locals())
        check_compile_arguments(self.net, optimizer, scheduler_interval, grad_clip)
        self.objective = Objective(loss, loss_weights, target, weighted)
        self.metrics = self.objective.metrics(metrics)
        self.runtime = create_runtime(device, precision, strategy, **sharding_of(locals()))
        names = {id(p): name for name, p in self.net.named_parameters()}
        self.net, self._train_net = prepare_net(self.net, self.runtime, channels_last, jit)
        self._channels_last, self._jit = channels_last, jit
        self._jit_untimed = jit
        self.loss = self.objective.fn
        self._train_loss = torch.compile(self.loss) if jit and self.loss else self.loss  # checks: plain
        self.optimizers = named_optimizers(optimizer, self.net, self.runtime.device)
        rebind_optimizers(self.optimizers, names, self.net)
        self.optimizer = next(iter(self.optimizers.values()))
        self.scheduler = make_scheduler(scheduler, self.optimizer)
        self.scheduler_interval = scheduler_interval
        self._plateau = plateau_monitor(self.scheduler, scheduler_monitor, scheduler_interval, self.metrics)
        self.grad_clip = grad_clip
        self.accumulation = accumulation_of(accumulate, cuda_graphs, weighted)
        self.ema = None if ema is None else WeightAverage(self.net, ema)
        self.scaler = self.runtime.make_scaler()
        eager = self.accumulation.every > 1 or weighted
        self._graphs = step_graph_for(self) if cuda_graphs and not eager else None
        self.compiled = True
        return self

    @property
    def is_main(self) -> bool:
        """True in the process that prints and writes files."""
        return self.runtime.is_main

    @property
    def history(self) -> History:
        """All epochs trained so far, over every ``fit`` call."""
        return HistoryRecorder(self.history_rows).history()

    def _require_compiled(self) -> None:
        if not self.compiled:
            raise ConfigError("call model.compile(loss=...) before fit, evaluate, find_lr or load")

    # -- the three verbs -------------------------------------------------------------------------
    def fit(
        self,
        train_data: Any,
        y: Any = None,
        *,
        epochs: int = 1,
        validation_data: Any = None,
        callbacks: Iterable[Callback] = (),
        verbose: int = 1,
        batch_size: int | None = None,
        shuffle: bool = True,
        resume: str | Path | None = None,
        on_device: bool = False,
        augment: Any = None,
        sample_weight: Any = None,
        class_weight: Mapping[int, float] | None = None,
        max_steps: int | None = None,
        steps_per_epoch: int | None = None,
        max_time: float | None = None,
        validation_freq: int = 1,
        validate_every: int | None = None,
    ) -> History:
        """Train for ``epochs`` more epochs; returns the History of every epoch so far.

        Args:
            train_data: a DataLoader, a Dataset, tensors/arrays/DataFrames ``(x, y)``, or any
                iterable of ``(inputs, target)`` batches.
            y: the targets when ``train_data`` is the inputs alone, as in Keras' ``fit(x, y)``
                (the options after it are keyword-only).
            epochs: how many epochs to train in this call (>= 1).
            validation_data: the same kinds of data, evaluated after every epoch (``val_*`` columns).
            callbacks: a list of ember callbacks, called in order after the built-in ones.
            verbose: 0 silent, 1 live progress bar (one line per epoch when not a terminal), 2 lines.
            batch_size: for Datasets and arrays (default 32).
            shuffle: reshuffle Datasets and arrays every epoch.
            resume: a checkpoint folder, a ModelCheckpoint folder (its newest) or "latest" (of the
                ModelCheckpoint in ``callbacks``); rerunning the interrupted call with it finishes it.
            on_device: hold the whole training and validation data on the model's device (what
                ``ember.data.resident_loader`` takes); batches are cut there with one gather each.
            augment: with ``on_device``, augmentations run there, e.g. ``[ember.data.random_flip()]``.
            sample_weight: one weight per training sample, for array data ``fit(x, y,
                sample_weight=w)`` (a dataset brings its weights as the third element of its
                items, with ``compile(weighted=True)``); the loss is ``sum(w * l) / sum(w)``.
            class_weight: ``{class: weight}``: training samples weigh their class's weight
                (classes not named weigh 1.0); validation is not weighted.
            max_steps: stop after this many optimizer updates in this call (with ``accumulate=k``,
                one per k batches); the epoch ends there as with ``should_stop``.
            steps_per_epoch: batches per epoch: at most one pass of data with a length (each
                epoch from the start of its order); data without one (a stream) continues
                across epochs.
            max_time: stop at the first step boundary after this many seconds of this call (with
                several processes, at an epoch end).
            validation_freq: validate every this many epochs (and after the last one).
            validate_every: also validate every this many steps inside epochs: a history row
                with its ``step`` (epoch rows then have a ``step`` column too).
        """
        self.fit_arguments = arguments_of(locals(), _FIT_DATA)
        cbs = self._fit_callbacks(epochs, callbacks, verbose)
        budget = Budget(max_steps, steps_per_epoch, max_time, validation_freq, validate_every)
        weighting = self._fit_weights(sample_weight, class_weight)
        train_data = with_sample_weight(with_target(train_data, y, "fit"), sample_weight)
        data = (train_data, validation_data, batch_size, shuffle)
        train, val = self._fit_batches(data, on_device, augment, steps_per_epoch)
        state = self.state
        meters = start_fit(state, (train, val), int(epochs), self.metrics, self.device, cbs.callbacks, budget)
        self._unchecked = {"train", "eval"}
        try:
            resumed = None if resume is None else resolve_resume(resume, cbs.callbacks, self.runtime)
            mid_epoch = resumed is not None and self.runtime.together(
                lambda: load_training(self, resumed, epochs)
            )
            if self._graphs is not None:
                self._graphs.begin(train)
            with trap_signals(state):
                train_fn = TrainFunction(self, self._graphs, self._jit, self._jit_untimed)
                self._jit_untimed = False  # only the first fit compiles
                fit_loop(self, train_fn, (train, val), state, cbs, meters, self.runtime, budget, mid_epoch)
        except (KeyboardInterrupt, SystemExit) as exc:
            if self.is_main and (state.interrupted or isinstance(exc, KeyboardInterrupt)):
                print(interrupt_note(state), file=sys.stderr, flush=True)
            raise
        finally:
            self._end_fit(train, weighting)
        return self.history

    def _fit_batches(
        self, data: tuple[Any, Any, Any, bool], on_device: bool, augment: Any, steps_per_epoch: Any
    ) -> tuple[Any, Any]:
        """The training and validation batches of a fit: ``data`` is (training data, validation
        data, batch size, shuffle); a stream gets epochs of ``steps_per_epoch`` batches."""
        train, val = fit_batches(*data, self.device, self._shard(), on_device, augment)
        if steps_per_epoch is not None and length_of(train) is None:
            train = StreamEpochs(train, steps_per_epoch)
        return train, val

    def _end_fit(self, train: Any, weighting: tuple[bool, Any]) -> None:
        """Put back what a fit call changed: the graphs' optimizer, the state's live fit, the step
        context and the objective's weighting."""
        if self._graphs is not None:
            self._graphs.end(train)
        state = self.state
        state.train_data = None
        state.train_meter = None
        state.callbacks = []
        self.step_context = StepContext()
        self.objective.weighted, self.objective.class_weight = weighting

    def _fit_weights(self, sample_weight: Any, class_weight: Any) -> tuple[bool, Any]:
        """Weight this fit's samples as asked; returns the objective's weighting to restore after."""
        before = (self.objective.weighted, self.objective.class_weight)
        if (sample_weight is not None or class_weight is not None) and self._graphs is not None:
            raise ConfigError(
                "sample_weight and class_weight run eagerly: compile without cuda_graphs=True, or "
                "with weighted=True (its steps run eagerly)"
            )
        self.objective.set_class_weight(class_weight, self.device)
        self.objective.weighted = before[0] or sample_weight is not None
        return before

    def _fit_callbacks(self, epochs: Any, callbacks: Any, verbose: Any) -> CallbackList:
        """The checks before a fit trains anything; the built-in and the user's callbacks."""
        self._require_compiled()
        user_callbacks = check_fit_arguments(epochs, callbacks, verbose)
        check_fit_optimizers(self.optimizers, self.net, self.runtime.world_size)
        progress = default_progress(verbose, user_callbacks)
        return CallbackList([HistoryRecorder(self.history_rows), *progress, *user_callbacks])

    def find_lr(
        self,
        data: Any,
        start: float = 1e-7,
        end: float = 10.0,
        steps: int = 100,
        batch_size: int | None = None,
    ) -> LRFinderResult:
        """The learning-rate range test: ``.lrs``, ``.losses`` (smoothed), ``.suggestion`` (steepest
        descent) and ``.plot(path)``; the model and optimizer are exactly as before afterwards."""
        self._require_compiled()
        return find_lr(self, data, start, end, steps, batch_size)

    def optimizer_state_dict(self) -> dict[str, Any]:
        """The optimizer's state dict as the user built it (while CUDA graphs train, the live
        optimizer holds tensor learning rates and ``capturable=True``); what checkpoints store."""
        ready = None if self._graphs is None else self._graphs.ready
        return self.optimizer.state_dict() if ready is None else ready.state_dict()

    def save(self, path: str | Path) -> Path:
        """Write the full training state (weights, optimizer, scheduler, scaler, counters, history,
        RNG states; mid-fit also the data position, running sums and callback states) as a
        pickle-free checkpoint folder."""
        return save_training(self, path)

    def load(self, path: str | Path) -> Model:
        """Load a checkpoint folder written by :meth:`save` (weights, optimizer, history, counters)."""
        self._require_compiled()
        self.runtime.together(lambda: load_training(self, path, restore_rng=False))
        return self

    def evaluate(self, data: Any, y: Any = None, *, batch_size: int | None = None) -> dict[str, float]:
        """Loss and metrics over ``data`` (or inputs ``data`` and targets ``y``), in eval mode
        without gradients: ``{"loss": ..., "accuracy": ...}``."""
        self._require_compiled()
        data = with_target(data, y, "evaluate")
        self._unchecked.add("eval")
        batches = as_batches(data, batch_size, False, "evaluation data", self._shard())
        meter = Meter(self.metrics, self.device, length_of(batches))
        return run_eval(self, batches, meter, self.runtime)

    def predict(self, data: Any, batch_size: int | None = None) -> Any:
        """The model's outputs for every sample of ``data``, concatenated on CPU.

        Batches may be bare inputs, 1-tuples ``(inputs,)`` or ``(inputs, target)`` (target ignored).
        """
        if not self.compiled:  # predict where the net lives now
            self.runtime = Runtime(_device_of(self.net))
        batches = as_batches(data, batch_size, False, "prediction data", self._shard())
        return run_predict(self, batches, self.runtime)

    def _shard(self) -> Shard:
        runtime = self.runtime
        return Shard(runtime.rank, runtime.world_size, runtime.broadcast_object)
