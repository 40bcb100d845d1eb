"""compile/fit arguments: schedulers (which optimizer, which column a plateau scheduler watches, which
direction), argument ranges, and Keras' fit(x, y)."""

import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau, StepLR

import ember
from ember.callbacks import Callback, EarlyStopping
from ember.errors import ConfigError, DataError
from tests.conftest import DeclaredScore, mlp


def _compile(scheduler=None, metrics=("accuracy",), net=None, **options):
    net = net or mlp()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    made = scheduler(optimizer) if callable(scheduler) and not hasattr(scheduler, "step") else scheduler
    model = ember.Model(net)
    return model.compile(
        nn.CrossEntropyLoss(), optimizer, metrics=list(metrics), scheduler=made, device="cpu", **options
    )


def _plateau(**options):
    return lambda optimizer: ReduceLROnPlateau(optimizer, patience=0, factor=0.5, **options)


class _Recorder(Callback):
    """Remembers what the plateau scheduler saw as its best value after every epoch."""

    def __init__(self):
        self.best = []

    def on_epoch_end(self, state):
        self.best.append(state.model.scheduler.best)


def test_a_max_plateau_scheduler_on_the_default_loss_is_refused(blobs):
    with pytest.raises(
        ConfigError, match=r"ReduceLROnPlateau\(mode='max'\).*'val_loss', where lower is better"
    ):
        _compile(_plateau(mode="max"))


def test_a_min_plateau_scheduler_on_an_accuracy_is_refused():
    with pytest.raises(ConfigError, match=r"mode='min'.*'val_accuracy', where higher is better.*mode='max'"):
        _compile(_plateau(mode="min"), scheduler_monitor="val_accuracy")


def test_the_plateau_scheduler_steps_on_the_named_column(blobs):
    recorder = _Recorder()
    model = _compile(_plateau(mode="max"), scheduler_monitor="val_accuracy")
    history = model.fit(blobs, epochs=3, validation_data=blobs, callbacks=[recorder], verbose=0)
    assert recorder.best == list(history["val_accuracy"].cummax())


def test_the_default_plateau_column_is_val_loss_then_loss(blobs):
    recorder = _Recorder()
    model = _compile(_plateau(mode="min"))
    history = model.fit(blobs, epochs=2, validation_data=blobs, callbacks=[recorder], verbose=0)
    assert recorder.best == list(history["val_loss"].cummin())
    recorder.best.clear()
    history = model.fit(blobs, epochs=2, callbacks=[recorder], verbose=0)  # no validation: the loss
    assert recorder.best[-1] == min(history["loss"].iloc[-2:].min(), history["val_loss"].iloc[:2].min())


def test_a_named_column_missing_at_the_first_epoch_end_lists_the_columns(blobs):
    model = _compile(_plateau(mode="max"), scheduler_monitor="val_accuracy")
    with pytest.raises(ConfigError, match="'val_accuracy' is not in the logs; available: accuracy, loss"):
        model.fit(blobs, epochs=1, verbose=0)


def test_a_plateau_scheduler_on_a_declared_metric_follows_the_declaration(blobs):
    with pytest.raises(ConfigError, match="where higher is better"):
        _compile(_plateau(mode="min"), metrics=[DeclaredScore("score")], scheduler_monitor="val_score")
    _compile(_plateau(mode="max"), metrics=[DeclaredScore("score")], scheduler_monitor="val_score")


def test_scheduler_monitor_needs_a_plateau_scheduler_and_epochs():
    with pytest.raises(ConfigError, match="scheduler_monitor='val_accuracy' applies to ReduceLROnPlateau"):
        _compile(lambda opt: StepLR(opt, 2), scheduler_monitor="val_accuracy")
    with pytest.raises(ConfigError, match="scheduler_interval='epoch'"):
        _compile(_plateau(mode="min"), scheduler_interval="step")


