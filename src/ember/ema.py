"""WeightAverage: an exponential moving average of a net's weights, kept on the net's device.

Job: hold a copy of the net's trainable parameters, move it towards the parameters after each
optimizer step (``update``: one fused ``torch._foreach_lerp_`` per device/dtype group), lend it to
the net for validation (``swapped``), copy it in at the end (``copy_to``) and save / resume it
bitwise (``state_dict`` / ``load_state_dict``). ``update`` reads nothing on the host, branches on no
tensor value and allocates nothing, so it can run inside a captured CUDA graph; values are always
copied in place, never swapped by pointer, because a captured graph holds the parameters' addresses.

What is averaged: parameters with ``requires_grad`` (fixed when the average is built). Everything
else (frozen parameters, BatchNorm's running statistics, integer buffers such as
``num_batches_tracked``) is not averaged: the averaged net uses the net's own current values, which
is what copying them after every step would give, without the copy. The average keeps the
parameters' dtype (as timm does): parameters stored in bfloat16 lose updates smaller than bfloat16's
resolution (with ``decay=0.999``, most of them), so keep parameters in float32 and train under
autocast (``precision="bf16"``). Build it after the net is on its device.

Boundary: knows torch, ember.errors and ember.arguments only; when to update, validate, swap in and
save is the caller's (``Model.compile``, the training step, the checkpoint). Layer 1.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ember.arguments import check_not_class
from ember.errors import CheckpointError, ConfigError

__all__ = ["WeightAverage"]


def _check_decay(decay: Any) -> float:
    """``decay`` as a float, or a ConfigError naming it unless it is a number strictly between 0 and 1."""
    number = isinstance(decay, numbers.Real) and not isinstance(decay, bool)
    if not number or not math.isfinite(decay) or not 0 < decay < 1:
        raise ConfigError(f"decay must be a number in (0, 1) such as 0.999, got {decay!r}")
    return float(decay)


def _groups(
    averages: list[torch.Tensor], params: list[torch.Tensor]
) -> list[tuple[list[torch.Tensor], list[torch.Tensor]]]:
    """``(averages, params)`` pairs split by (device, dtype): one fused foreach kernel each."""
    groups: dict[tuple[torch.device, torch.dtype], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    for average, param in zip(averages, params, strict=True):
        group = groups.setdefault((param.device, param.dtype), ([], []))
        group[0].append(average)
        group[1].append(param)
    return list(groups.values())


class WeightAverage:
    """An exponential moving average of ``net``'s trainable parameters (see the module docstring).

    After ``t`` updates the average is ``a_t = decay * a_(t-1) + (1 - decay) * p_t``, starting from
    the parameters at construction. With ``warmup=True`` update ``t`` (counting from 0) uses
    ``min(decay, (1 + t) / (10 + t))`` instead (as TensorFlow's ``num_updates`` and timm), so a
    short run is not dominated by the initial weights; the count lives on the device, so this stays
    capturable, at the cost of three fused in-place passes per update instead of one.

    Args:
        net: the module whose parameters are averaged (unwrapped: not the DDP wrapper).
        decay: the weight kept by the old average at each update, in (0, 1).
        warmup: ramp the decay up from 0.1 over the first updates.

    Example:
        >>> net = nn.Linear(2, 1)
        >>> average = WeightAverage(net, decay=0.9)
        >>> average.update()  # after each optimizer step
        >>> with average.swapped():
        ...     prediction = net(torch.ones(1, 2))  # the averaged weights
    """

    def __init__(self, net: nn.Module, decay: float = 0.999, warmup: bool = False) -> None:
        check_not_class("net", net)
        if not isinstance(net, nn.Module):
            raise ConfigError(f"net must be an nn.Module, got {type(net).__name__}")
        self._decay = _check_decay(decay)
        self._warmup = bool(warmup)
        self._net = net
        named = [(name, p) for name, p in net.named_parameters() if p.requires_grad]
        if not named:
            raise ConfigError(f"{type(net).__name__} has no trainable parameters to average")
        self._names = [name for name, _ in named]
        self._params = [p for _, p in named]
        with torch.no_grad():
            self._averages = [p.detach().clone() for p in self._params]
        self._groups = _groups(self._averages, self._params)
        device = self._params[0].device
        self._count = torch.zeros((), dtype=torch.int64, device=device)
        # Scratch for the warm-up decay, made here so that ``update`` allocates nothing.
        self._decay_now = torch.zeros((), dtype=torch.float32, device=device)
        self._denominator = torch.zeros((), dtype=torch.float32, device=device)
        self._inside = False

    @property
    def decay(self) -> float:
        """The decay given at construction."""
        return self._decay

    @property
    def warmup(self) -> bool:
        """Whether the decay ramps up over the first updates."""
        return self._warmup

    @property
    def updates(self) -> torch.Tensor:
        """The number of updates so far: a 0-d int64 tensor on the device (reading it is a host sync)."""
        return self._count

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the parameters; call it after each optimizer step.

        Device ops only (no host read, no allocation, no branch on a tensor value): it may be
        captured in a CUDA graph along with the optimizer step.
        """
        self._refuse_inside("update")
        if self._warmup:
            self._fill_warmup_decay()
            for averages, params in self._groups:
                # a <- (a - p) * d + p, with d a device tensor: lerp takes no tensor weight.
                torch._foreach_sub_(averages, params)
                torch._foreach_mul_(averages, self._decay_now)
                torch._foreach_add_(averages, params)
        else:
            for averages, params in self._groups:
                torch._foreach_lerp_(averages, params, 1.0 - self._decay)
        self._count.add_(1)

    def _fill_warmup_decay(self) -> None:
        """``self._decay_now = min(decay, (1 + t) / (10 + t))`` in float32, on the device, in place."""
        torch.add(self._count, 1.0, out=self._decay_now)
        torch.add(self._count, 10.0, out=self._denominator)
        self._decay_now.div_(self._denominator).clamp_(max=self._decay)

    @contextmanager
    def swapped(self) -> Iterator[nn.Module]:
        """Inside, the net holds the averaged weights; afterwards its own weights are back, bitwise.

        Values are exchanged in place (one parameter-sized temporary at a time), so tensors and
        their addresses stay the same and a captured training graph stays valid.

        Example:
            >>> net = nn.Linear(2, 1)
            >>> average = WeightAverage(net)
            >>> with average.swapped() as averaged:
            ...     averaged is net
            True
        """
        self._refuse_inside("swapped")
        self._exchange()
        self._inside = True
        try:
            yield self._net
        finally:
            self._inside = False
            self._exchange()

    @torch.no_grad()
    def _exchange(self) -> None:
        """Swap the values of the parameters and of the averages (its own inverse, bitwise)."""
        for average, param in zip(self._averages, self._params, strict=True):
            saved = param.clone()
            param.copy_(average)
            average.copy_(saved)

    @torch.no_grad()
    def copy_to(self, net: nn.Module | None = None) -> None:
        """Copy the averaged weights into ``net`` for good (default: the averaged net itself).

        Another ``net`` (same architecture, any device or dtype) gets the averages for the
        averaged parameters and the averaged net's own values for everything else (buffers, frozen
        parameters), so it becomes the complete averaged model.

        Raises:
            ConfigError: inside ``swapped()``, or ``net``'s state does not fit (names the keys).
        """
        self._refuse_inside("copy_to")
        if net is None or net is self._net:
            for averages, params in self._groups:
                torch._foreach_copy_(params, averages)
            return
        index = {id(param): i for i, param in enumerate(self._params)}
        state = self._net.state_dict()
        # Tied parameters appear under every name in state_dict(); each name gets the average.
        for name, param in self._net.named_parameters(remove_duplicate=False):
            if id(param) in index:
                state[name] = self._averages[index[id(param)]]
        try:
            net.load_state_dict(state)
        except RuntimeError as error:
            raise ConfigError(
                f"copy_to: {type(net).__name__} does not fit the averaged {type(self._net).__name__}: {error}"
            ) from error

    def state_dict(self) -> dict[str, Any]:
        """``{"decay", "warmup", "updates", "average": {parameter name: tensor}}``.

        The tensors are the live ones (as ``nn.Module.state_dict``): save or clone them before the
        next ``update``. Buffers and frozen parameters are not in it (they are the net's own).
        """
        holders = self._params if self._inside else self._averages
        return {
            "decay": self._decay,
            "warmup": self._warmup,
            "updates": self._count,
            "average": dict(zip(self._names, holders, strict=True)),
        }

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load a ``state_dict()`` in place (same tensors, same addresses): a resume is bitwise.

        Raises:
            CheckpointError: a key is missing or unexpected, or a tensor's shape differs (named).
            ConfigError: the saved decay or warm-up differs from this average's.
        """
        self._refuse_inside("load_state_dict")
        for key in ("decay", "warmup", "updates", "average"):
            if key not in state:
                raise CheckpointError(f"weight-average state has no {key!r} (keys: {sorted(state)})")
        for key, mine in (("decay", self._decay), ("warmup", self._warmup)):
            if state[key] != mine:
                raise ConfigError(
                    f"the saved weight average has {key}={state[key]!r}, this one {key}={mine!r}; "
                    "resume with the same setting"
                )
        saved = state["average"]
        self._check_names(saved)
        for name, average in zip(self._names, self._averages, strict=True):
            average.copy_(saved[name])
        self._count.copy_(torch.as_tensor(state["updates"]))

    def _check_names(self, saved: Mapping[str, Any]) -> None:
        """A CheckpointError naming the keys or the shape that do not match this average."""
        missing = sorted(set(self._names) - set(saved))
        unexpected = sorted(set(saved) - set(self._names))
        if missing or unexpected:
            raise CheckpointError(
                f"weight-average state does not fit {type(self._net).__name__}: "
                f"missing keys {missing}, unexpected keys {unexpected}"
            )
        for name, average in zip(self._names, self._averages, strict=True):
            if not isinstance(saved[name], torch.Tensor):
                raise CheckpointError(
                    f"weight-average state key {name!r} holds a {type(saved[name]).__name__}, not a tensor"
                )
            shape = tuple(saved[name].shape)
            if shape != tuple(average.shape):
                raise CheckpointError(
                    f"weight-average state key {name!r} has shape {shape}, "
                    f"the parameter has shape {tuple(average.shape)}"
                )

    def _refuse_inside(self, what: str) -> None:
        """A ConfigError when ``what`` is called inside ``swapped()`` (the net holds the average)."""
        if self._inside:
            raise ConfigError(f"WeightAverage.{what}() inside swapped(): leave the with-block first")
