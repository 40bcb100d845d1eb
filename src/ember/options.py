"""What ``Model.compile`` and ``Model.fit`` check and derive from their arguments: the optimizer
belongs to the net, the scheduler is built, binary accuracy knows logits from probabilities, and
the lengths and batch sizes the loop reports. Layer 3: uses torch, ember.errors and ember.metrics.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ember._tree import first_tensor, to_device
from ember.errors import ConfigError, DataError
from ember.metrics import Accuracy, Metric

__all__ = [
    "batch_size_of",
    "check_optimizer",
    "configure_accuracy",
    "default_optimizer",
    "length_of",
    "make_scheduler",
    "prepare_net",
    "split_batch",
]


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


def default_optimizer(net: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """Adam(lr=1e-3), fused into one kernel per step on CUDA."""
    return torch.optim.Adam(net.parameters(), lr=1e-3, fused=device.type == "cuda" or None)


def length_of(batches: Any) -> int | None:
    try:
        return len(batches)
    except TypeError:
        return None


def batch_size_of(target: Any, inputs: Any) -> int:
    tensor = target if isinstance(target, torch.Tensor) else first_tensor(inputs)
    return int(tensor.shape[0]) if tensor is not None and tensor.dim() else 1


def check_optimizer(optimizer: Any, net: nn.Module) -> None:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    own = {id(p) for p in net.parameters()}
    given = [p for group in optimizer.param_groups for p in group["params"]]
    if given and not any(id(p) in own for p in given):
        raise ConfigError(
            "the optimizer holds none of this model's parameters; "
            "create it from model.parameters() / net.parameters()"
        )


def make_scheduler(scheduler: Any, optimizer: torch.optim.Optimizer) -> Any:
    if scheduler is None or hasattr(scheduler, "step"):
        return scheduler
    if callable(scheduler):
        return scheduler(optimizer)
    raise ConfigError(f"scheduler must be an LR scheduler or a factory, got {scheduler!r}")


def configure_accuracy(metrics: list[Metric], loss: Any) -> None:
    """Binary accuracy reads logits after BCEWithLogitsLoss and probabilities after BCELoss."""
    from_logits = {nn.BCEWithLogitsLoss: True, nn.BCELoss: False}.get(type(loss))
    for metric in metrics:
        if isinstance(metric, Accuracy) and metric.from_logits is None:
            metric.from_logits = from_logits
