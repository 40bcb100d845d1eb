"""The full training state of a Model <-> a checkpoint folder: what exact resume needs.

Saved: the net, every optimizer (``optimizer``, and ``optimizer.<name>`` for the others of a
``compile(optimizer={...})``), the scheduler and gradient scaler; epoch, step and the data position;
the RNG states (python, numpy, torch CPU, every CUDA device); the running epoch's loss and metric
sums; every callback's state; the history so far. Restoring the RNG states comes last, so nothing done
while setting up a resumed fit shifts the random streams. Layer 3: uses checkpoint, data, state.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ember.checkpoint.format import MANIFEST, list_checkpoints
from ember.checkpoint.objects import save_states, state_files
from ember.checkpoint.sharded import rank_suffix, write_sharded
from ember.data.adapt import data_state, load_data_state
from ember.errors import CheckpointError, ConfigError
from ember.reshard import load_process_states

__all__ = [
    "interrupt_note",
    "load_training",
    "resolve_resume",
    "restore_rng_states",
    "rng_states",
    "save_training",
]


def rng_states() -> dict[str, Any]:
    """The global random states: python, numpy, torch CPU and every initialised CUDA device."""
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Put back states from :func:`rng_states`."""
    random.setstate(_as_tuples(states["python"]))
    np.random.set_state(tuple(states["numpy"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _as_tuples(value: Any) -> Any:
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _callback_keys(callbacks: list[Any]) -> list[tuple[str, Any]]:
    """``EarlyStopping-0``-style keys: stable when built-in callbacks (progress bar) come and go."""
    seen: Counter[str] = Counter()
    keyed = []
    for cb in callbacks:
        name = type(cb).__name__
        keyed.append((f"{name}-{seen[name]}", cb))
        seen[name] += 1
    return keyed


def save_training(model: Any, path: str | Path) -> Path:
    """Write ``model``'s full training state (see the module docstring) to checkpoint folder ``path``.

    With several processes this is collective: every process sends its RNG states and running sums,
    process 0 writes, and the outcome (success or the error) is shared, so all processes raise
    together. A sharded run (FSDP) writes a sharded checkpoint: every process its own files.
    """
    state, runtime = model.state, model.runtime
    in_epoch = state.train_meter is not None and state.epoch > state.epochs_done
    local = {
        "rng": rng_states(),
        "meter": state.train_meter.state_dict() if in_epoch else None,
        "window": _open_window(model) if in_epoch else None,
    }
    if runtime.sharded:
        states, extra, info = _training_states(model, in_epoch, local, runtime.world_size)
        files, layout = state_files(states, extra, rank_suffix(runtime.rank))
        return write_sharded(path, files, layout, info, runtime)
    parts = runtime.gather_objects(local)
    error = None
    if runtime.is_main:
        try:
            save_states(path, *_training_states(model, in_epoch, parts, len(parts)))
        except Exception as exc:  # shared below, so that no process waits for a checkpoint that failed
            error = f"{type(exc).__name__}: {exc}"
    error = runtime.broadcast_object(error)
    if error is not None:
        raise CheckpointError(f"saving the checkpoint {path} failed on process 0: {error}")
    return Path(path)


_OBJECTS = ("optimizer", "scheduler", "scaler", "ema")  # what a checkpoint holds besides the net


def _open_window(model: Any) -> dict[str, Any] | None:
    """This process's open accumulation window (counts and summed gradients), or None."""
    window = model.accumulation
    return window.state_dict(model.net) if window.open else None


def _restore_window(model: Any, saved: dict[str, Any] | None, path: Path) -> None:
    """Put back an open accumulation window; refuse one this model cannot continue."""
    if saved is None:
        return
    window = model.accumulation
    if window.every <= int(saved["batches"]):
        raise CheckpointError(
            f"{path} stopped {saved['batches']} batches into a gradient-accumulation window, which "
            f"compile(accumulate={window.every}) cannot continue: compile with the accumulate of the "
            "run that saved it"
        )
    window.load_state_dict(saved, model.net)


def _training_states(
    model: Any, in_epoch: bool, parts: Any, world: int
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(states, extra, info)`` of a checkpoint; ``parts``: the per-process states, a list over
    processes (one writer) or this process's own (a sharded checkpoint, one file set per process)."""
    state = model.state
    own = isinstance(parts, dict)
    states: dict[str, Any] = {
        "model": model.net.state_dict(),
        "rng": parts["rng"] if own else [p["rng"] for p in parts],
    }
    for name, obj in _training_objects(model).items():
        states[name] = model.optimizer_state_dict() if name == "optimizer" else obj.state_dict()
    if in_epoch:
        for key in ("meter", "window"):
            states[key] = parts[key] if own else [p[key] for p in parts]
    states["callbacks"] = {key: cb.state_dict() for key, cb in _callback_keys(state.callbacks)}
    data_epoch, position = (state.epoch - 1, state.batch) if in_epoch else (state.epochs_done, 0)
    progress = {**state.progress.state_dict(), "batch": state.batch if in_epoch else 0, "in_epoch": in_epoch}
    extra = {
        "classes": _classes(model),
        "progress": progress,
        "history": model.history_rows,
        "data": None if state.train_data is None else data_state(state.train_data, data_epoch, position),
        "world_size": world,
    }
    return states, extra, {"epoch": state.epoch, "step": state.step}


def _load_into(obj: Any, state: Any, name: str, path: Path) -> None:
    try:
        obj.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: the saved {name} does not fit: {exc}") from exc


def _training_objects(model: Any) -> dict[str, Any]:
    """The objects besides the net whose states a checkpoint holds: the optimizer (the first of
    ``model.optimizers``; the others as ``optimizer.<name>``), the scheduler and the scaler."""
    optimizers = list(getattr(model, "optimizers", {}).items())
    objects = {"optimizer": optimizers[0][1]} if optimizers else {}
    objects.update({f"optimizer.{name}": opt for name, opt in optimizers[1:]})
    for name in _OBJECTS[1:]:
        if getattr(model, name, None) is not None:
            objects[name] = getattr(model, name)
    return objects


def _classes(model: Any) -> dict[str, str]:
    """The class names of the objects whose states a checkpoint holds (other than the net)."""
    return {name: type(obj).__name__ for name, obj in _training_objects(model).items()}


def _check_classes(saved: dict[str, str], current: dict[str, str], path: Path) -> None:
    """A state saved by an Adam loads into an SGD without a word and fails steps later: refuse it."""
    for name, cls in saved.items():
        if name in current and current[name] != cls:
            raise CheckpointError(
                f"{path} holds the state of a {cls} {name}, but this model's {name} is a "
                f"{current[name]}: compile with a {cls} to resume, or load only the weights with "
                f"ember.load_weights(net, {str(path)!r})"
            )


def load_training(model: Any, path: str | Path, epochs: int | None = None, restore_rng: bool = True) -> bool:
    """Restore ``model``'s training state from ``path``; True when it stopped inside an epoch.

    Args:
        epochs: the ``epochs`` of the fit call being resumed (counted from the original call's start).
        restore_rng: put back the random states (resuming a fit); ``Model.load`` leaves them alone.
    """
    path = Path(path)
    states, extra, mine = load_process_states(model, path)
    _check_classes(extra.get("classes", {}), _classes(model), path)  # before anything is loaded
    _load_into(model.net, states["model"], "model", path)
    objects = _training_objects(model)
    saved = [n for n in states if n in _OBJECTS or n.startswith("optimizer.")]
    for name in sorted(set(objects) | set(saved)):
        if (name in objects) != (name in states):
            raise CheckpointError(
                f"{path}: the checkpoint {'holds' if name in states else 'lacks'} the state of "
                f"{name!r}, which this model {'lacks' if name not in objects else 'has'} (checkpoint: "
                f"{', '.join(saved)}; model: {', '.join(objects)}; the first of "
                "compile(optimizer={...}) is 'optimizer', the others 'optimizer.<name>')"
            )
        _load_into(objects[name], states[name], name, path)
    model.history_rows[:] = extra["history"]
    state, progress = model.state, extra["progress"]
    state.progress.load_state_dict(progress)
    if epochs is not None:
        state.epochs = state.fit_start_epoch + int(epochs)
    if progress["in_epoch"] and state.train_meter is not None:
        state.train_meter.load_state_dict(mine["meter"])
        _restore_window(model, mine.get("window"), path)
    for key, cb in _callback_keys(state.callbacks):
        if key in states["callbacks"]:
            cb.load_state_dict(states["callbacks"][key])
    if state.train_data is not None:
        load_data_state(state.train_data, extra["data"])
    if restore_rng:
        restore_rng_states(mine["rng"])
    return bool(progress["in_epoch"])


def _candidates(resume: str | Path, callbacks: list[Any]) -> tuple[Path, list[Path]]:
    """``(path, checkpoints oldest first)``: the path ``resume`` names in this process and the
    complete checkpoints there (the path itself when it is one)."""
    if resume == "latest":
        folders = [cb.dirpath for cb in callbacks if hasattr(cb, "dirpath") and hasattr(cb, "latest")]
        if not folders:
            raise ConfigError("resume='latest' needs a ModelCheckpoint in callbacks (or pass a path)")
        resume = folders[0]
    path = Path(resume)
    if (path / MANIFEST).exists():
        return path, [path]
    return path, [p for p in list_checkpoints(path) if p.name != "best"] or list_checkpoints(path)


def resolve_resume(resume: str | Path, callbacks: list[Any], runtime: Any) -> Path:
    """The checkpoint folder ``resume`` names: a checkpoint, a folder of them (the newest), or
    "latest" (the newest of the ModelCheckpoint among ``callbacks``).

    With several processes each looks in its own folder (nodes may have their own disks), and all
    take the newest checkpoint every process has; when one process has none of them, every
    process raises an error naming the file that process lacks and its node.
    """
    path, found = _candidates(resume, callbacks)
    everyone = runtime.gather_objects((str(path), [p.name for p in found], runtime.node))
    first_path, first_names, _ = everyone[0]
    if not first_names:
        raise CheckpointError(f"nothing to resume from: {first_path} holds no complete checkpoint")
    common = [name for name in first_names if all(name in names for _, names, _ in everyone)]
    if common:
        return next(p for p in found if p.name == common[-1])
    name = first_names[-1]
    rank, (lacking, _, node) = next((r, e) for r, e in enumerate(everyone) if name not in e[1])
    itself = Path(first_path).name == name  # resume named the checkpoint, not its folder
    missing = (Path(lacking) if itself else Path(lacking) / name) / MANIFEST
    raise CheckpointError(
        f"cannot resume: {missing} is missing for process {rank} on {node}, while process 0 resumes "
        f"from {Path(first_path) if itself else Path(first_path) / name}; a DDP checkpoint is "
        "written by process 0 alone, so every node must see its folder (a filesystem they share), "
        "while with strategy='fsdp' every process writes and reads its own shards"
    )


def interrupt_note(state: Any) -> str:
    """One line for a fit stopped by Ctrl-C or SIGTERM: where it stopped, the newest checkpoint of
    its ModelCheckpoint (or that there is none) and the ``resume=`` call that continues."""
    cause = state.interrupted or "an interrupt"
    where = f"epoch {state.epoch}, step {state.step} (batch {state.batch} of the epoch)"
    keepers = [cb for cb in state.callbacks if hasattr(cb, "dirpath") and hasattr(cb, "latest")]
    found = [(cb.dirpath, newest) for cb in keepers if (newest := cb.latest()) is not None]
    if not found:
        reason = "ModelCheckpoint wrote none yet" if keepers else "no ModelCheckpoint is in callbacks"
        return (
            f"ember: training stopped by {cause} at {where}; no checkpoint to resume from ({reason}): "
            "add callbacks=[ember.callbacks.ModelCheckpoint('runs/name')] to make fits resumable"
        )
    folder, newest = found[0]
    return (
        f"ember: training stopped by {cause} at {where}; newest checkpoint: {newest}; continue with "
        f"model.fit(..., resume={str(folder)!r})"
    )
