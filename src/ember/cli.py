"""The ``ember`` command: ``ember demo`` and ``ember summary FILE.py:NAME --input-shape 3,32,32``."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ember.errors import ConfigError, EmberError

__all__ = ["load_object", "main"]


def load_object(spec: str) -> Any:
    """``path/to/file.py:Name`` or ``package.module:name`` -> the object."""
    source, _, name = spec.rpartition(":")
    if not source or not name:
        raise ConfigError(f"{spec!r}: expected FILE.py:NAME or module.path:NAME")
    if source.endswith(".py"):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"{path}: no such file")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
        module_spec.loader.exec_module(module)  # type: ignore[union-attr]
    else:
        module = importlib.import_module(source)
    if not hasattr(module, name):
        raise ConfigError(f"{source} has no attribute {name!r}")
    return getattr(module, name)


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def _summary(args: argparse.Namespace) -> None:
    from ember.summary import summary

    obj = load_object(args.target)
    net = obj if isinstance(obj, torch.nn.Module) else obj()
    shapes = [_shape(s) for s in args.input_shape]
    dtype = getattr(torch, args.dtype)
    summary(
        net,
        input_shape=shapes if len(shapes) > 1 else shapes[0],
        dtypes=dtype,
        batch_size=args.batch_size,
        depth=args.depth,
    )


def _demo(args: argparse.Namespace) -> None:
    from ember.demo import run_demo

    run_demo(
        Path(args.out),
        Path(args.data) if args.data else None,
        args.epochs,
        args.batch_size,
        args.verbose,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ember", description="ember: PyTorch training in a few calls")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train the tutorial's CNN end to end on real images")
    demo.add_argument("--data", help="image-folder tree with train/ and test/ (default: digits)")
    demo.add_argument("--out", default="demo-output", help="output folder")
    demo.add_argument("--epochs", type=int, default=None)
    demo.add_argument("--batch-size", type=int, default=50)
    demo.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    demo.set_defaults(run=_demo)
    summ = commands.add_parser("summary", help="print a model's summary table")
    summ.add_argument("target", help="FILE.py:NAME or module.path:NAME (a module, class or factory)")
    summ.add_argument(
        "--input-shape",
        action="append",
        required=True,
        help="e.g. 3,32,32 (repeat for several inputs)",
    )
    summ.add_argument("--dtype", default="float32")
    summ.add_argument("--batch-size", type=int, default=-1)
    summ.add_argument("--depth", type=int, default=None)
    summ.set_defaults(run=_summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except EmberError as exc:
        print(f"ember: error: {exc}", file=sys.stderr)
        return 2
    return 0
