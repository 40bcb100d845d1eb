"""The model table of ``summary``: one :class:`LayerRow` per module call and the
:class:`ModelSummary` that renders them (text, Markdown, DataFrame) with the totals.
Imports pandas only inside ``to_dataframe``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["LayerRow", "ModelSummary"]

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
