"""The layer rule of DESIGN.md: modules import only from their own layer or below."""

import ast
from pathlib import Path

import ember

ROOT = Path(ember.__file__).parent
LAYERS = {
    "errors": 0,
    "arguments": 0,
    "state": 0,
    "_tree": 0,
    "seed": 0,
    "runtime": 1,
    "fsdp": 1,
    "interrupts": 1,
    "spawn": 1,
    "optim": 1,
    "ema": 1,
    "accumulate": 1,
    "budget": 1,
    "data": 2,
    "metrics": 2,
    "checkpoint": 2,
    "summary": 2,
    "checks": 2,
    "explain": 2,
    "weighting": 2,
    "batches": 2,
    "resume": 3,
    "reshard": 3,
    "options": 3,
    "objective": 3,
    "lr_finder": 3,
    "loop": 3,
    "graphs": 3,
    "steps": 3,
    "step_methods": 3,
    "callbacks": 3,
    "model": 4,
    "compat": 4,
    "cli": 4,
    "demo": 4,
    "__main__": 4,
    "__init__": 4,
}
# Layer-2 blocks are independent of each other.
INDEPENDENT = {"data", "metrics", "checkpoint", "summary", "checks", "explain"}


def _top(module_path: Path) -> str:
    parts = module_path.relative_to(ROOT).with_suffix("").parts
    return parts[0]


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ember."):
            yield node.module.split(".")[1]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ember."):
                    yield alias.name.split(".")[1]


def test_imports_point_down_only():
    problems = []
    for path in ROOT.rglob("*.py"):
        own = _top(path)
        level = LAYERS[own]
        for imported in _imports(path):
            if imported == own:
                continue
            if LAYERS[imported] > level or (own in INDEPENDENT and imported in INDEPENDENT):
                problems.append(f"{path.relative_to(ROOT)} imports ember.{imported}")
    assert problems == []


def test_every_module_has_a_docstring():
    missing = [
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*.py")
        if not ast.get_docstring(ast.parse(p.read_text()))
    ]
    assert missing == []


def test_public_api_is_sorted_and_importable():
    assert ember.__all__ == sorted(ember.__all__)
    for name in ember.__all__:
        assert hasattr(ember, name)
