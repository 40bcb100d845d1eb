"""Models with several outputs and several losses: the weighted loss, its per-output loss columns and
per-output metrics, as Keras names them (``loss``, ``cls_loss``, ``cls_accuracy``, ``val_reg_mae``);
the per-output metrics are in ``ember.metrics.outputs``.

Outputs and targets are dicts (one loss per key) or tuples/lists (one loss per position, named
``output_0``, ``output_1``, ... in the columns: the tuple index). Extra outputs without a loss are
allowed and ignored (a model may also return features). A loss column is a device sum of
``batch mean * batch size`` and a count, so it is the exact sample-weighted mean over the epoch.
Layer 2: knows ember.metrics, ember._tree, ember.errors and ember.arguments; how ``Model.compile``
uses these pieces is the facade's business.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ember._tree import describe
from ember.arguments import check_not_class
from ember.errors import ConfigError, DataError
from ember.metrics.base import Metric

__all__ = [
    "Key",
    "LossComponent",
    "StructuredLoss",
    "as_structured_loss",
    "canonical_key",
    "loss_component_metrics",
    "output_name",
    "select_output",
]

Key = str | int
LossFn = Callable[[Any, Any], torch.Tensor]


def output_name(key: Key) -> str:
    """The column prefix of an output: a dict key as it is, position ``i`` as ``"output_i"``.

    Example:
        >>> output_name("cls"), output_name(1)
        ('cls', 'output_1')
    """
    return key if isinstance(key, str) else f"output_{key}"


def select_output(obj: Any, key: Key, role: str) -> Any:
    """``obj[key]`` for a model output (``role="model output"``, ConfigError when missing) or a
    target (``role="target"``, DataError when missing); the error names the key and what is there."""
    error = DataError if role == "target" else ConfigError
    if isinstance(key, str):
        if isinstance(obj, Mapping) and key in obj:
            return obj[key]
        raise error(
            f"the {role} has no key {key!r} (its loss and metrics need it); got {describe(obj)}; "
            "outputs and targets must be dicts with the keys of the loss dict"
        )
    if isinstance(obj, (tuple, list)) and key < len(obj):
        return obj[key]
    raise error(
        f"the {role} has no position {key} ({output_name(key)!r}, its loss and metrics need it); got "
        f"{describe(obj)}; outputs and targets must be tuples with one entry per loss of the list"
    )


def _check_losses(losses: Any) -> dict[Key, LossFn]:
    """``{key: loss_fn}`` from a dict or a list/tuple of losses, each checked to be callable."""
    if isinstance(losses, Mapping):
        pairs: list[tuple[Key, Any]] = list(losses.items())
        bad = [k for k, _ in pairs if not isinstance(k, str)]
        if bad:
            raise ConfigError(f"loss dict keys name history columns and must be strings; got {bad}")
    elif isinstance(losses, (list, tuple)):
        pairs = list(enumerate(losses))
    else:
        raise ConfigError(f"several losses are a dict {{output: loss}} or a list of losses; got {losses!r}")
    if not pairs:
        raise ConfigError("the loss dict/list is empty: give one loss per model output")
    for key, fn in pairs:
        check_not_class(f"loss[{key!r}]", fn)
        if not callable(fn):
            raise ConfigError(f"loss[{key!r}] is {fn!r}, not a callable loss(y_pred, y_true)")
    return dict(pairs)


def canonical_key(user_key: Any, keys: Sequence[Key], what: str) -> Key:
    """The loss key ``user_key`` means (a dict key; a position as an int or ``"output_i"``)."""
    for key in keys:
        if (user_key == key and type(user_key) is type(key)) or (
            isinstance(key, int) and user_key == output_name(key)
        ):
            return key
    names = [output_name(k) for k in keys]
    raise ConfigError(f"{what} names output {user_key!r}, which has no loss; the loss outputs are {names}")


def _check_weights(weights: Any, keys: Sequence[Key]) -> dict[Key, float]:
    """``{key: weight}`` (default 1.0), each a finite number >= 0 for a key that has a loss."""
    if weights is None:
        pairs: list[tuple[Key, Any]] = []
    elif isinstance(weights, Mapping):
        pairs = [(canonical_key(k, keys, "loss_weights"), w) for k, w in weights.items()]
    elif isinstance(weights, (list, tuple)) and all(isinstance(k, int) for k in keys):
        if len(weights) != len(keys):
            raise ConfigError(f"loss_weights has {len(weights)} entries for {len(keys)} losses")
        pairs = list(enumerate(weights))
    else:
        raise ConfigError(
            f"loss_weights is a dict {{output: weight}} (or a list for a list of losses); got {weights!r}"
        )
    checked = dict.fromkeys(keys, 1.0)
    for key, weight in pairs:
        number = isinstance(weight, numbers.Real) and not isinstance(weight, bool)
        if not number or not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"loss_weights[{key!r}] is {weight!r}; a weight is a finite number >= 0")
        checked[key] = float(weight)
    return checked


class StructuredLoss:
    """The weighted sum of one loss per model output: ``sum_k weight_k * loss_k(preds[k], target[k])``.

    Args:
        losses: ``{key: loss_fn}`` for dict outputs, or a list/tuple of loss functions for tuple
            outputs (position ``i`` is the column ``output_i``). Outputs without a loss are ignored.
        weights: ``{key: weight}`` (a position as an int or ``"output_i"``), or a list for a list of
            losses; missing keys weigh 1.0. Checked here: known keys, finite numbers >= 0.

    Each loss must return a 0-dim tensor (mean reduction), so the epoch loss stays exact.

    Example:
        >>> loss = StructuredLoss({"cls": nn.CrossEntropyLoss(), "reg": nn.MSELoss()}, {"reg": 0.5})
        >>> preds = {"cls": torch.tensor([[2.0, 0.0]]), "reg": torch.tensor([1.0])}
        >>> target = {"cls": torch.tensor([0]), "reg": torch.tensor([3.0])}
        >>> round(float(loss(preds, target)), 4)
        2.1269
    """

    def __init__(self, losses: Mapping[str, LossFn] | Sequence[LossFn], weights: Any = None) -> None:
        self.losses = _check_losses(losses)
        self.weights = _check_weights(weights, list(self.losses))

    @property
    def keys(self) -> tuple[Key, ...]:
        """The output keys (strings for dict outputs, positions for tuple outputs), in order."""
        return tuple(self.losses)

    def parts(self, preds: Any, target: Any) -> list[tuple[str, LossFn, Any, Any]]:
        """``(column prefix, loss_fn, preds[key], target[key])`` per loss (for input checks)."""
        return [
            (output_name(k), fn, select_output(preds, k, "model output"), select_output(target, k, "target"))
            for k, fn in self.losses.items()
        ]

    def components(self, preds: Any, target: Any) -> dict[str, torch.Tensor]:
        """The unweighted loss of each output, by column prefix (``{"cls": ..., "reg": ...}``)."""
        return {name: _scalar(name, fn(p, t)) for name, fn, p, t in self.parts(preds, target)}

    def __call__(self, preds: Any, target: Any) -> torch.Tensor:
        """The weighted total (a weight of 1.0 costs no multiplication)."""
        weights = self.weights.values()
        values = self.components(preds, target).values()
        terms = [v if w == 1.0 else v * w for w, v in zip(weights, values, strict=True)]
        total = terms[0]  # never empty: _check_losses refuses an empty structure
        for term in terms[1:]:
            total = total + term
        return total

    def __repr__(self) -> str:
        return f"StructuredLoss({self.losses!r}, weights={self.weights!r})"


def _scalar(name: str, value: Any) -> torch.Tensor:
    """``value`` when it is a 0-dim tensor (shape metadata only), else a ConfigError naming the output."""
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ConfigError(
            f"the loss of output {name!r} returned {got}, not a 0-dim tensor: use mean reduction"
        )
    return value


def as_structured_loss(loss: Any, weights: Any = None) -> StructuredLoss | None:
    """A StructuredLoss for ``compile(loss=dict | list | tuple | StructuredLoss)``; None for one loss.

    Example:
        >>> as_structured_loss(nn.MSELoss()) is None, as_structured_loss([nn.MSELoss()]).keys
        (True, (0,))
    """
    if isinstance(loss, StructuredLoss):
        if weights is not None:
            raise ConfigError("loss_weights goes into StructuredLoss(losses, weights) when it is built")
        return loss
    if isinstance(loss, (Mapping, list, tuple)):
        return StructuredLoss(loss, weights)
    if weights is not None:
        raise ConfigError("loss_weights needs several losses: loss={'out': loss_fn, ...} or a list of losses")
    return None


class LossComponent(Metric):
    """The epoch value of one output's loss: ``sum_b loss_b * n_b / sum_b n_b`` on the device.

    Named ``f"{output_name(key)}_loss"``. The loss is computed again without gradients (half-precision
    outputs in float32, as autocast computes the built-in losses); ``n_b`` is the target's first dim.

    Args:
        loss_fn: the output's loss (shared by clones, not copied).
        key: the output's dict key or position.
    """

    update_in_place = True
    higher_is_better = False

    def __init__(self, loss_fn: LossFn, key: Key) -> None:
        super().__init__(f"{output_name(key)}_loss")
        self.loss_fn = loss_fn
        self.key = key
        self.add_state("sum")
        self.add_state("count", kind="count")

    def clone(self) -> Metric:
        """A copy with its own sums that shares ``loss_fn`` (a loss bound to a net is not copied)."""
        other = copy.copy(self)
        other._tensors = {k: v.clone() for k, v in self._tensors.items()}
        other._counts = dict(self._counts)
        return other

    def update(self, preds: Any, target: Any, weight: torch.Tensor | None = None) -> None:
        """Add ``loss * n`` of one batch (device ops only)."""
        if weight is not None:
            raise ConfigError(
                f"{self.name}: sample weights with several losses are not supported; weight the "
                "outputs with loss_weights, or train without sample_weight"
            )
        p = select_output(preds, self.key, "model output")
        t = select_output(target, self.key, "target")
        if isinstance(p, torch.Tensor) and p.is_floating_point() and p.element_size() < 4:
            p = p.float()
        with torch.no_grad():
            value = _scalar(output_name(self.key), self.loss_fn(p, t))
        n = int(t.shape[0]) if isinstance(t, torch.Tensor) and t.dim() else 1  # a host int: no sync
        self._tensors["sum"].add_(value, alpha=n)
        self._counts["count"] += n

    def compute(self) -> torch.Tensor:
        """The sample-weighted mean loss (NaN before any update)."""
        return self.ratio("sum", "count")


def loss_component_metrics(structured: StructuredLoss) -> list[Metric]:
    """One ``{output}_loss`` column per loss, in the loss order (Keras' ``cls_loss``, ``reg_loss``).

    Example:
        >>> [m.name for m in loss_component_metrics(StructuredLoss([nn.MSELoss(), nn.L1Loss()]))]
        ['output_0_loss', 'output_1_loss']
    """
    return [LossComponent(fn, key) for key, fn in structured.losses.items()]
