"""mode="auto" for every monitor-taking callback: scores are maximised, losses and errors minimised,
an unknown column is refused before training; explicit modes still win."""

import pytest
import torch
from torch import nn
from torchmetrics.classification import MulticlassHammingDistance

import ember
from ember.callbacks import Callback, EarlyStopping, ModelCheckpoint
from ember.callbacks.monitor import Monitor
from ember.checkpoint import read_state_dict
from ember.errors import ConfigError
from tests.conftest import DeclaredScore, mlp

DATA = (torch.randn(20, 4), torch.randint(0, 3, (20,)))
RISING_THEN_FALLING = [0.5, 0.9, 0.7, 0.6]  # best is epoch 2 when higher is better, epoch 1 when lower


class _Scripted(Callback):
    """Writes scripted values into a log column and keeps the weights of every epoch."""

    def __init__(self, key, values):
        self.key, self.values, self.snapshots = key, values, {}

    def on_epoch_end(self, state):
        state.logs[self.key] = self.values[state.epoch - 1]
        self.snapshots[state.epoch] = {k: v.clone() for k, v in state.model.net.state_dict().items()}


def _model(metrics=None):
    net = mlp()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    return ember.Model(net).compile(nn.CrossEntropyLoss(), optimizer, metrics=metrics, device="cpu")


def _callbacks(kind, key, tmp_path, **options):
    if kind == "early_stopping":
        return EarlyStopping(key, patience=10, restore_best_weights=True, **options)
    return ModelCheckpoint(tmp_path / "ck", save_best=True, monitor=key, **options)


def _best_epoch(kind, key, values, tmp_path, metrics=None, **options):
    scripted = _Scripted(key, values)
    callback = _callbacks(kind, key, tmp_path, **options)
    model = _model(metrics)
    model.fit(DATA, epochs=len(values), verbose=0, callbacks=[scripted, callback])
    weights = model.net.state_dict() if kind == "early_stopping" else read_state_dict(callback.best_path)
    restored = [
        e for e, snap in scripted.snapshots.items() if all(torch.equal(weights[k], snap[k]) for k in snap)
    ]
    assert restored == [callback.best_epoch]
    return callback.best_epoch


KINDS = ["early_stopping", "model_checkpoint"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("key", ["val_accuracy", "accuracy", "val_auc", "val_f1", "val_precision"])
def test_scores_are_maximised_without_a_mode(kind, key, tmp_path):
    assert _best_epoch(kind, key, RISING_THEN_FALLING, tmp_path) == 2


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("key", ["val_loss", "val_mae", "val_mse", "rmse"])
def test_losses_and_errors_are_minimised_without_a_mode(kind, key, tmp_path):
    assert _best_epoch(kind, key, RISING_THEN_FALLING, tmp_path) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_explicit_mode_wins(kind, tmp_path):
    assert _best_epoch(kind, "val_accuracy", RISING_THEN_FALLING, tmp_path, mode="min") == 1
    assert _best_epoch(kind, "val_loss", RISING_THEN_FALLING, tmp_path / "2", mode="max") == 2


@pytest.mark.parametrize("kind", KINDS)
def test_metric_objects_declare_the_direction(kind, tmp_path):
    ember_metric = {"score": DeclaredScore("score")}
    assert _best_epoch(kind, "val_score", RISING_THEN_FALLING, tmp_path, metrics=ember_metric) == 2
    torchmetrics_metric = {"quality": MulticlassHammingDistance(num_classes=3)}  # lower is better
    assert (
        _best_epoch(kind, "val_quality", RISING_THEN_FALLING, tmp_path / "2", metrics=torchmetrics_metric)
        == 1
    )


@pytest.mark.parametrize("kind", KINDS)
def test_an_unknown_column_is_refused_before_training(kind, tmp_path):
    model = _model(metrics={"score": lambda preds, target: 0.0})  # a function declares no direction
    callback = _callbacks(kind, "val_score", tmp_path)
    before = [p.clone() for p in model.net.parameters()]
    with pytest.raises(
        ConfigError, match="cannot tell whether a higher or a lower 'val_score' is better; pass mode="
    ):
        model.fit(DATA, epochs=1, verbose=0, callbacks=[callback])
    assert all(torch.equal(a, b) for a, b in zip(before, model.net.parameters(), strict=True))
    assert model.history.empty


def test_a_checkpoint_without_save_best_needs_no_direction(tmp_path):
    checkpoint = ModelCheckpoint(tmp_path / "ck", monitor="val_score")
    _model().fit(DATA, epochs=1, verbose=0, callbacks=[checkpoint])
    assert checkpoint.last_path is not None


def test_monitor_mode_property():
    assert Monitor("val_accuracy").mode == "max"
    assert Monitor("val_loss").mode == "min"
    assert Monitor("val_accuracy", "min").mode == "min"
    with pytest.raises(ConfigError, match="pass mode='min' or mode='max'"):
        Monitor("lr").mode  # noqa: B018
    with pytest.raises(ConfigError, match="history column name"):
        Monitor("")


def test_a_misspelled_column_is_named_with_the_columns_there_are(tmp_path):
    model = _model(metrics=["accuracy"])
    with pytest.raises(
        ConfigError, match=r"'val_acurracy' is none of the columns .*\(loss, accuracy, val_loss, "
    ):
        model.fit(DATA, epochs=1, verbose=0, callbacks=[EarlyStopping("val_acurracy")])
