"""The tutorial's ``torchkeras.Model`` API, as a thin layer over :class:`ember.Model`.

``from ember.compat import torchkeras`` lets the tutorial's class-style code run unchanged: wrap a net
(``torchkeras.Model(net)``, state-dict keys prefixed ``net.``) or subclass ``torchkeras.Model`` with
your own layers and ``forward``. ``compile`` / ``fit`` / ``evaluate`` / ``predict`` / ``summary`` keep
their legacy signatures, printed output and return values (``summary`` prints the table and returns
None, so a notebook shows it once); the training itself is ember's loop.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
import torch
from torch import nn

from ember.callbacks import Callback
from ember.errors import ConfigError
from ember.model import Model as EmberModel
from ember.state import TrainState
from ember.summary import summary as ember_summary

__all__ = ["Model", "summary"]


class _StepLog(Callback):
    """Prints ``{'step': N, 'loss': ..., '<metric>': ...}`` every ``every`` steps (a sync each time)."""

    def __init__(self, every: int) -> None:
        self.every = max(1, int(every))

    def on_train_batch_end(self, state: TrainState) -> None:
        if state.batch % self.every == 0:
            print(_step_line(state.batch, state.read_running()), flush=True)


def _step_line(step: int, running: Mapping[str, float]) -> str:
    """The legacy step log line: a dict of the step and the running values rounded to 3 places.

    Example:
        >>> _step_line(20, {"loss": 179.8581, "mae": 10.64})
        "{'step': 20, 'loss': 179.858, 'mae': 10.64}"
    """
    logs: dict[str, float] = {"step": step}
    logs.update({k: round(float(v), 3) for k, v in _legacy_logs(running).items()})
    return str(logs)


class _EpochTable(Callback):
    """Prints the legacy per-epoch table and separator lines."""

    def on_fit_start(self, state: TrainState) -> None:
        print("Start Training ...\n", flush=True)
        print("=" * 80 + _now(), flush=True)

    def on_epoch_end(self, state: TrainState) -> None:
        row = {"epoch": state.epoch, **_legacy_logs(state.logs)}
        print("\n" + _table(row), flush=True)
        print("\n" + "=" * 80 + _now(), flush=True)

    def on_fit_end(self, state: TrainState) -> None:
        print("Finished Training...", flush=True)


def _now() -> str:
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def _legacy_logs(logs: Mapping[str, float]) -> dict[str, float]:
    return {k: v for k, v in logs.items() if k not in ("lr", "seconds")}


def _table(row: Mapping[str, float]) -> str:
    cells = {k: f"{v:.3f}" if isinstance(v, float) else str(v) for k, v in row.items()}
    widths = {k: max(len(k), len(v)) + 2 for k, v in cells.items()}
    rule = "+" + "+".join("-" * w for w in widths.values()) + "+"
    head = "|" + "|".join(k.center(widths[k]) for k in cells) + "|"
    body = "|" + "|".join(v.center(widths[k]) for k, v in cells.items()) + "|"
    return "\n".join([rule, head, rule, body, rule])


class Model(nn.Module):
    """``torchkeras.Model(net)`` or a subclass with its own ``forward``.

    Example:
        >>> model = Model(nn.Linear(3, 1))
        >>> sorted(model.state_dict())
        ['net.bias', 'net.weight']
    """

    def __init__(self, net: nn.Module | None = None) -> None:
        super().__init__()
        self.net = net
        self._engine: EmberModel | None = None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Calls the wrapped net; subclasses define their own forward."""
        if self.net is None:
            raise NotImplementedError("a torchkeras.Model subclass must define forward()")
        return self.net(*args, **kwargs)

    def compile(  # type: ignore[override]
        self,
        loss_func: Callable[..., torch.Tensor],
        optimizer: torch.optim.Optimizer | None = None,
        metrics_dict: Mapping[str, Any] | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        """Set loss, optimizer (default Adam lr=1e-3), metrics ``{name: f(y_pred, y_true)}``, device."""
        optimizer = optimizer or torch.optim.Adam(self.parameters(), lr=1e-3)
        self._engine = EmberModel(self).compile(
            loss=loss_func, optimizer=optimizer, metrics=dict(metrics_dict or {}), device=device
        )

    def _compiled(self) -> EmberModel:
        if self._engine is None:
            raise ConfigError("call model.compile(loss_func=...) before fit or evaluate")
        return self._engine

    def fit(self, epochs: int, dl_train: Any, dl_val: Any = None, log_step_freq: int = 1) -> pd.DataFrame:
        """Train; prints a step log every ``log_step_freq`` steps and a table per epoch.

        Returns:
            A DataFrame with columns ``epoch, loss, <metric>..., val_loss, val_<metric>...``.
        """
        engine = self._compiled()
        callbacks = [_EpochTable(), _StepLog(log_step_freq)]
        history = engine.fit(dl_train, epochs=epochs, validation_data=dl_val, callbacks=callbacks, verbose=0)
        return pd.DataFrame(history.drop(columns=["lr", "seconds"]))

    def evaluate(self, dl_val: Any) -> dict[str, float]:
        """``{"val_loss": ..., "val_<metric>": ...}`` over ``dl_val``."""
        return {f"val_{k}": v for k, v in self._compiled().evaluate(dl_val).items()}

    def predict(self, dl: Any) -> torch.Tensor:
        """Concatenated outputs for every batch (batches ``(x,)`` or ``(x, y)``)."""
        engine = self._engine or EmberModel(self)
        return engine.predict(dl)

    def summary(self, input_shape: Any, input_dtype: Any = torch.FloatTensor, batch_size: int = -1) -> None:
        """Print the tutorial series' summary table of this model; returns None, as the legacy call did.

        Use :func:`ember.summary` for the table as an object.
        """
        summary(self, input_shape, input_dtype, batch_size)


def summary(
    model: nn.Module, input_shape: Any, input_dtype: Any = torch.FloatTensor, batch_size: int = -1
) -> None:
    """Print ``torchkeras.summary(net, input_shape=...)``'s table as the tutorial series does.

    Sizes count 4 bytes per element and only the first tensor of a tuple output; nothing is
    returned (the legacy call returned None), so a notebook cell ending in it shows the table once.

    Example:
        >>> summary(nn.Linear(3, 1), input_shape=(3,))  # doctest: +ELLIPSIS
        ----------------------------------------------------------------
        ...
        Total params: 4
        ...
    """
    table = ember_summary(
        model, input_shape=input_shape, dtypes=input_dtype, batch_size=batch_size, legacy=True, verbose=0
    )
    print(table, flush=True)
