"""Dict batches and model outputs with named fields (Hugging Face ``datasets`` and ``transformers``).

``split_mapping`` cuts a batch that is a mapping into the keyword inputs of ``forward(**inputs)`` and
the target; ``output_logits`` finds the predictions metrics and losses read in an output such as
transformers' ``ModelOutput``; ``output_loss`` finds the loss a model computed itself
(``compile(loss=None)``). Plain functions with no state, called by ``Model``'s steps; they read no
tensor on the host. Layer 2: knows torch, ember.errors and ember._tree only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ember._tree import describe, to_device
from ember.errors import ConfigError, DataError

__all__ = ["DEFAULT_TARGET_KEYS", "output_logits", "output_loss", "pick_target_key", "split_mapping"]

# The keys a target is looked for under when compile(target=...) is not given, in this order:
# transformers' models take ``labels``; Hugging Face datasets usually name the column ``label``.
DEFAULT_TARGET_KEYS = ("labels", "label")


def pick_target_key(batch: Mapping[str, Any], target_key: str | None) -> str | None:
    """The key of ``batch`` that holds the target: ``target_key`` itself, or, when it is None,
    ``labels`` if present, else ``label`` if present, else None (the batch has inputs only).

    Raises:
        DataError: ``target_key`` is given but the batch has no such key (the message lists the keys).

    Example:
        >>> pick_target_key({"input_ids": 0, "label": 1}, None)
        'label'
    """
    if target_key is None:
        return next((key for key in DEFAULT_TARGET_KEYS if key in batch), None)
    if target_key not in batch:
        raise DataError(
            f"the batch has no target key {target_key!r} (compile(target={target_key!r})); "
            f"its keys are {list(batch)}"
        )
    return target_key


def split_mapping(
    batch: Mapping[str, Any],
    target_key: str | None,
    device: torch.device | str,
    keep_target: bool = False,
) -> tuple[dict[str, Any], Any]:
    """``(inputs, target)`` of a dict batch, moved to ``device`` (non-blocking); ``forward`` gets
    ``inputs`` as keywords.

    Args:
        batch: a mapping of tensors (a collated dict, a transformers ``BatchEncoding``).
        target_key: the target's key; None picks ``labels``, else ``label``, else no target.
        device: where the tensors go.
        keep_target: leave the target among the inputs as well, for a model that computes its own
            loss (``compile(loss=None)``); a ``label`` key picked by default is passed as ``labels``,
            the keyword transformers' models take (their data collators rename it the same way).

    Returns:
        The inputs as a new dict and the target (None when there is none).

    Raises:
        DataError: an explicit ``target_key`` is absent, a value is not a tensor (raw text, a list
            of numbers), or nothing is left as input.

    Example:
        >>> inputs, y = split_mapping({"input_ids": torch.ones(2, 3), "labels": torch.ones(2)}, None, "cpu")
        >>> list(inputs), y.shape
        (['input_ids'], torch.Size([2]))
    """
    key = pick_target_key(batch, target_key)
    _check_tensors(batch)
    inputs = {k: to_device(v, device) for k, v in batch.items() if k != key or keep_target}
    target = None if key is None else to_device(batch[key], device)
    if keep_target and key == "label" and target_key is None and "labels" not in inputs:
        inputs["labels"] = inputs.pop("label")
    if not inputs:
        raise DataError(
            f"the batch holds only the target {key!r}: there is nothing left to pass to the model's "
            "forward; add the input columns, or choose another target with compile(target=...)"
        )
    return inputs, target


def _all_tensors(value: Any) -> bool:
    """True when every leaf of ``value`` (inside mappings, tuples and lists) is a tensor."""
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, Mapping):
        return all(_all_tensors(v) for v in value.values())
    if isinstance(value, (tuple, list)) and value:
        return all(_all_tensors(v) for v in value)
    return False


def _check_tensors(batch: Mapping[str, Any]) -> None:
    """A DataError naming the keys whose values are not tensors (a dataset kept its text column)."""
    bad = [key for key, value in batch.items() if not _all_tensors(value)]
    if not bad:
        return
    kinds = ", ".join(f"{key!r}: {_kind(batch[key])}" for key in bad)
    keep = [key for key in batch if key not in bad]
    raise DataError(
        f"batch values must be tensors; {kinds}. Remove these columns before training, e.g. "
        f"dataset.remove_columns({bad}), or keep the tensor columns only with "
        f"dataset.set_format('torch', columns={keep})"
    )


def _kind(value: Any) -> str:
    """What a non-tensor batch value is, with an example element for lists (``a list of str``)."""
    if isinstance(value, (list, tuple)) and value:
        return f"a {type(value).__name__} of {type(value[0]).__name__}"
    return describe(value)


def output_logits(out: Any) -> Any:
    """The predictions in a model output: a tensor as it is; the tensor ``.logits`` of an object
    (transformers' ``ModelOutput``) or the ``"logits"`` entry of a mapping; anything else unchanged.

    Example:
        >>> output_logits({"logits": torch.zeros(2, 3), "hidden": None}).shape
        torch.Size([2, 3])
    """
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, Mapping) and isinstance(out.get("logits"), torch.Tensor):
        return out["logits"]
    return out


def output_loss(out: Any) -> torch.Tensor:
    """The loss a model computed itself (``compile(loss=None)``): ``out.loss`` or ``out["loss"]``,
    as transformers' Trainer reads it.

    Raises:
        ConfigError: the output has no loss (None or missing), or the loss is not a 0-dim tensor;
            the message names the output's type and keys.

    Example:
        >>> output_loss({"loss": torch.tensor(0.5), "logits": torch.zeros(2, 2)})
        tensor(0.5000)
    """
    loss = getattr(out, "loss", None)
    if loss is None and isinstance(out, Mapping):
        loss = out.get("loss")
    if loss is None:
        raise ConfigError(
            f"compile(loss=None) needs a model that returns its loss (an output with .loss or a "
            f"'loss' key), but the model returned {describe(out)}; for transformers models, put "
            "`labels` in the batch so the model computes the loss, or pass compile(loss=...)"
        )
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ConfigError(
            f"the model's own loss must be a 0-dim tensor (compile(loss=None)), got {shape} in "
            f"{describe(out)}; reduce it in the model (e.g. .mean()) or pass compile(loss=...)"
        )
    return loss
