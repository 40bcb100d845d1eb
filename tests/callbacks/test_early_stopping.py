import pytest
import torch
from torch import nn

import ember
from ember.callbacks import Callback, EarlyStopping
from ember.errors import ConfigError
from ember.state import TrainState
from tests.conftest import mlp


class _Feed(Callback):
    """Replaces val_loss with scripted values so the stopping rule is tested exactly."""

    def __init__(self, values):
        self.values = list(values)

    def on_epoch_end(self, state):
        state.logs["val_loss"] = self.values[state.epoch - 1]


def _fit(values, *callbacks, epochs=10):
    net = mlp()
    model = ember.Model(net).compile(
        loss=nn.CrossEntropyLoss(),
        device="cpu",
        optimizer=torch.optim.SGD(net.parameters(), lr=0.5),
    )
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    history = model.fit((x, y), epochs=epochs, callbacks=[_Feed(values), *callbacks], verbose=0)
    return model, history


def test_stops_after_patience_epochs_without_improvement():
    stopper = EarlyStopping("val_loss", mode="min", patience=2)
    _, history = _fit([1.0, 0.8, 0.9, 0.85, 0.7, 0.6], stopper)
    assert len(history) == 4 and stopper.stopped_epoch == 4 and stopper.best_epoch == 2


def test_nan_never_counts_as_an_improvement():
    stopper = EarlyStopping("val_loss", mode="min", patience=2)
    _, history = _fit([1.0, float("nan"), float("nan"), 0.1], stopper)
    assert len(history) == 3 and stopper.monitor.best == 1.0


def test_min_delta_and_max_mode():
    stopper = EarlyStopping("val_loss", mode="max", patience=0, min_delta=0.1)
    _, history = _fit([1.0, 1.05, 2.0], stopper)
    assert len(history) == 2


def test_restore_best_weights():
    weights = []

    class Snapshot(Callback):
        def on_epoch_end(self, state):
            weights.append(state.model.net[0].weight.detach().clone())

    stopper = EarlyStopping("val_loss", patience=2, restore_best_weights=True)
    model, _ = _fit([0.5, 0.2, 0.9, 0.9, 0.9], Snapshot(), stopper, epochs=5)
    net = model.net
    assert torch.equal(net[0].weight, weights[1])  # epoch 2 was best
    assert not torch.equal(weights[1], weights[3])


def test_missing_monitor_names_available_keys():
    with pytest.raises(ConfigError, match="'val_acc' is not in the logs; available: accuracy"):
        EarlyStopping("val_acc").on_epoch_end(TrainState(logs={"accuracy": 1.0, "loss": 0.2}))
    with pytest.raises(ConfigError, match="mode must be 'auto', 'min' or 'max'"):
        EarlyStopping(mode="lowest")


def test_state_round_trip():
    a = EarlyStopping(patience=3)
    a.monitor.best, a.wait, a.best_epoch = 0.25, 2, 4
    b = EarlyStopping(patience=3)
    b.load_state_dict(a.state_dict())
    assert (b.monitor.best, b.wait, b.best_epoch) == (0.25, 2, 4)
