"""Optimizers under CUDA graphs: tensor learning rates, capturable steps, portable state dicts.

A captured optimizer step bakes Python numbers into the graph, so :func:`make_graph_ready` turns each
group's learning rate into a tensor (LR schedulers fill tensors in place, which replays see) and,
on CUDA, sets ``capturable=True`` (step counts on the device). :func:`portable_state_dict` writes the
optimizer as the user made it (float learning rates, the original ``capturable``), so checkpoints load
into any optimizer on any device; :func:`release` puts the optimizer back after training. Knows torch
only.
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

import torch

__all__ = ["make_graph_ready", "portable_state_dict", "release"]

_ORIGINAL: WeakKeyDictionary[torch.optim.Optimizer, list[dict[str, Any]]] = WeakKeyDictionary()


def make_graph_ready(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Tensor learning rates (float32 on CUDA, where fused kernels read them; float64 elsewhere, so
    the values stay exact) and, on CUDA, ``capturable=True`` with step counts on the device."""
    if optimizer in _ORIGINAL:
        return
    _ORIGINAL[optimizer] = [
        {"capturable": group.get("capturable"), "tensor_lr": isinstance(group["lr"], torch.Tensor)}
        for group in optimizer.param_groups
    ]
    on_cuda = device.type == "cuda"
    dtype = torch.float32 if on_cuda else torch.float64
    for group in optimizer.param_groups:
        if not isinstance(group["lr"], torch.Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), dtype=dtype, device=device)
        if on_cuda and "capturable" in group and not group["capturable"]:
            group["capturable"] = True
            _move_steps(optimizer, group, to_params=True)


def _move_steps(optimizer: torch.optim.Optimizer, group: dict[str, Any], to_params: bool) -> None:
    for param in group["params"]:
        state = optimizer.state.get(param, {})
        step = state.get("step")
        if isinstance(step, torch.Tensor):
            state["step"] = step.to(param.device if to_params else "cpu", torch.float32)


def portable_state_dict(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()`` with float learning rates and the user's ``capturable`` flags."""
    state = optimizer.state_dict()
    original = _ORIGINAL.get(optimizer)
    if original is None:
        return state
    groups = []
    for group, before in zip(state["param_groups"], original, strict=True):
        group = dict(group)
        if isinstance(group["lr"], torch.Tensor) and not before["tensor_lr"]:
            group["lr"] = float(group["lr"])
        if "capturable" in group:
            group["capturable"] = before["capturable"]
        groups.append(group)
    return {"state": state["state"], "param_groups": groups}


def release(optimizer: torch.optim.Optimizer) -> None:
    """Undo :func:`make_graph_ready`: float learning rates, the original ``capturable`` flags (step
    counts back on the CPU where torch keeps them for such optimizers)."""
    original = _ORIGINAL.pop(optimizer, None)
    if original is None:
        return
    for group, before in zip(optimizer.param_groups, original, strict=True):
        if isinstance(group["lr"], torch.Tensor) and not before["tensor_lr"]:
            group["lr"] = float(group["lr"])
        if "capturable" in group and group["capturable"] != before["capturable"]:
            group["capturable"] = before["capturable"]
            if not group["capturable"] and not group.get("fused"):
                _move_steps(optimizer, group, to_params=False)
