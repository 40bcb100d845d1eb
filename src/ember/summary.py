"""summary(): the model table (layers, output shapes, parameters, FLOPs, memory), without side effects.

Runs one forward pass with hooks on every module, under no_grad, then restores the modules' train/eval
modes, buffers (BatchNorm statistics) and the RNG states, so the model is exactly as before. Totals come
from the module tree (each parameter once), not from the rows. ``summary`` prints the table and returns
a :class:`ModelSummary` whose ``repr`` is one line, so a notebook cell ending in ``summary(...)`` shows
the table once. Knows torch only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ember._tree import first_tensor, tree_map
from ember.errors import ConfigError

__all__ = ["LayerRow", "ModelSummary", "summary"]

MB = 2**20
_WIDTH = 64


@dataclass
class LayerRow:
    """One call of one module in the forward pass."""

    name: str  # "Conv2d-1"
    path: str  # "conv1"
    depth: int
    output_shape: list[int]
    structure: str  # "" for a tensor, else e.g. "tuple[2]"
    params: int
    repeat_of: str | None
    output_bytes: int
    output_elements: int
    flops: int


@dataclass
class ModelSummary:
    """The result of :func:`summary`; ``str()`` is the table, ``repr()`` a one-line digest (the table
    is printed already: a notebook cell ending in ``summary(...)`` shows it once).

    Attributes:
        rows: one per module call, in call order.
        total_params / trainable_params / non_trainable_params: from the module tree, each parameter once.
        buffer_count: elements in buffers (BatchNorm statistics...), reported separately.
        input_bytes / forward_backward_bytes / param_bytes: the size estimate's parts.
        flops: forward FLOPs for ``batch`` samples.
        legacy: the tutorial series' conventions (see :func:`summary`).
    """

    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    buffer_count: int
    input_bytes: int
    param_bytes: int
    flops: int
    legacy: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def non_trainable_params(self) -> int:
        """Parameters with ``requires_grad=False``."""
        return self.total_params - self.trainable_params

    @property
    def forward_backward_bytes(self) -> int:
        """2 x the bytes of every row's output (activations and their gradients): every tensor it
        returns, or in legacy mode the first one only (an LSTM's ``out``), as the series counts."""
        return 2 * sum(r.output_bytes for r in self.rows)

    @property
    def total_bytes(self) -> int:
        """Input + forward/backward + parameters."""
        return self.input_bytes + self.forward_backward_bytes + self.param_bytes

    def to_dataframe(self) -> Any:
        """The rows as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "layer": r.name,
                    "path": r.path,
                    "output_shape": r.output_shape,
                    "params": r.params,
                    "repeat_of": r.repeat_of,
                    "flops": r.flops,
                }
                for r in self.rows
            ]
        )

    def to_markdown(self) -> str:
        """The rows as a Markdown table plus the totals."""
        lines = ["| Layer (type) | Output Shape | Param # | FLOPs |", "|---|---|---:|---:|"]
        lines += [
            f"| {r.name} | {_shape_text(r, self.legacy)} | {self._param_text(r)} | {r.flops:,} |"
            for r in self.rows
        ]
        lines += [
            "",
            f"Total params: {self.total_params:,}  ",
            f"Trainable params: {self.trainable_params:,}  ",
            f"FLOPs: {self.flops:,}",
        ]
        return "\n".join(lines)

    def _param_text(self, row: LayerRow) -> str:
        if row.repeat_of and not self.legacy:
            return f"{row.params:,}*"
        return f"{row.params:,}"

    def __str__(self) -> str:
        flops = not self.legacy
        header = "{:>20}  {:>25} {:>15}".format("Layer (type)", "Output Shape", "Param #")
        rule = "-" * (_WIDTH + (16 if flops else 0))
        lines = [rule, header + (" {:>15}".format("FLOPs") if flops else ""), "=" * len(rule)]
        for r in self.rows:
            line = f"{r.name:>20}  {_shape_text(r, self.legacy):>25} {self._param_text(r):>15}"
            lines.append(line + (f" {r.flops:>15,}" if flops else ""))
        lines += [
            "=" * len(rule),
            f"Total params: {self.total_params:,}",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.non_trainable_params:,}",
        ]
        if flops:
            lines += [f"Buffers (not parameters): {self.buffer_count:,}", f"FLOPs: {self.flops:,}"]
        lines += [
            rule,
            f"Input size (MB): {self.input_bytes / MB:.6f}",
            f"Forward/backward pass size (MB): {self.forward_backward_bytes / MB:.6f}",
            f"Params size (MB): {self.param_bytes / MB:.6f}",
            f"Estimated Total Size (MB): {self.total_bytes / MB:.6f}",
            rule,
        ]
        if any(r.repeat_of for r in self.rows) and not self.legacy:
            lines.append("* a module called again; its parameters are counted once in the totals")
        lines += self.notes
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"ModelSummary({len(self.rows)} rows, total_params={self.total_params:,}, "
            f"trainable_params={self.trainable_params:,}, flops={self.flops:,})"
        )


def _shape_text(row: LayerRow, legacy: bool) -> str:
    """The output shape cell; legacy tables show a tuple output by its first tensor's shape alone."""
    if not row.output_shape:
        return f"- {row.structure}" if row.structure else "-"
    text = str(row.output_shape)
    return f"{text} {row.structure}" if row.structure and not legacy else text


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
    if input_data is not None:
        args, kwargs = _as_call(input_data)
        scale: tuple[int, int] | None = None
    elif input_shape is not None:
        args, kwargs = _make_inputs(input_shape, dtypes, target), {}
        scale = (_RUN_BATCH, max(batch_size, 1))
    else:
        raise ConfigError("summary needs input_shape=... or input_data=...")
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
