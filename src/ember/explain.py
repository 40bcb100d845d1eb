"""Explain a failed forward pass: which layer raised, what it received, what it expects.

A net that does not fit its data fails deep inside torch ("mat1 and mat2 shapes cannot be
multiplied"). On that failure path only, the forward pass runs once more in eval mode, without
gradients and with the CPU random state saved, under hooks that record which module was running;
the error then names the layer (its path and type), the shapes and dtypes it got and what its
weights expect. A batch ``(x, y, w)`` whose last element looks like sample weights, given to a net
that does not take that many inputs, gets the rule ember reads tuples by. Out-of-memory and device
errors pass unchanged. Layer 2: knows torch and ember.errors only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ember.errors import DataError, EmberError

__all__ = ["call_net", "explain_forward_failure", "forward_explained"]


def call_net(net: nn.Module, inputs: Any) -> Any:
    """Call ``net`` with ``inputs``: a tensor as one argument, a tuple/list as positional arguments,
    a mapping as keywords."""
    if isinstance(inputs, torch.Tensor):  # the common case first: the ABC check below costs more
        return net(inputs)
    if isinstance(inputs, Mapping):
        return net(**inputs)
    if isinstance(inputs, (tuple, list)):
        return net(*inputs)
    return net(inputs)


def forward_explained(forward: Callable[[Any], Any], net: nn.Module, inputs: Any, batch: Any) -> Any:
    """``forward(inputs)``; a failure of ``net`` becomes the error :func:`explain_forward_failure`
    gives (the original one when there is nothing to add)."""
    try:
        return forward(inputs)
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        explained = explain_forward_failure(net, inputs, batch, exc, forward)
        if explained is exc:
            raise
        raise explained from exc


def explain_forward_failure(
    net: nn.Module, inputs: Any, batch: Any, exc: Exception, forward: Callable[[Any], Any] | None = None
) -> Exception:
    """An ember DataError explaining why ``net`` raised ``exc`` on ``inputs`` (cut from ``batch``;
    ``forward`` is the call that failed, default ``net`` itself), or ``exc`` itself when there is
    nothing to add. Out-of-memory and device errors are never rewritten: they say nothing of the data,
    and a device in an error state cannot run the forward pass again."""
    if isinstance(exc, EmberError) or _device_failure(exc):
        return exc
    found = _failing_layer(net, inputs, forward or (lambda x: call_net(net, x)))
    if found is None:
        return exc
    module, args = found
    weights = _weights_like_tuple(batch) if module is net and isinstance(exc, TypeError) else None
    error = DataError(weights or _describe_failure(net, module, args, exc))
    error.__cause__ = exc
    return error


def _device_failure(exc: Exception) -> bool:
    text = str(exc)
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "CUDA error" in text or "out of memory" in text


def _weights_like_tuple(batch: Any) -> str | None:
    """The message for an ``(x, y, w)`` batch: the last element is 1-d float of the batch length."""
    if not isinstance(batch, (tuple, list)) or len(batch) < 3:
        return None
    last, first = batch[-1], batch[0]
    if not (isinstance(last, torch.Tensor) and last.dim() == 1 and last.is_floating_point()):
        return None
    if not isinstance(first, torch.Tensor) or first.dim() == 0 or first.shape[0] != last.shape[0]:
        return None
    return (
        f"the model failed on a batch of {len(batch)} elements: ember reads a batch (a, b, ..., target) "
        f"as inputs (a, b, ...) and target = the last element, so the net was called with "
        f"{len(batch) - 1} inputs. The last element is a 1-d float tensor of the batch's length, "
        "which looks like sample weights: compile(weighted=True) reads 3-tuple batches as "
        "(inputs, target, sample_weight); batches with several inputs are written ((x1, x2), y)"
    )


def _failing_layer(
    net: nn.Module, inputs: Any, forward: Callable[[Any], Any]
) -> tuple[nn.Module, tuple[Any, ...]] | None:
    """Run ``forward`` again under hooks; the innermost module of ``net`` still running when it
    raised, with its inputs (None when it runs now, or fails outside every module)."""
    running: list[tuple[nn.Module, tuple[Any, ...]]] = []

    def enter(module: nn.Module, args: tuple[Any, ...]) -> None:
        running.append((module, args))

    def leave(module: nn.Module, args: Any, output: Any) -> None:
        running.pop()

    hooks = [(m.register_forward_pre_hook(enter), m.register_forward_hook(leave)) for m in net.modules()]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            forward(inputs)
        return None  # it runs now: nothing certain to say
    except Exception:
        return running[-1] if running else None
    finally:
        net.train(was_training)
        for pair in hooks:
            for handle in pair:
                handle.remove()


def _describe_failure(net: nn.Module, module: nn.Module, args: tuple[Any, ...], exc: BaseException) -> str:
    path = next((name for name, m in net.named_modules() if m is module), "")
    where = f"{type(net).__name__}.forward" if module is net else f"layer {path!r} ({module!r})"
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    expects = _expectation(module)
    return (
        f"the forward pass failed in {where}: it received {_describe_args(args)}"
        f"{'; it expects ' + expects if expects else ''}. torch said: {type(exc).__name__}: {first_line}"
    )


def _describe_args(args: tuple[Any, ...]) -> str:
    parts = [
        f"shape {tuple(a.shape)} {str(a.dtype).removeprefix('torch.')}"
        if isinstance(a, torch.Tensor)
        else type(a).__name__
        for a in args
    ]
    if not parts:
        return "no positional inputs"
    return ("an input of " if len(parts) == 1 else f"{len(parts)} inputs: ") + ", ".join(parts)


def _expectation(module: nn.Module) -> str:
    weight = getattr(module, "weight", None)
    dtype = str(weight.dtype).removeprefix("torch.") if isinstance(weight, torch.Tensor) else None
    if isinstance(module, nn.Linear):
        return f"inputs of shape (..., {module.in_features}) and dtype {dtype}"
    if isinstance(module, nn.modules.conv._ConvNd):
        dims = ", ".join(["H", "W", "D"][: len(module.kernel_size)])
        return f"inputs of shape (N, {module.in_channels}, {dims}) and dtype {dtype}"
    if isinstance(module, nn.Embedding):
        return f"integer indices (int64 or int32) below {module.num_embeddings}"
    if isinstance(module, nn.modules.rnn.RNNBase):
        return f"inputs with {module.input_size} features in the last dimension and dtype {dtype}"
    if isinstance(weight, torch.Tensor):
        return f"inputs that fit its weight of shape {tuple(weight.shape)} and dtype {dtype}"
    return ""
