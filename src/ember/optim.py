"""Optimizers under CUDA graphs: tensor learning rates, capturable steps, portable state dicts.

A captured optimizer step bakes Python numbers into the graph, so with a scheduler
:class:`GraphReady` turns each group's learning rate into a tensor (LR schedulers fill tensors in
place, which replays see), and on CUDA it sets ``capturable=True`` (step counts on the device). Its
``state_dict`` gives the optimizer as the user made it (float learning rates, the original
``capturable``), so checkpoints load into any optimizer on any device; ``release`` puts the optimizer
back after training. Knows torch only.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["GraphReady", "step_optimizer", "takes_tensor_lr", "update_scaler"]


class GraphReady:
    """``optimizer`` prepared for capture on ``device``, remembering what it changed.

    With ``tensor_lr`` (a scheduler will change the rates), learning rates become tensors: float32 on
    CUDA (what fused kernels read), float64 elsewhere (so the values stay exact). On CUDA, optimizers
    with a ``capturable`` option get it, with their step counts moved to the device.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device, tensor_lr: bool) -> None:
        self.optimizer = optimizer
        self._original = [
            {"capturable": group.get("capturable"), "tensor_lr": isinstance(group["lr"], torch.Tensor)}
            for group in optimizer.param_groups
        ]
        on_cuda = device.type == "cuda"
        dtype = torch.float32 if on_cuda else torch.float64
        for group in optimizer.param_groups:
            if tensor_lr and not isinstance(group["lr"], torch.Tensor):
                group["lr"] = torch.tensor(float(group["lr"]), dtype=dtype, device=device)
            if on_cuda and "capturable" in group and not group["capturable"]:
                group["capturable"] = True
                self._move_steps(group, to_params=True)

    def _move_steps(self, group: dict[str, Any], to_params: bool) -> None:
        for param in group["params"]:
            state = self.optimizer.state.get(param, {})
            step = state.get("step")
            if isinstance(step, torch.Tensor):
                state["step"] = step.to(param.device if to_params else "cpu", torch.float32)

    def state_dict(self) -> dict[str, Any]:
        """``optimizer.state_dict()`` with the user's learning-rate types and ``capturable`` flags."""
        state = self.optimizer.state_dict()
        groups = []
        for group, before in zip(state["param_groups"], self._original, strict=True):
            group = dict(group)
            if isinstance(group["lr"], torch.Tensor) and not before["tensor_lr"]:
                group["lr"] = float(group["lr"])
            if "capturable" in group:
                group["capturable"] = before["capturable"]
            groups.append(group)
        return {"state": state["state"], "param_groups": groups}

    def release(self) -> None:
        """Undo the preparation: float learning rates and the original ``capturable`` flags (step
        counts back on the CPU where torch keeps them for such optimizers)."""
        for group, before in zip(self.optimizer.param_groups, self._original, strict=True):
            if isinstance(group["lr"], torch.Tensor) and not before["tensor_lr"]:
                group["lr"] = float(group["lr"])
            if "capturable" in group and group["capturable"] != before["capturable"]:
                group["capturable"] = before["capturable"]
                if not group["capturable"] and not group.get("fused"):
                    self._move_steps(group, to_params=False)


def step_optimizer(
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    grad_clip: float | None,
    grad_divisor: float | torch.Tensor = 1.0,
) -> None:
    """After backward: divide ``optimizer``'s gradients by ``grad_divisor`` (the sample count of an
    accumulation window, or its weight sum as a device tensor), clip their norm to ``grad_clip``
    (unscaled first under a gradient scaler), step (through the scaler when there is one) and zero
    the gradients. The scaler's ``update`` is left to the end of the training step (once, after
    every optimizer stepped). No host reads, so a CUDA graph can capture it."""
    if isinstance(grad_divisor, torch.Tensor) or grad_divisor != 1.0:  # a tensor: no host read
        grads = [p.grad for p in _params(optimizer) if p.grad is not None]
        if grads:
            torch._foreach_div_(grads, grad_divisor)
    if grad_clip is not None:
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(_params(optimizer), grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def update_scaler(scaler: torch.amp.GradScaler | None) -> None:
    """The end of a training step: the gradient scaler's ``update``, once, after every optimizer
    of the step stepped (the fit's TrainFunction, ``find_lr`` and the CUDA-graph capture call it)."""
    if scaler is not None:
        scaler.update()


def takes_tensor_lr(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` steps with tensor learning rates once prepared: the optimizers with a
    ``capturable`` option, and SGD."""
    return isinstance(optimizer, torch.optim.SGD) or all("capturable" in g for g in optimizer.param_groups)
