"""StepMethods: what one training, evaluation or prediction step of a ``Model`` does.

The overridable half of ``ember.Model``: splitting a batch, the forward pass, the loss, backward
with the loss scales of processes, accumulation and sample weights, the optimizer update and the
EMA, and the weights validation runs with. ``Model`` adds the verbs (compile, fit, evaluate,
predict, save, load) and sets the attributes these methods read. Override ``train_step`` /
``eval_step`` / ``predict_step`` (in a ``Model`` subclass) for custom batches and steps.
Layer 3: uses the loop's types, the objective, the EMA, accumulation, optim and explain.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ember.accumulate import Accumulation
from ember.batches import output_logits
from ember.ema import WeightAverage
from ember.explain import call_net, forward_explained
from ember.loop import StepContext, StepOutput
from ember.objective import Objective
from ember.optim import step_optimizer
from ember.options import PlateauInput, batch_size_of
from ember.runtime import Runtime

__all__ = ["StepMethods"]


class StepMethods:
    """The step methods of :class:`ember.Model` (it sets every attribute below in ``__init__`` and
    ``compile``).

    Attributes:
        net: the module being trained; ``runtime`` where and how it computes.
        objective: how batches split and what the loss is; ``loss`` its loss function.
        optimizer, optimizers, scheduler, scaler, grad_clip: the update.
        accumulation: the gradient-accumulation window; ``ema`` the weight average (or None).
        step_context: what the fit loop tells the current training step.
    """

    net: nn.Module
    runtime: Runtime
    objective: Objective
    loss: Any
    optimizer: Any
    optimizers: dict[str, torch.optim.Optimizer]
    scheduler: Any
    scheduler_interval: str
    scaler: torch.amp.GradScaler | None
    grad_clip: float | None
    accumulation: Accumulation
    ema: WeightAverage | None
    step_context: StepContext
    state: Any
    _train_net: nn.Module
    _train_loss: Any
    _channels_last: bool
    _unchecked: set[str]
    _plateau: PlateauInput | None

    @property
    def device(self) -> torch.device:
        """The device the model computes on."""
        return self.runtime.device

    def unpack(self, batch: Any) -> tuple[Any, Any]:
        """``(inputs, target)`` of a batch, on the model's device; target is None when absent."""
        inputs, target, _ = self.split(batch)
        return inputs, target

    def split(self, batch: Any) -> tuple[Any, Any, torch.Tensor | None]:
        """``(inputs, target, sample_weight)`` of a batch on the model's device (weight None when
        the batch has none and ``fit`` got no ``class_weight``)."""
        if not self._channels_last:
            return self.objective.split(batch, self.runtime.device)
        inputs, target, weight = self.objective.split(batch, self.runtime.device)
        if isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return inputs, target, weight

    def forward(self, inputs: Any) -> Any:
        """Call the net: a tensor as one argument, a tuple/list as positional, a dict as keywords.

        Training steps go through the DDP wrapper when several processes train; evaluation and
        prediction call the net itself (no collective, so processes may have different batch counts).
        """
        net = self._train_net if torch.is_grad_enabled() else self.net
        return net(inputs) if type(inputs) is torch.Tensor else call_net(net, inputs)

    def compute_loss(self, preds: Any, target: Any, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``loss(preds, target)`` (its weighted mean with sample weights ``weight``), with inputs
        checked on the first training batch of a fit call and on the first batch of its
        validation and of every evaluate call, each on its own shapes."""
        grad = torch.is_grad_enabled()
        if self.objective.loss_reads_logits and type(preds) is not torch.Tensor:
            preds = output_logits(preds)  # a torch loss module reads a transformers output's logits
        if self._unchecked:
            kind = "train" if grad else "eval"
            if kind in self._unchecked:
                self.objective.check_inputs(preds, target, self.device.type != "cpu")
                self._unchecked.discard(kind)
        try:
            if weight is None and self.loss is not None:
                return (self._train_loss if grad else self.loss)(preds, target)
            return self.objective.loss(preds, target, weight)
        except (RuntimeError, IndexError, ValueError) as exc:
            raise self.objective.explain_failure(preds, target, exc) from exc

    def autocast(self) -> Any:
        """The precision context of a step's forward pass and loss (no cached weight casts while
        the step is recorded to be replayed: they would go stale)."""
        return self.runtime.autocast()

    def backward(self, loss: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        """``loss.backward()``, scaled by ``step_context.loss_scale`` (uneven batches across
        processes, accumulation) and by the float16 gradient scaler. With the batch's sample
        weights, by their sum instead (the update divides by the sum over the processes and the
        accumulation window, so the gradient is the exact weighted mean)."""
        scale = self.step_context.loss_scale
        if weight is not None:
            mass = self.accumulation.add_mass(weight, counts=scale != 0)
            scaled = loss * (mass * self.runtime.world_size)
        else:
            scaled = loss if scale == 1.0 else loss * scale
        (scaled if self.scaler is None else self.scaler.scale(scaled)).backward()

    def optimize(
        self,
        loss: torch.Tensor,
        optimizer: torch.optim.Optimizer | None = None,
        weight: torch.Tensor | None = None,
    ) -> None:
        """:meth:`backward` of ``loss`` (with the batch's sample weights ``weight``), then at the
        end of an accumulation window (every step without one) clipping, the step of
        ``optimizer`` (default: the compiled one), zeroed grads and the EMA update: what a custom
        ``train_step`` calls. No host reads, so a CUDA graph captures it; a per-step LR scheduler
        is stepped by the fit loop after the step."""
        self.backward(loss, weight)
        if self.step_context.update:
            self.apply_update((optimizer or self.optimizer,))

    def apply_update(self, optimizers: Iterable[torch.optim.Optimizer] | None = None) -> None:
        """Step ``optimizers`` (default: all) on the gradients summed so far, divided by the
        accumulation window's sample count or weight sum; then the EMA of the weights."""
        window = self.accumulation
        mass = None if window.mass is None else window.take_mass(self.runtime.all_reduce_sum)
        divisor = self.step_context.grad_divisor if mass is None else _nonzero(mass)
        for optimizer in self.optimizers.values() if optimizers is None else optimizers:
            step_optimizer(optimizer, self.scaler, self.grad_clip, divisor)
        if self.ema is not None and (optimizers is None or self.optimizer in optimizers):
            self.ema.update()

    def no_sync(self) -> Any:
        """A context in which backward keeps gradients in this process (DDP's ``no_sync``; nothing
        in one process): the micro-batches of an accumulation window before its last."""
        return self.runtime.no_sync(self._train_net)

    def train_step(self, batch: Any) -> StepOutput:
        """One optimisation step on ``batch``; returns what the meter records.

        The one step body of ember: ``fit`` runs it as it is, under ``torch.compile`` (``jit``) or
        captured whole in a CUDA graph (``cuda_graphs``), and ``find_lr`` runs it too. Override it
        for custom steps; finish with :meth:`optimize` (it applies the loss scale of uneven
        distributed batches, the gradient scaler and clipping) and return a ``StepOutput``.

        Example (a GAN; ``compile(optimizer={"g": opt_g, "d": opt_d})``, checkpoints hold both):
            >>> class GAN(Model):
            ...     def train_step(self, batch):
            ...         real, _ = self.unpack(batch)
            ...         g, d = self.net.generator, self.net.discriminator
            ...         ones, zeros = torch.ones_like(real[:, :1]), torch.zeros_like(real[:, :1])
            ...         with self.autocast():
            ...             fake = g(torch.randn(len(real), 4, device=real.device))
            ...             d_loss = self.loss(d(real), ones) + self.loss(d(fake.detach()), zeros)
            ...         self.optimizers["d"].zero_grad(set_to_none=True)
            ...         self.optimize(d_loss, self.optimizers["d"])
            ...         with self.autocast():
            ...             g_loss = self.loss(d(fake), ones)
            ...         self.optimize(g_loss, self.optimizers["g"])
            ...         return StepOutput(d_loss.detach() + g_loss.detach(), None, None, len(real))
        """
        out = self.loss_of(batch)
        self.optimize(out.loss, weight=out.weight)
        return out

    def eval_step(self, batch: Any) -> StepOutput:
        """Loss and outputs for ``batch`` (called under no_grad, in eval mode)."""
        return self.loss_of(batch)

    def loss_of(self, batch: Any) -> StepOutput:
        """Split ``batch``, run the forward pass and the loss under :meth:`autocast`: what the
        default ``train_step`` (which then calls :meth:`optimize`) and ``eval_step`` share."""
        inputs, target, weight = self.split(batch)
        with self.autocast():
            preds = forward_explained(self.forward, self.net, inputs, batch)
            if weight is None:  # an override written as compute_loss(preds, target) keeps working
                loss = self.compute_loss(preds, target)
            else:
                loss = self.compute_loss(preds, target, weight)
        size = batch_size_of(target, inputs)
        measured = preds if type(preds) is torch.Tensor else self.objective.predictions(preds)
        return StepOutput(loss, measured, target, size, weight)

    def predict_step(self, batch: Any) -> Any:
        """The net's output for ``batch``; under bf16/fp16 autocast, floating outputs come back in
        the parameters' dtype (float32 for a float32 net), which numpy can read."""
        inputs, _ = self.unpack(batch)
        runtime = self.runtime
        with runtime.autocast():
            outputs = forward_explained(self.forward, self.net, inputs, batch)
        return runtime.from_autocast(outputs, self.net)

    def validation_weights(self) -> Any:
        """The weights a fit validates with: the EMA's while ``compile(ema=...)`` keeps one
        (swapped in place, the net's own weights put back bitwise afterwards)."""
        return contextlib.nullcontext() if self.ema is None else self.ema.swapped()

    def end_epoch(self, logs: dict[str, float]) -> float:
        """Step an epoch scheduler; returns the learning rate the epoch used."""
        lr = float(self.optimizer.param_groups[0]["lr"])
        if self.scheduler is None or self.scheduler_interval != "epoch":
            return lr
        if self._plateau is None:
            self.scheduler.step()
        elif (value := self._plateau.value(logs, self.state.validating)) is not None:
            self.scheduler.step(value)
        return lr


def _nonzero(mass: torch.Tensor) -> torch.Tensor:
    """A window's weight sum to divide by: a window whose weights are all 0 has zero gradients,
    which stay zero (not 0/0) with the tiny positive floor."""
    return mass.clamp_min(torch.finfo(mass.dtype).tiny)
