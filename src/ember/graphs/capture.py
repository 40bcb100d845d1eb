"""Whole training steps as CUDA graphs: capture once, replay for every batch of the same shapes.

After ``warmup`` eager steps (on a side stream on CUDA), :class:`StepGraph` captures one call of the
model's own ``train_step`` (the user's override or the default; there is one step body): for
DeviceLoader data the batch gather, augmentation and uint8 scaling as well, then whatever the step
does (forward, loss, backward, clipping, the optimizer step), and the meter's loss slot and metric
sums. Each later batch costs the host one index (or input) copy into static buffers, a reseed of the
augmentation generator and one graph launch. A batch of other shapes (a last partial batch) runs
eagerly, exactly as without graphs, and is reported once; a step that cannot be captured (a host
read, an optimizer without ``capturable``) ends capturing for the fit call with a warning naming the
cause, and training continues eagerly. Per-step LR schedulers are stepped by the fit's
TrainFunction after each replay and fill the tensor learning rates the graph reads. Layer 3: uses
data (lazy DeviceLoader batches), metrics (Meter), optim and the loop's StepOutput.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils import _pytree as pytree

from ember.data.adapt import batch_weights
from ember.data.device import DeviceLoader
from ember.data.order import mixed_seed
from ember.graphs.adapters import GraphMeter, LazyBatch
from ember.loop import StepOutput
from ember.metrics.meter import Meter
from ember.optim import GraphReady, takes_tensor_lr, update_scaler

__all__ = ["CapturedGraph", "StepGraph", "step_graph_for"]


class CapturedGraph:
    """One ``torch.cuda.CUDAGraph``: ``capture(fn)`` records ``fn``'s kernels (running none of them)
    and returns its output tensors; ``replay()`` runs the kernels again, writing those tensors."""

    executes_on_capture = False

    def __init__(self, generators: Sequence[torch.Generator]) -> None:
        self.graph = torch.cuda.CUDAGraph()
        for generator in generators:  # their seeds are read at each replay
            self.graph.register_generator_state(generator)

    def capture(self, fn: Callable[[], Any]) -> Any:
        """Record ``fn`` on the graph's capture stream."""
        with torch.cuda.graph(self.graph):
            return fn()

    def replay(self) -> None:
        """Launch the recorded kernels on the current stream."""
        self.graph.replay()


def step_graph_for(model: Any) -> StepGraph | None:
    """A StepGraph for ``model`` on CUDA; elsewhere None, with a warning that steps run eagerly."""
    if model.device.type == "cuda":
        return StepGraph(model)
    warnings.warn(
        f"ember: cuda_graphs=True needs a CUDA device, this model is on {model.device}; "
        "training runs eagerly",
        stacklevel=3,
    )
    return None


def _tensor_leaves(batch: Any) -> tuple[list[torch.Tensor], Any] | None:
    leaves, spec = pytree.tree_flatten(batch)
    return (leaves, spec) if all(isinstance(leaf, torch.Tensor) for leaf in leaves) else None


