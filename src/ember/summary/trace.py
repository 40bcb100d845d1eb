"""summary(): trace the model once and build its table, without side effects.

Runs one forward pass with hooks on every module, under no_grad, then restores the modules' train/eval
modes, buffers (BatchNorm statistics) and the RNG states, so the model is exactly as before. Totals come
from the module tree (each parameter once), not from the rows. ``summary`` prints the table and returns
a :class:`ModelSummary` whose ``repr`` is one line, so a notebook cell ending in ``summary(...)`` shows
the table once. Knows torch only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ember._tree import first_tensor, tree_map
from ember.errors import ConfigError
from ember.summary.table import LayerRow, ModelSummary

__all__ = ["summary"]


def summary(
    net: nn.Module,
    input_shape: Sequence[int] | Sequence[Sequence[int]] | None = None,
    input_data: Any = None,
    dtypes: Any = None,
    batch_size: int = -1,
    device: str | torch.device | None = None,
    depth: int | None = None,
    verbose: int = 1,
    legacy: bool = False,
) -> ModelSummary:
    """Summarise ``net``: one row per module call, totals from the module tree, sizes and FLOPs.

    Args:
        net: the model (compiled models are summarised through their original module).
        input_shape: one shape without the batch dimension, or a list of shapes for several inputs.
        input_data: instead of shapes: a tensor, a tuple (positional inputs) or a dict (keywords).
        dtypes: dtype of each input made from ``input_shape`` (default float32); integer dtypes get
            zeros (valid embedding indices).
        batch_size: the batch size shown and used for sizes and FLOPs (-1: one sample, shown as -1).
        device: where inputs are made (default: the model's device; "meta" allocates nothing).
        depth: None: one row per leaf module; d: rows for modules down to depth d, deeper ones folded.
        verbose: 1 prints the table, 0 only returns it.
        legacy: the tutorial series' table: 4 bytes per element whatever the dtype, only the first
            tensor of a tuple output counted in the forward/backward size and shown, no FLOPs column.

    Returns:
        A ModelSummary: ``str()`` is the table, ``repr()`` one line (the table is printed once).

    Example:
        >>> s = summary(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), input_shape=(4,), verbose=0)
        >>> s.total_params, s.rows[0].name, s.rows[0].output_shape
        (15, 'Linear-1', [-1, 3])
    """
    net = getattr(net, "_orig_mod", net)  # torch.compile wraps the module
    if isinstance(net, torch.jit.ScriptModule):
        raise ConfigError("summary needs the Python nn.Module: scripted modules have no forward hooks")
    target = torch.device(device) if device is not None else _module_device(net)
    args, kwargs, scale = _inputs(input_shape, input_data, dtypes, batch_size, target)
    with _preserved(net):
        rows, flops = _trace(net, args, kwargs, depth, scale, batch_size, legacy)
    result = ModelSummary(
        rows=rows,
        total_params=sum(p.numel() for p in net.parameters()),
        trainable_params=sum(p.numel() for p in net.parameters() if p.requires_grad),
        buffer_count=sum(b.numel() for b in net.buffers()),
        input_bytes=_input_bytes(args, kwargs, scale, legacy),
        param_bytes=sum(p.numel() * (4 if legacy else p.element_size()) for p in net.parameters()),
        flops=flops,
        legacy=legacy,
    )
    if verbose:
        print(result)
    return result


_RUN_BATCH = 2  # two samples, so BatchNorm in training mode can run


def _inputs(
    input_shape: Any, input_data: Any, dtypes: Any, batch_size: int, device: torch.device
) -> tuple[tuple[Any, ...], dict[str, Any], tuple[int, int] | None]:
    """``(args, kwargs, scale)`` of the traced call: ``input_data`` as given, or inputs of
    ``input_shape`` made for a run batch of ``_RUN_BATCH`` (``scale`` maps it to ``batch_size``)."""
    if input_data is not None:
        args, kwargs = _as_call(input_data)
        return args, kwargs, None
    if input_shape is not None:
        return _make_inputs(input_shape, dtypes, device), {}, (_RUN_BATCH, max(batch_size, 1))
    raise ConfigError("summary needs input_shape=... or input_data=...")


def _module_device(net: nn.Module) -> torch.device:
    tensor = next(net.parameters(), None)
    if tensor is None:
        tensor = next(net.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _as_dtype(dtype: Any) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    legacy = getattr(dtype, "dtype", None)  # torch.LongTensor and friends
    if isinstance(legacy, torch.dtype):
        return legacy
    raise ConfigError(f"dtype {dtype!r} is not a torch dtype")


def _make_inputs(shapes: Any, dtypes: Any, device: torch.device) -> tuple[torch.Tensor, ...]:
    many = len(shapes) > 0 and all(isinstance(s, (tuple, list)) for s in shapes)
    shape_list = [tuple(s) for s in shapes] if many else [tuple(shapes)]
    dtype_list = list(dtypes) if isinstance(dtypes, (list, tuple)) else [dtypes] * len(shape_list)
    if len(dtype_list) != len(shape_list):
        raise ConfigError(f"{len(shape_list)} input shapes but {len(dtype_list)} dtypes")
    generator = torch.Generator().manual_seed(0)  # never the global RNG
    inputs = []
    for shape, dtype in zip(shape_list, dtype_list, strict=True):
        full, kind = (_RUN_BATCH, *shape), _as_dtype(dtype)
        if device.type == "meta":
            inputs.append(torch.empty(full, dtype=kind, device=device))
        elif kind.is_floating_point:
            inputs.append(torch.rand(full, generator=generator).to(device, kind))
        else:
            inputs.append(torch.zeros(full, dtype=kind, device=device))
    return tuple(inputs)


def _as_call(data: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(data, Mapping):
        return (), dict(data)
    if isinstance(data, (tuple, list)):
        return tuple(data), {}
    return (data,), {}


def _input_bytes(args: Any, kwargs: Any, scale: tuple[int, int] | None, legacy: bool) -> int:
    total = 0
    for tensor in _tensors((args, kwargs)):
        size = 4 if legacy else tensor.element_size()
        total += _per_batch(tensor.numel(), scale) * size
    return total


def _per_batch(elements: int, scale: tuple[int, int] | None) -> int:
    return elements if scale is None else elements // scale[0] * scale[1]


def _tensors(obj: Any) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    tree_map(found.append, obj)
    return found


@contextlib.contextmanager
def _preserved(net: nn.Module) -> Iterator[None]:
    """Restore modes, buffers and RNG states after the traced forward pass."""
    modes = [(m, m.training) for m in net.modules()]
    buffers = [(b, b.detach().clone()) for b in net.buffers()]
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for module, mode in modes:
            module.training = mode
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def _chosen_modules(net: nn.Module, depth: int | None) -> dict[nn.Module, tuple[str, int, bool]]:
    """module -> (path, depth, counted): the modules that get rows; ``counted`` rows add to sizes."""
    chosen: dict[nn.Module, tuple[str, int]] = {}
    for path, module in net.named_modules():
        level = 0 if path == "" else path.count(".") + 1
        leaf = next(module.children(), None) is None
        if (depth is None and leaf) or (depth is not None and level <= depth and (level or leaf)):
            chosen[module] = (path, level)
    inner = {m for m in chosen for child in m.modules() if child is not m and child in chosen}
    return {m: (path, level, m not in inner) for m, (path, level) in chosen.items()}


def _trace(
    net: nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    depth: int | None,
    scale: tuple[int, int] | None,
    batch_size: int,
    legacy: bool,
) -> tuple[list[LayerRow], int]:
    chosen = _chosen_modules(net, depth)
    rows: list[LayerRow] = []
    first_row: dict[nn.Module, str] = {}
    open_calls: list[tuple[int, int]] = []
    from torch.utils.flop_counter import FlopCounterMode  # imports triton where installed

    counter = FlopCounterMode(display=False)

    def before(module: nn.Module, _args: Any) -> None:
        path, level, _ = chosen[module]
        name = f"{type(module).__name__}-{len(rows) + 1}"
        params = sum(p.numel() for p in module.parameters())
        rows.append(LayerRow(name, path, level, [], "", params, first_row.get(module), 0, 0, 0))
        first_row.setdefault(module, name)
        open_calls.append((len(rows) - 1, counter.get_total_flops()))

    def after(module: nn.Module, _args: Any, output: Any) -> None:
        index, flops_before = open_calls.pop()
        row, counted = rows[index], chosen[module][2]
        _describe_output(row, output, scale, batch_size, legacy, counted)
        row.flops = _per_batch(counter.get_total_flops() - flops_before, scale)

    handles = [
        h for m in chosen for h in (m.register_forward_pre_hook(before), m.register_forward_hook(after))
    ]
    try:
        with torch.no_grad(), counter:
            net(*args, **kwargs)
    except Exception as exc:
        shapes = [tuple(t.shape) for t in _tensors((args, kwargs))]
        raise ConfigError(
            f"the forward pass of {type(net).__name__} failed on inputs of shape {shapes} "
            f"(batch of {_RUN_BATCH} when built from input_shape): {exc}"
        ) from exc
    finally:
        for handle in handles:
            handle.remove()
    return rows, _per_batch(counter.get_total_flops(), scale)


def _describe_output(
    row: LayerRow,
    output: Any,
    scale: tuple[int, int] | None,
    batch_size: int,
    legacy: bool,
    counted: bool,
) -> None:
    tensor = first_tensor(output)
    if tensor is not None:
        shape = list(tensor.shape)
        if scale is not None and shape:
            shape[0] = batch_size
        row.output_shape = shape
    if not isinstance(output, torch.Tensor):
        row.structure = (
            "None"
            if output is None
            else (
                f"{type(output).__name__}[{len(output)}]"
                if hasattr(output, "__len__")
                else type(output).__name__
            )
        )
    if counted:
        # the series' torchkeras.summary sized a tuple output by its first element alone
        tensors = ([tensor] if tensor is not None else []) if legacy else _tensors(output)
        row.output_elements = sum(_per_batch(t.numel(), scale) for t in tensors)
        row.output_bytes = sum(
            _per_batch(t.numel(), scale) * (4 if legacy else t.element_size()) for t in tensors
        )
