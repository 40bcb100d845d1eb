"""The tutorial's "save the whole model" without pickle: ``torch.export`` programs and ONNX files.

The file's suffix chooses the format: ``.pt2`` is a ``torch.export`` program, ``.onnx`` an ONNX model
(written with ``torch.onnx.export(..., dynamo=True)``, which needs the ``onnx`` extra). By default the
first dimension of the inputs is exported as dynamic, so one file serves every batch size. A loaded
``.pt2`` program needs no model class; it is a callable module. ONNX files are run with onnxruntime,
outside ember. Knows torch (and, for ONNX, onnx and onnxscript) only.
"""

from __future__ import annotations

import importlib
import io
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ember._tree import tree_map
from ember.checkpoint.format import atomic_write_bytes
from ember.errors import CheckpointError, ConfigError

__all__ = ["export", "load_exported"]

FORMATS = (".pt2", ".onnx")
ONNX_PACKAGES = ("onnx", "onnxscript")
ONNX_TORCH = "2.6"  # the first torch whose ONNX exporter is built on torch.export


def _format_of(target: Path) -> str:
    """The export format that ``target``'s suffix names (case-insensitive), or a ConfigError."""
    suffix = target.suffix.lower()
    if suffix in FORMATS:
        return suffix
    said = f"has the suffix {target.suffix!r}" if target.suffix else "has no suffix"
    raise ConfigError(
        f"export chooses the format from the file's suffix, and {target} {said}; "
        "use '.pt2' (a torch.export program) or '.onnx' (an ONNX model)"
    )


def _require_onnx() -> None:
    """Check what ``torch.onnx.export(dynamo=True)`` needs: torch 2.6 or later, onnx and onnxscript."""
    if torch.__version__ < ONNX_TORCH:  # TorchVersion compares with version strings
        raise ConfigError(f"exporting to ONNX needs torch>={ONNX_TORCH} (this is torch {torch.__version__})")
    for name in ONNX_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(
                f"exporting to ONNX needs {name}, which is not installed: pip install 'ember[onnx]'"
            ) from exc