class StepGraph:
    """Runs ``model``'s training steps through one captured CUDA graph (see the module docstring).

    Args:
        model: the ``ember.Model`` whose steps are captured.
        warmup: eager steps before the capture (lazy initialisations, the optimizer state).
        make_graph: builds the graph object from the generators to register (tests pass a stand-in
            that replays by running the step again).
    """

    def __init__(
        self,
        model: Any,
        warmup: int = 3,
        make_graph: Callable[[Sequence[torch.Generator]], Any] = CapturedGraph,
    ) -> None:
        self.model = model
        self.warmup = max(1, warmup)
        self.make_graph = make_graph
        self.reason: str | None = None  # why this fit call trains eagerly
        self.ready: GraphReady | None = None  # the optimizer's preparation, while a fit call runs
        self.eager_batches = 0  # batches of other shapes run eagerly since begin
        self._clear()

    def _clear(self) -> None:
        self._graph: Any = None
        self._warm = 0
        self._key: Any = None
        self._meter: GraphMeter | None = None
        self._losses: torch.Tensor | None = None
        self._replayed = False  # the last step ran in the graph: its record is half done
        self._static: list[torch.Tensor] = []  # input leaves, or [index] for lazy batches
        self._generator: torch.Generator | None = None
        self._outputs: tuple[Any, Any, Any] | None = None
        self._counts: list[dict[str, int]] = []
        self._size = 0
        self._warned_shape = False
        self._compile_seconds = 0.0

    # -- one fit call ---------------------------------------------------------------------------
    def begin(self, train: Any) -> None:
        """Prepare a fit call: a fresh capture, graph-ready optimizer, lazy batches from a DeviceLoader
        on the model's device. Reasons to stay eager are warned about here."""
        self._clear()
        self.reason, self.eager_batches = self._unsupported(train), 0
        if self.reason is not None:
            warnings.warn(f"ember: cuda_graphs: {self.reason}; training runs eagerly", stacklevel=3)
            return
        self.ready = GraphReady(self.model.optimizer, self.model.device, self.model.scheduler is not None)
        if isinstance(train, DeviceLoader) and _same_device(train.device, self.model.device):
            train.deferred = LazyBatch

    def end(self, train: Any) -> None:
        """Undo :meth:`begin` (the graph and its memory are released)."""
        if isinstance(train, DeviceLoader):
            train.deferred = None
        if self.ready is not None:
            self.ready.release()
            self.ready = None
        self._clear()

    def _unsupported(self, train: Any) -> str | None:
        model = self.model
        if model.runtime.world_size > 1:
            return f"capturing runs in one process, this run has {model.runtime.world_size}"
        if batch_weights(train) is not None:
            return "the training data is split across processes"
        if model.scaler is not None and not getattr(model.optimizer, "_step_supports_amp_scaling", False):
            name = type(model.optimizer).__name__
            return f"float16 gradient scaling reads the host in {name}'s step; use a fused optimizer"
        if len(model.optimizers) > 1:
            return f"the step uses {len(model.optimizers)} optimizers; capturing takes one"
        if model.scheduler_interval == "step" and getattr(model.scheduler, "cycle_momentum", False):
            return "a per-step momentum schedule (cycle_momentum=True) cannot change a captured step"
        if model.scheduler is not None and not takes_tensor_lr(model.optimizer):
            name = type(model.optimizer).__name__
            return f"{name} cannot read its learning rate from a tensor, which a scheduled rate needs"
        return None

    def take_compile_seconds(self) -> float:
        """Seconds spent capturing since the last call."""
        seconds, self._compile_seconds = self._compile_seconds, 0.0
        return seconds

    # -- one step -------------------------------------------------------------------------------
    def step(self, batch: Any) -> StepOutput:
        """Train on ``batch``: warm-up, capture, replay, or an eager step for other shapes."""
        if self.reason is not None:
            return self._eager(batch)
        key = self._key_of(batch)
        if key is None:
            self._give_up("batches hold values other than tensors")
            return self._eager(batch)
        if self._key is None:
            self._key = key
        if key != self._key:
            self._other_shape(key)
            return self._eager(batch)
        if self._warm < self.warmup:
            self._warm += 1
            return self._warmup_step(batch)
        meter = self.model.state.train_meter
        if meter is None:  # a step called outside fit: nothing to record into
            return self._eager(batch)
        if self._meter is None or self._meter.meter is not meter:
            self._meter, self._graph = GraphMeter(meter), None
        losses = self._meter.prepare()
        if self._graph is None or losses is not self._losses:
            return self._capture_and_run(batch, self._meter, losses)
        return self._replay(batch, self._meter)

    def record(
        self, meter: Meter, loss: Any, preds: Any, target: Any, n: int, weight: torch.Tensor | None = None
    ) -> None:
        """Add a step's output to ``meter`` (the arguments of ``Meter.update``): the host half after
        a replay, a whole update after an eager step."""
        if self._replayed and self._meter is not None and self._meter.meter is meter:
            self._replayed = False
            self._meter.record_replay(preds, target, n, self._counts)
        else:
            meter.update(loss, preds, target, n, weight)

    def _key_of(self, batch: Any) -> Any:
        if isinstance(batch, LazyBatch):
            return ("lazy", id(batch.loader), len(batch.index))
        found = _tensor_leaves(batch)
        if found is None:
            return None
        leaves, spec = found
        return spec, tuple((tuple(t.shape), t.dtype) for t in leaves)

    def _eager(self, batch: Any) -> StepOutput:
        self._replayed = False
        out = self.model.train_step(batch.materialize() if isinstance(batch, LazyBatch) else batch)
        update_scaler(self.model.scaler)
        return out

    def _warmup_step(self, batch: Any) -> StepOutput:
        if self.model.device.type != "cuda":
            return self._eager(batch)
        current, side = torch.cuda.current_stream(), torch.cuda.Stream()
        side.wait_stream(current)
        with torch.cuda.stream(side):
            out = self._eager(batch)
        current.wait_stream(side)
        for tensor in pytree.tree_leaves((out.loss, out.preds, out.target)):
            if isinstance(tensor, torch.Tensor):
                tensor.record_stream(current)  # made on the side stream, read on this one
        return out

    def _other_shape(self, key: Any) -> None:
        self.eager_batches += 1
        if not self._warned_shape:
            self._warned_shape = True
            warnings.warn(
                f"ember: cuda_graphs: a batch of shapes {_shapes(key)} differs from the captured "
                f"{_shapes(self._key)}; such batches (e.g. the last partial batch of an epoch) run "
                "eagerly, with the same result (drop_last=True avoids them)",
                stacklevel=4,
            )

    def _give_up(self, reason: str) -> None:
        self.reason = reason
        self._graph = None
        warnings.warn(f"ember: cuda_graphs: {reason}; training continues eagerly", stacklevel=4)

    # -- capture and replay ---------------------------------------------------------------------
    def _capture_and_run(self, batch: Any, meter: GraphMeter, losses: torch.Tensor) -> StepOutput:
        started = time.perf_counter()
        before = meter.counts()
        runtime = self.model.runtime
        runtime.autocast_cache = False  # cached weight casts would go stale in the replays
        try:
            graph, source = self._prepare(batch)
            outputs = graph.capture(lambda: self._body(source, meter))
            after = meter.counts()
        except Exception as exc:  # anything capture refuses: train on, eagerly
            meter.set_counts(before)
            _drop_grads(self.model.net)  # grads the capture assigned hold nothing
            self._give_up(f"the step could not be captured ({type(exc).__name__}: {exc}){_hint(exc)}")
            runtime.autocast_cache = True
            return self._eager(batch)
        finally:
            runtime.autocast_cache = True
        meter.set_counts(before)  # capturing counted nothing; each run adds the counts below
        self._counts = [{k: a[k] - b[k] for k in a} for a, b in zip(after, before, strict=True)]
        self._graph, self._losses, self._outputs = graph, losses, outputs
        self._compile_seconds += time.perf_counter() - started
        if graph.executes_on_capture:
            return self._finish()
        return self._replay(batch, meter)

    def _prepare(self, batch: Any) -> tuple[Any, Callable[[], Any]]:
        """The graph object and the function giving the step's batch from static buffers."""
        model = self.model
        self._generator = None
        if isinstance(batch, LazyBatch):
            loader = batch.loader
            self._static = [batch.index.clone()]
            if loader.augment:
                self._generator = torch.Generator(device=loader.device)
                self._generator.manual_seed(mixed_seed(loader.seed, batch.epoch, batch.b))
            generator = self._generator

            def source() -> Any:
                return loader.cut(self._static[0], generator)

        else:
            leaves, spec = pytree.tree_flatten(batch)
            self._static = [leaf.to(model.device, copy=True) for leaf in leaves]

            def source() -> Any:
                return pytree.tree_unflatten(self._static, spec)

        _drop_grads(model.net)  # backward in the capture allocates the grads
        return self.make_graph([] if self._generator is None else [self._generator]), source

    def _body(self, source: Callable[[], Any], meter: GraphMeter) -> tuple[Any, Any, Any]:
        """The captured step: the model's own ``train_step`` on the static batch, then the meter's
        device half; no host reads, no Python numbers that change between batches."""
        out = self.model.train_step(source())
        update_scaler(self.model.scaler)
        meter.device_update(out.loss, out.preds, out.target)
        self._size = out.size  # the step's own count, a host int fixed by the shapes
        return out.loss, out.preds, out.target

    def _replay(self, batch: Any, meter: GraphMeter) -> StepOutput:
        if isinstance(batch, LazyBatch):
            self._static[0].copy_(batch.index)
            if self._generator is not None:
                loader = batch.loader
                self._generator.manual_seed(mixed_seed(loader.seed, batch.epoch, batch.b))
        else:
            for static, leaf in zip(self._static, pytree.tree_leaves(batch), strict=True):
                static.copy_(leaf, non_blocking=True)
        counts = meter.counts()
        self._graph.replay()
        meter.set_counts(counts)  # a replay repeats the device work only; counts come in _finish
        return self._finish()

    def _finish(self) -> StepOutput:
        loss, preds, target = self._outputs  # type: ignore[misc]
        self._replayed = True
        return StepOutput(loss, preds, target, self._size)


def _hint(exc: Exception) -> str:
    """What to change for the causes of failed captures that models meet most."""
    text = str(exc)
    if "unique_by_key" in text or "embedding" in text.lower():
        return (
            "; nn.Embedding's backward syncs with the host above 3072 indices per batch (PyTorch issue "
            "82886): looking rows up with weight.index_select(0, ids) captures"
        )
    if "capturable" in text:
        return "; pass an optimizer with capturable=True support (Adam, AdamW, SGD, ...)"
    return ""


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda:0`` and ``cuda`` (the current device) count as the same."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def _drop_grads(net: torch.nn.Module) -> None:
    """Every parameter's gradient to None (a custom step may train parameters of several optimizers)."""
    for param in net.parameters():
        param.grad = None


def _shapes(key: Any) -> str:
    if key[0] == "lazy":
        return f"[{key[2]} samples]"
    return ", ".join(str(list(shape)) for shape, _ in key[1])
