"""The tutorial's "save the whole model" without pickle: ``torch.export`` programs (``.pt2``).

A loaded program needs no model class; it is a callable module. Knows torch only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ember.errors import CheckpointError

__all__ = ["export", "load_exported"]


def export(net: torch.nn.Module, example_inputs: Any, path: str | Path) -> Path:
    """Trace ``net`` with ``example_inputs`` (a tensor or a tuple) via ``torch.export`` and save it.

    Example:
        >>> import tempfile
        >>> p = export(torch.nn.Linear(3, 2), torch.randn(4, 3), tempfile.mkdtemp() + "/m.pt2")
        >>> load_exported(p)(torch.zeros(4, 3)).shape
        torch.Size([4, 2])
    """
    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    was_training = net.training
    net.eval()
    try:
        program = torch.export.export(net, args)
    except Exception as exc:
        raise CheckpointError(f"torch.export could not trace {type(net).__name__}: {exc}") from exc
    finally:
        net.train(was_training)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(target))
    return target


def load_exported(path: str | Path) -> torch.nn.Module:
    """A callable module from a ``.pt2`` file written by :func:`export` (no model class needed)."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"no exported model at {file}")
    try:
        return torch.export.load(str(file)).module()
    except Exception as exc:
        raise CheckpointError(f"cannot load the exported model {file}: {exc}") from exc
