"""What ``Model.compile`` and ``Model.fit`` check and derive from their arguments: argument ranges
(each error naming the argument), the optimizer belongs to the net, the scheduler is built over it,
the column a plateau scheduler steps on and its direction, Keras' ``fit(x, y)``, binary accuracy
knows logits from probabilities, and the lengths and batch sizes the loop reports. Layer 3: uses
torch, ember.arguments, ember.errors, ember.metrics and the callbacks' Monitor.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ember._tree import first_tensor, to_device
from ember.accumulate import Accumulation
from ember.arguments import check_count, check_not_class, check_positive
from ember.callbacks.base import Callback
from ember.callbacks.monitor import Monitor
from ember.errors import ConfigError, DataError
from ember.metrics import Accuracy, Metric, direction

__all__ = [
    "SCHEDULER_INTERVALS",
    "PlateauInput",
    "accumulation_of",
    "batch_size_of",
    "check_compile_arguments",
    "check_fit_arguments",
    "check_fit_optimizers",
    "check_materialized",
    "check_optimizer",
    "check_optimizer_owns",
    "configure_accuracy",
    "default_optimizer",
    "length_of",
    "make_scheduler",
    "named_optimizers",
    "plateau_monitor",
    "prepare_net",
    "rebind_optimizers",
    "sharding_of",
    "split_batch",
    "with_sample_weight",
    "with_target",
]


def accumulation_of(accumulate: Any, cuda_graphs: bool, weighted: bool) -> Accumulation:
    """``compile(accumulate=k)`` as the window of k steps (k = 1: every step updates). Windows of
    several steps and sample-weighted steps run eagerly: a captured CUDA graph cannot skip the
    update of most steps, nor keep a weight sum across steps."""
    check_count("accumulate", accumulate, 1)
    if cuda_graphs and (accumulate > 1 or weighted):
        warnings.warn(
            f"compile(accumulate={accumulate}, weighted={weighted}) runs its steps eagerly: "
            "cuda_graphs applies to accumulate=1 without sample weights",
            stacklevel=3,
        )
    return Accumulation(accumulate)


def prepare_net(net: nn.Module, runtime: Any, channels_last: bool, jit: bool) -> tuple[nn.Module, nn.Module]:
    """``(net, train_net)``: the net on the runtime's device (channels-last when asked), and the
    module training steps call: DDP-wrapped under torchrun, ``torch.compile``d with ``jit``."""
    net = net.to(runtime.device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    train_net = runtime.wrap_model(net)
    return net, torch.compile(train_net) if jit else train_net


def split_batch(batch: Any, device: torch.device) -> tuple[Any, Any]:
    """``(inputs, target)`` of a batch moved to ``device``: a tensor is inputs only, ``(x,)`` too,
    ``(x, y)`` is inputs and target, longer sequences are ``(*inputs, target)``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True), None
    if isinstance(batch, (list, tuple)) and batch and not hasattr(batch, "_fields"):
        if len(batch) == 1:
            return to_device(batch[0], device), None
        if len(batch) == 2:
            return to_device(batch[0], device), to_device(batch[1], device)
        return to_device(tuple(batch[:-1]), device), to_device(batch[-1], device)
    raise DataError(
        f"a batch of type {type(batch).__name__} is not (inputs, target); "
        "override Model.train_step / eval_step / predict_step for custom batches"
    )


def named_optimizers(
    optimizer: Any, net: nn.Module, device: torch.device
) -> dict[str, torch.optim.Optimizer]:
    """``compile(optimizer=...)`` as ``{name: optimizer}``: a mapping as it is (several optimizers
    for a custom ``train_step``; the first one is ``model.optimizer``), one optimizer as
    ``{"optimizer": ...}``, None as the default Adam."""
    if isinstance(optimizer, Mapping):
        return dict(optimizer)
    return {"optimizer": optimizer or default_optimizer(net, device)}