def test_a_scheduler_over_another_optimizer_is_refused(blobs):
    other = torch.optim.SGD(mlp().parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="StepLR was built over another optimizer"):
        _compile(StepLR(other, 1, gamma=0.5))
    model = _compile(lambda opt: StepLR(opt, 1, gamma=0.5))  # a factory gets the right one
    history = model.fit(blobs, epochs=2, verbose=0)
    assert list(history["lr"]) == [0.1, 0.05]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"grad_clip": -1.0}, r"grad_clip must be a finite number > 0 or None, got -1.0"),
        ({"grad_clip": 0}, r"grad_clip must be a finite number > 0"),
        ({"grad_clip": float("nan")}, r"grad_clip must be a finite number > 0"),
        ({"scheduler_interval": "batch"}, r"scheduler_interval must be 'epoch' or 'step'"),
        ({"precision": "fp16"}, r"precision='fp16' is not one of"),
    ],
)
def test_compile_arguments_out_of_range(options, message):
    with pytest.raises(ConfigError, match=message):
        _compile(**options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": -1}, r"epochs must be an int >= 1, got -1"),
        ({"epochs": 0}, r"epochs must be an int >= 1, got 0"),
        ({"epochs": 2.5}, r"epochs must be an int >= 1, got 2.5"),
        ({"epochs": True}, r"epochs must be an int >= 1, got True"),
        ({"batch_size": 0}, r"batch_size must be an int >= 1 or None, got 0"),
        ({"batch_size": -4}, r"batch_size must be an int >= 1 or None, got -4"),
        ({"verbose": 3}, r"verbose must be 0 \(silent\), 1 \(progress bar\) or 2"),
        ({"callbacks": EarlyStopping("loss")}, r"callbacks takes a list: callbacks=\[EarlyStopping\(...\)\]"),
        ({"callbacks": [EarlyStopping]}, r"callbacks=EarlyStopping is the class"),
        ({"callbacks": ["early"]}, r"callbacks must be ember.callbacks.Callback objects"),
    ],
)
def test_fit_arguments_out_of_range(blobs, options, message):
    model = _compile()
    before = [p.clone() for p in model.net.parameters()]
    with pytest.raises(ConfigError, match=message):
        model.fit(blobs, **{"verbose": 0, **options})
    assert all(torch.equal(a, b) for a, b in zip(before, model.net.parameters(), strict=True))


def test_the_same_callback_twice_is_refused(blobs):
    stopper = EarlyStopping("loss", patience=1)
    with pytest.raises(ConfigError, match="the same EarlyStopping object is in callbacks twice"):
        _compile().fit(blobs, verbose=0, callbacks=[stopper, stopper])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: EarlyStopping(patience=-1), r"EarlyStopping\(patience=...\) must be an int >= 0"),
        (lambda: ember.callbacks.ModelCheckpoint("x", keep_last=0), r"keep_last=...\) must be an int >= 1"),
        (lambda: ember.callbacks.ModelCheckpoint("x", every_n_steps=0), r"every_n_steps=...\) must be"),
        (lambda: ember.callbacks.ModelCheckpoint("x", every_n_epochs=-2), r"every_n_epochs=...\) must be"),
    ],
)
def test_callback_arguments_out_of_range(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_keras_fit_x_y(blobs):
    x, y = blobs
    positional = _compile().fit(x, y, epochs=2, verbose=0, shuffle=False)
    together = _compile().fit((x, y), epochs=2, verbose=0, shuffle=False)
    assert list(positional["loss"]) == list(together["loss"])
    model = _compile()
    assert model.evaluate(x, y) == model.evaluate((x, y))


def test_keras_fit_x_y_misuses(blobs):
    x, y = blobs
    with pytest.raises(ConfigError, match=r"second positional argument is the target y.*epochs=3"):
        _compile().fit((x, y), 3)
    with pytest.raises(DataError, match="x has 300 samples but y has 299"):
        _compile().fit(x, y[:-1], verbose=0)
    with pytest.raises(
        ConfigError, match=r"pass data that brings its targets as one argument, e.g. fit\(\(x, y\)\)"
    ):
        _compile().fit((x, y), y, verbose=0)