def _batch_spec(obj: Any, size: int, batch: Any) -> Any:
    """``dynamic_shapes`` for ``obj``: ``{0: batch}`` for each tensor whose first dimension is ``size``."""
    if isinstance(obj, torch.Tensor):
        return {0: batch} if obj.dim() > 0 and obj.shape[0] == size else None
    if isinstance(obj, Mapping):
        return {k: _batch_spec(v, size, batch) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # torch wants the namedtuple type itself
        return type(obj)(*(_batch_spec(v, size, batch) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_batch_spec(v, size, batch) for v in obj)
    return None


def _dynamic_batch(args: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any]:
    """Example inputs and ``dynamic_shapes`` that make the batch (first) dimension dynamic.

    The batch size is the first dimension of the first tensor that has one; every tensor with that
    first dimension shares one ``torch.export.Dim`` (any size from 1 up), others keep their size.
    torch specialises a dimension whose example size is 0 or 1, so an example batch of 1 is traced
    repeated twice (only its shapes shape the program); the program still accepts a batch of 1.
    """
    leading: list[int] = []
    tree_map(lambda t: leading.append(t.shape[0]) if t.dim() else None, args)
    if not leading:
        raise ConfigError(
            "dynamic_batch=True needs a tensor input with a batch dimension; pass dynamic_batch=False"
        )
    size = leading[0]
    if size == 0:
        raise ConfigError("the example batch is empty; export needs at least one sample")
    if size == 1:
        args = tree_map(
            lambda t: t.repeat(2, *[1] * (t.dim() - 1)) if t.dim() and t.shape[0] == 1 else t, args
        )
        size = 2
    return args, _batch_spec(args, size, torch.export.Dim("batch", min=1))


def _trace(net: torch.nn.Module, args: tuple[Any, ...], shapes: Any) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``net`` (both formats start from this program)."""
    try:
        return torch.export.export(net, args, dynamic_shapes=shapes)
    except Exception as exc:
        raise CheckpointError(_trace_failure(net, shapes, exc)) from exc


def _write_program(program: torch.export.ExportedProgram, name: str, target: Path) -> None:
    """Save ``program`` to the ``.pt2`` file ``target`` atomically."""
    buffer = io.BytesIO()
    try:
        torch.export.save(program, buffer)
    except Exception as exc:  # e.g. inputs in a namedtuple torch cannot serialise
        raise CheckpointError(f"torch.export cannot save the program of {name}: {exc}") from exc
    atomic_write_bytes(target, buffer.getvalue())


def _write_onnx(
    program: torch.export.ExportedProgram, args: tuple[Any, ...], shapes: Any, name: str, target: Path
) -> None:
    """Convert ``program`` to the ONNX file ``target`` (one file unless the weights pass 1.5 GB),
    written in a temporary folder beside it and moved into place, the model file last, so a crash
    never leaves a half-written model under the target's name."""
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as folder:
        staged = Path(folder) / target.name
        _convert_onnx(program, args, shapes, name, staged)
        for file in sorted(Path(folder).iterdir(), key=lambda f: f == staged):
            os.replace(file, target.parent / file.name)


def _convert_onnx(
    program: torch.export.ExportedProgram, args: tuple[Any, ...], shapes: Any, name: str, target: Path
) -> None:
    """``torch.onnx.export`` of ``program`` to ``target``; a CheckpointError naming the model."""
    try:
        with warnings.catch_warnings():
            # Notes about naming the dynamic axes ("batch" shared by several inputs, non-tensor
            # inputs); the axes are dynamic either way.
            warnings.filterwarnings("ignore", message=r"# The axis name: .* will not be used")
            warnings.filterwarnings("ignore", message=r"# ONNX model has different number of inputs")
            # Passing the program, not the net: torch.onnx.export would take a trailing dict of
            # args for keyword arguments. args and shapes only name the dynamic axes ("batch").
            # external_data=False keeps small models in one file; torch switches to a `<name>.data`
            # file beside it by itself above its large-model threshold (ONNX protobufs stop at 2 GB).
            torch.onnx.export(
                program,
                args,
                str(target),
                dynamo=True,
                dynamic_shapes=shapes,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:
        raise CheckpointError(f"torch.onnx.export cannot convert the program of {name}: {exc}") from exc


def _trace_failure(net: torch.nn.Module, shapes: Any, exc: Exception) -> str:
    """The message for a failed trace, with the way out when the batch was made dynamic."""
    hint = (
        "; if the model fixes the batch size, pass dynamic_batch=False to export for the example's "
        "batch size only"
        if shapes is not None
        else ""
    )
    return f"torch.export could not trace {type(net).__name__}{hint}: {exc}"


def export(net: torch.nn.Module, example_inputs: Any, path: str | Path, dynamic_batch: bool = True) -> Path:
    """Trace ``net`` in eval mode and save it as a ``.pt2`` program or an ``.onnx`` model.

    Args:
        net: the module; its training mode is restored afterwards.
        example_inputs: a tensor, or a tuple of the forward's positional arguments.
        path: the file; its suffix chooses the format: ``.pt2`` (``torch.export``, read back with
            :func:`load_exported`) or ``.onnx`` (run with ``onnxruntime.InferenceSession``; needs
            ``pip install 'ember[onnx]'``). Any other suffix raises ConfigError.
        dynamic_batch: export the first dimension of every input tensor that has the example's batch
            size as dynamic (any size from 1 up). With False the file accepts the example's batch size
            only: a ``.pt2`` program then fails torch's input guard, onnxruntime raises InvalidArgument.

    Returns:
        The path written.

    Example:
        >>> import tempfile
        >>> p = export(torch.nn.Linear(3, 2), torch.randn(4, 3), tempfile.mkdtemp() + "/m.pt2")
        >>> load_exported(p)(torch.zeros(7, 3)).shape
        torch.Size([7, 2])
    """
    target = Path(path)
    kind = _format_of(target)
    if kind == ".onnx":
        _require_onnx()
    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    args, shapes = _dynamic_batch(args) if dynamic_batch else (args, None)
    was_training = net.training
    net.eval()
    try:
        program = _trace(net, args, shapes)
    finally:
        net.train(was_training)
    target.parent.mkdir(parents=True, exist_ok=True)
    if kind == ".pt2":
        _write_program(program, type(net).__name__, target)
    else:
        _write_onnx(program, args, shapes, type(net).__name__, target)
    return target


def load_exported(path: str | Path) -> torch.nn.Module:
    """A callable module from a ``.pt2`` file written by :func:`export` (no model class needed).

    Args:
        path: the ``.pt2`` file. An ``.onnx`` file raises ConfigError: run it with
            ``onnxruntime.InferenceSession(path)``, which takes and returns numpy arrays.

    Returns:
        The program as a module; call it like the original net.

    Example:
        >>> import tempfile
        >>> p = export(torch.nn.Linear(3, 2), torch.randn(4, 3), tempfile.mkdtemp() + "/m.pt2")
        >>> load_exported(p)(torch.zeros(1, 3)).shape
        torch.Size([1, 2])
    """
    file = Path(path)
    if file.suffix.lower() == ".onnx":
        raise ConfigError(
            f"{file} is an ONNX model; load_exported reads .pt2 programs. "
            "Run it with onnxruntime: onnxruntime.InferenceSession(path).run(None, {name: array})"
        )
    if not file.is_file():
        raise CheckpointError(f"no exported model at {file}")
    try:
        return torch.export.load(str(file)).module()
    except Exception as exc:
        raise CheckpointError(f"cannot load the exported model {file}: {exc}") from exc