def default_optimizer(net: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """Adam(lr=1e-3), fused into one kernel per step on CUDA."""
    return torch.optim.Adam(net.parameters(), lr=1e-3, fused=device.type == "cuda" or None)


def length_of(batches: Any) -> int | None:
    try:
        return len(batches)
    except TypeError:
        return None


def batch_size_of(target: Any, inputs: Any) -> int:
    if type(target) is torch.Tensor and target.dim():  # the common case first
        return target.shape[0]
    tensor = target if isinstance(target, torch.Tensor) else first_tensor(inputs)
    return int(tensor.shape[0]) if tensor is not None and tensor.dim() else 1


SCHEDULER_INTERVALS = ("epoch", "step")
VERBOSITY = (0, 1, 2)


def with_target(data: Any, y: Any, what: str) -> Any:
    """``(data, y)`` for Keras' ``fit(x, y)`` / ``evaluate(x, y)`` (``data`` alone when ``y`` is None),
    checked: ``y`` must be array-like with as many samples as ``data``."""
    if y is None:
        return data
    if isinstance(y, (int, float)) and not isinstance(y, bool):
        option = "epochs" if what == "fit" else "batch_size"
        raise ConfigError(
            f"{what}'s second positional argument is the target y, as in Keras' {what}(x, y); "
            f"got the number {y!r}: pass options by name, e.g. {option}={y!r}"
        )
    if not hasattr(data, "__len__") or not hasattr(y, "__len__") or isinstance(data, (tuple, list, Mapping)):
        raise ConfigError(
            f"{what}(x, y) takes arrays, tensors or DataFrames for x and y; got {type(data).__name__} and "
            f"{type(y).__name__}: pass data that brings its targets as one argument, e.g. {what}((x, y))"
        )
    if len(data) != len(y):
        raise DataError(f"{what}(x, y): x has {len(data)} samples but y has {len(y)}")
    return (data, y)


def with_sample_weight(data: Any, sample_weight: Any) -> Any:
    """``(x, y, sample_weight)`` for ``fit(x, y, sample_weight=w)`` or ``fit((x, y), sample_weight=w)``
    (``data`` alone when ``sample_weight`` is None), checked: one weight per sample."""
    if sample_weight is None:
        return data
    if not (isinstance(data, tuple) and len(data) == 2 and hasattr(data[0], "__len__")):
        raise ConfigError(
            "fit(sample_weight=...) weights array data, fit(x, y, sample_weight=w); a Dataset or "
            "DataLoader brings its weights as the third element of each item, with "
            "compile(weighted=True)"
        )
    if not hasattr(sample_weight, "__len__") or len(sample_weight) != len(data[0]):
        count = len(sample_weight) if hasattr(sample_weight, "__len__") else type(sample_weight).__name__
        raise DataError(
            f"fit(sample_weight=...) needs one weight per sample: x has {len(data[0])}, got {count}"
        )
    return (*data, sample_weight)


def check_fit_arguments(epochs: Any, callbacks: Any, verbose: Any) -> list[Callback]:
    """ConfigErrors for ``fit`` arguments that would train wrong or nothing; the callbacks as a list."""
    check_count("epochs", epochs, 1)
    if verbose not in VERBOSITY or isinstance(verbose, bool):
        raise ConfigError(
            f"verbose must be 0 (silent), 1 (progress bar) or 2 (one line per epoch), got {verbose!r}"
        )
    if isinstance(callbacks, Callback):
        name = type(callbacks).__name__
        raise ConfigError(f"callbacks takes a list: callbacks=[{name}(...)], got one {name}")
    if isinstance(callbacks, (str, bytes, Mapping)) or not isinstance(callbacks, Iterable):
        raise ConfigError(f"callbacks takes a list of ember callbacks, got {type(callbacks).__name__}")
    listed = list(callbacks)
    for cb in listed:
        check_not_class("callbacks", cb)
        if not isinstance(cb, Callback):
            raise ConfigError(f"callbacks must be ember.callbacks.Callback objects, got {cb!r}")
    twice = sorted({type(cb).__name__ for cb in listed if sum(c is cb for c in listed) > 1})
    if twice:
        raise ConfigError(
            f"the same {', '.join(twice)} object is in callbacks twice: its hooks would run twice per "
            "epoch (an EarlyStopping's patience would run out twice as fast); pass it once"
        )
    return listed


def check_compile_arguments(net: nn.Module, optimizer: Any, scheduler_interval: str, grad_clip: Any) -> None:
    """ConfigErrors for ``compile`` arguments that cannot train right, each naming the argument
    (the loss, the target and the weights are ``ember.objective``'s)."""
    if scheduler_interval not in SCHEDULER_INTERVALS:
        raise ConfigError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
    check_positive("grad_clip", grad_clip)
    if isinstance(optimizer, Mapping):
        _check_named_optimizers(optimizer)
    elif optimizer is not None:
        check_optimizer(optimizer)
    check_materialized(net)


def _check_named_optimizers(optimizers: Mapping[Any, Any]) -> None:
    """``compile(optimizer={name: optimizer})``: names of letters, digits and _, optimizer objects,
    no parameter in two of them (it would be stepped twice per step)."""
    if not optimizers:
        raise ConfigError("optimizer={} names no optimizer; pass None for the default Adam")
    owner: dict[int, str] = {}
    for name, each in optimizers.items():
        if not re.fullmatch(r"[A-Za-z0-9_]+", str(name)):
            raise ConfigError(f"optimizer names are letters, digits and _; got {name!r}")
        check_optimizer(each)
        for param in (p for group in each.param_groups for p in group["params"]):
            if owner.setdefault(id(param), name) != name:
                raise ConfigError(
                    f"optimizers {owner[id(param)]!r} and {name!r} hold the same parameter "
                    f"(shape {tuple(param.shape)}): it would be stepped twice per step"
                )


def check_optimizer(optimizer: Any) -> None:
    """A ConfigError unless ``optimizer`` is a torch optimizer object."""
    check_not_class("optimizer", optimizer)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")


def check_fit_optimizers(
    optimizers: dict[str, torch.optim.Optimizer], net: nn.Module, processes: int
) -> None:
    """Before training: each optimizer holds some of ``net``'s parameters, and a step with several
    optimizers runs in one process (it calls submodules outside the DDP wrapper)."""
    for optimizer in optimizers.values():
        check_optimizer_owns(optimizer, net)
    if len(optimizers) > 1 and processes > 1:
        raise ConfigError(
            "a step with several optimizers calls its submodules directly, outside the DDP "
            "wrapper, so processes would not share gradients; train it in one process"
        )


def check_optimizer_owns(optimizer: torch.optim.Optimizer, net: nn.Module) -> None:
    """Before training: an optimizer over none of ``net``'s parameters would train nothing (checked
    at fit, not compile, so that evaluating with any optimizer works)."""
    own = {id(p) for p in net.parameters()}
    given = [p for group in optimizer.param_groups for p in group["params"]]
    if given and not any(id(p) in own for p in given):
        raise ConfigError(
            "the optimizer holds none of this model's parameters, so training would change nothing; "
            "create it from model.parameters() / net.parameters()"
        )


def sharding_of(args: Mapping[str, Any]) -> dict[str, Any]:
    """``compile``'s FSDP options (``args``: its arguments) as FSDPRuntime's keyword arguments;
    none for strategy "ddp". CUDA graphs are refused with "fsdp": a captured step cannot hold
    FSDP2's all-gathers and reduce-scatters, which it schedules on their own streams."""
    if args["strategy"] != "fsdp":
        return {}
    blocks = tuple(args["fsdp_blocks"])
    for block in blocks:
        if not (isinstance(block, type) and issubclass(block, nn.Module)):
            raise ConfigError(f"fsdp_blocks holds {block!r}; give module classes, e.g. fsdp_blocks=(Block,)")
    check_count("fsdp_min_params", args["fsdp_min_params"], 0)
    if args["cuda_graphs"]:
        raise ConfigError(
            "cuda_graphs=True cannot be used with strategy='fsdp': a captured step cannot hold FSDP's "
            "all-gathers and reduce-scatters; compile without cuda_graphs"
        )
    return {
        "blocks": blocks,
        "min_params": args["fsdp_min_params"],
        "reshard_after_forward": bool(args["reshard_after_forward"]),
    }


def rebind_optimizers(
    optimizers: Mapping[str, torch.optim.Optimizer], names: Mapping[int, str], net: nn.Module
) -> None:
    """Point optimizers built over ``net``'s parameters before it was sharded at its sharded ones
    (FSDP2 replaces each parameter object); ``names``: parameter id -> name before sharding. The
    optimizer objects stay the user's; one that already holds state is refused (its moments
    belong to the unsharded tensors)."""
    now = dict(net.named_parameters())
    for key, optimizer in optimizers.items():
        groups = optimizer.param_groups
        moved = [[now.get(names.get(id(p), ""), p) for p in group["params"]] for group in groups]
        if all(
            a is b
            for group, new in zip(groups, moved, strict=True)
            for a, b in zip(group["params"], new, strict=True)
        ):
            continue
        if optimizer.state:
            raise ConfigError(
                f"the optimizer {key!r} already holds state (it has stepped), which belongs to the "
                "unsharded parameters: build it fresh before compile(strategy='fsdp'), or leave "
                "optimizer=None for the default Adam"
            )
        for group, new in zip(groups, moved, strict=True):
            group["params"] = new


def check_materialized(net: nn.Module) -> None:
    """A ConfigError when parameters or buffers live on the meta device (shapes without values)."""
    meta = [name for name, t in [*net.named_parameters(), *net.named_buffers()] if t.is_meta]
    if meta:
        raise ConfigError(
            f"{type(net).__name__} has {len(meta)} tensors on the meta device (e.g. {meta[0]!r}): they "
            "hold no values; create the net on a real device, or call net.to_empty(device='cpu') and "
            "load weights first"
        )


def make_scheduler(scheduler: Any, optimizer: torch.optim.Optimizer) -> Any:
    """The scheduler object (a factory is called with ``optimizer``); one built over another
    optimizer is refused, since it would never change the rate this model trains with."""
    check_not_class("scheduler", scheduler)
    if scheduler is not None and not hasattr(scheduler, "step"):
        if not callable(scheduler):
            raise ConfigError(f"scheduler must be an LR scheduler or a factory, got {scheduler!r}")
        scheduler = scheduler(optimizer)
    owner = getattr(scheduler, "optimizer", optimizer)
    if owner is not optimizer:
        raise ConfigError(
            f"the scheduler {type(scheduler).__name__} was built over another optimizer "
            f"({type(owner).__name__} at {id(owner):#x}), so it would never change this model's "
            "learning rate; build it over the optimizer passed to compile, or pass a factory: "
            "scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 10)"
        )
    return scheduler


class PlateauInput:
    """What a ReduceLROnPlateau steps on at each epoch end: one history column (with ``fallback``,
    "loss" when that column is absent, i.e. "val_loss" in a fit without validation data)."""

    def __init__(self, key: str, mode: str, fallback: bool) -> None:
        self.monitor = Monitor(key, mode)
        self.fallback = fallback

    def value(self, logs: dict[str, float], validating: bool) -> float | None:
        """The value to step on after an epoch with ``logs`` (None after an epoch that a fit with
        validation data did not validate: no step); a ConfigError listing the columns when missing."""
        if self.monitor.waits(logs, validating):
            return None
        if self.fallback and self.monitor.key not in logs:
            return float(logs["loss"])
        return self.monitor.value(logs)


def plateau_monitor(
    scheduler: Any, monitor: str | None, interval: str, metrics: list[Metric]
) -> PlateauInput | None:
    """The history column a ReduceLROnPlateau steps on (None for other schedulers), checked now:
    its mode must agree with the column's direction, and it steps once per epoch.

    ``monitor=None`` means "val_loss", or "loss" for a fit without validation data.
    """
    if not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        if monitor is not None:
            raise ConfigError(
                f"scheduler_monitor={monitor!r} applies to ReduceLROnPlateau; "
                f"{type(scheduler).__name__} steps without a metric"
            )
        return None
    if interval != "epoch":
        raise ConfigError("ReduceLROnPlateau steps on an epoch's metric: use scheduler_interval='epoch'")
    key = monitor or "val_loss"
    wanted = direction(key, metrics)
    if wanted is not None and wanted != scheduler.mode:
        better = "lower" if wanted == "min" else "higher"
        raise ConfigError(
            f"ReduceLROnPlateau(mode={scheduler.mode!r}) is built for a metric where "
            f"{'higher' if scheduler.mode == 'max' else 'lower'} is better, but it would step on "
            f"{key!r}, where {better} is better: build the scheduler with mode={wanted!r}, or name "
            "the history column it should watch with compile(scheduler_monitor=...), e.g. "
            "'val_accuracy' for mode='max'"
        )
    return PlateauInput(key, scheduler.mode, fallback=monitor is None)


def configure_accuracy(metrics: list[Metric], loss: Any) -> None:
    """Binary accuracy reads logits after BCEWithLogitsLoss and probabilities after BCELoss."""
    from_logits = {nn.BCEWithLogitsLoss: True, nn.BCELoss: False}.get(type(loss))
    for metric in metrics:
        if isinstance(metric, Accuracy) and metric.from_logits is None:
            metric.from_logits = from_logits
