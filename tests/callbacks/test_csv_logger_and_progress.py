import csv
import io

import pytest
import torch
from torch import nn

import ember
from ember.callbacks import CSVLogger, ProgressBar
from ember.callbacks.progress import default_progress
from tests.conftest import mlp


def _model():
    net = mlp()
    return ember.Model(net).compile(
        loss=nn.CrossEntropyLoss(),
        metrics=["accuracy"],
        device="cpu",
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
    )


DATA = (torch.randn(40, 4), torch.randint(0, 3, (40,)))


def test_csv_logger_writes_one_row_per_epoch_and_appends(tmp_path):
    path = tmp_path / "logs" / "history.csv"
    model = _model()
    model.fit(DATA, epochs=2, callbacks=[CSVLogger(path)], verbose=0)
    model.fit(DATA, epochs=1, callbacks=[CSVLogger(path, append=True)], verbose=0)
    rows = list(csv.DictReader(path.open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "lr", "seconds"]
    assert float(rows[2]["loss"]) == model.history["loss"].iloc[2]


def test_plain_progress_prints_one_line_per_epoch(capsys):
    _model().fit(DATA, epochs=2, verbose=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("epoch 1/2 - ") and " - loss: " in lines[0]
    assert " - accuracy: " in lines[1]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_live_bar_shows_running_values_and_final_logs():
    stream = _Terminal()
    _model().fit(
        DATA,
        epochs=1,
        batch_size=10,
        callbacks=[ProgressBar(stream=stream, interval=0.0)],
        verbose=0,
    )
    text = stream.getvalue()
    assert "Epoch 1/1" in text and "4/4" in text and "accuracy:" in text


def test_verbose_zero_prints_nothing(capsys):
    _model().fit(DATA, epochs=1, verbose=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_csv_logger_drops_rows_written_after_the_resumed_epoch(tmp_path):
    from ember.callbacks import ModelCheckpoint

    path = tmp_path / "h.csv"
    model = _model()
    model.fit(
        DATA,
        epochs=2,
        verbose=0,
        callbacks=[CSVLogger(path), ModelCheckpoint(tmp_path / "ck", keep_last=None)],
    )
    model.fit(DATA, epochs=1, verbose=0, callbacks=[CSVLogger(path)])  # epoch 3, then "crash"
    resumed = _model()
    resumed.fit(
        DATA,
        epochs=2,
        verbose=0,
        callbacks=[CSVLogger(path)],
        resume=tmp_path / "ck" / "epoch0001-step000000002",
    )
    rows = list(csv.DictReader(path.open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]  # epoch 1 kept, epoch 2 rewritten, stale 3 gone
    assert float(rows[1]["loss"]) == resumed.history["loss"].iloc[1]


def test_tensorboard_missing_is_explained(tmp_path, monkeypatch):
    import sys

    import pytest

    from ember.callbacks import TensorBoardLogger
    from ember.errors import ConfigError

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match=r"pip install 'ember\[tensorboard\]'"):
        _model().fit(DATA, epochs=1, verbose=0, callbacks=[TensorBoardLogger(tmp_path / "tb")])


def test_running_values_shrink_to_the_room_without_cutting_a_value():
    from ember.callbacks.progress import running_postfix

    logs = {"loss": 0.123456, "accuracy": 0.95, "val_precision": 1234.5, "lr": 0.1}
    full = "loss: 0.1235 - accuracy: 0.9500 - val_precision: 1234.5000"
    assert running_postfix(logs, None) == full
    assert running_postfix(logs, len(full)) == full
    assert running_postfix(logs, 40) == "loss=0.123 acc=0.95 val_prec=1.23e+03"
    assert running_postfix(logs, 24) == "loss=0.123 acc=0.95 ..."
    assert running_postfix(logs, 14) == "loss=0.123 ..."
    assert running_postfix(logs, 5) == "..."
    assert running_postfix(logs, 2) == ""


def test_epoch_values_wrap_between_values_with_validation_on_its_own_lines():
    from ember.callbacks.progress import wrap_logs

    logs = {"loss": 0.5, "accuracy": 0.25, "f1": 1.0, "val_loss": 0.75, "val_accuracy": 0.5, "seconds": 3}
    assert wrap_logs(logs, 80) == [
        "  loss: 0.5000 - accuracy: 0.2500 - f1: 1.0000",
        "  val_loss: 0.7500 - val_accuracy: 0.5000",
    ]
    assert wrap_logs(logs, 34) == [
        "  loss: 0.5000 - accuracy: 0.2500",
        "  f1: 1.0000",
        "  val_loss: 0.7500",
        "  val_accuracy: 0.5000",
    ]
    assert wrap_logs({"a_very_long_metric_name": 0.5}, 10) == ["  a_very_long_metric_name: 0.5000"]


def _error_rate(preds, target):
    return (preds.argmax(1) != target).float().mean()


EIGHT_METRICS = {
    "accuracy": "accuracy",
    "precision": "accuracy",
    "recall": "accuracy",
    "balanced_accuracy": "accuracy",
    "error_rate": _error_rate,
    "mean_logit": lambda preds, target: preds.mean(),
    "top_logit": lambda preds, target: preds.max(1).values.mean(),
    "logit_spread": lambda preds, target: preds.std(),
}


@pytest.mark.parametrize(("width", "forced"), [(80, False), (120, False), (80, True)])
def test_live_bar_fits_every_metric_and_value_in_the_terminal_width(width, forced, monkeypatch):
    import tqdm.std

    if not forced:  # the terminal's width, as tqdm measures it
        monkeypatch.setattr(tqdm.std, "_screen_shape_wrapper", lambda: lambda fp: (width, 24))
    net = mlp()
    model = ember.Model(net).compile(
        loss=nn.CrossEntropyLoss(),
        metrics=EIGHT_METRICS,
        device="cpu",
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
    )
    stream = _Terminal()
    bar = (
        ProgressBar(stream=stream, interval=0.0, ncols=width)
        if forced
        else ProgressBar(stream=stream, interval=0.0)
    )
    history = model.fit(
        DATA,
        epochs=2,
        batch_size=10,
        validation_data=DATA,
        callbacks=[bar],
        verbose=0,
    )
    text = stream.getvalue()
    lines = text.replace("\r", "\n").splitlines()
    assert max(len(line) for line in lines) <= width
    assert len(history.columns) == 1 + 2 * 9 + 2  # epoch, 9 values and their val_ versions, lr, seconds
    first, second = text.split("Epoch 2/2", 1)
    for epoch, summary in enumerate([first.split("Epoch 1/2")[-1], second.split("Epoch 2/2")[-1]]):
        for name in history.columns.drop(["epoch", "lr", "seconds"]):
            assert f"{name}: {history[name].iloc[epoch]:.4f}" in summary, (name, summary)
    running = [line for line in lines if "Epoch 1/2" in line and any(f"| {k}/4 [" in line for k in (1, 2, 3))]
    assert running and all("loss=" in line for line in running)  # compact running values during the epoch


def test_epoch_values_that_fit_stay_on_the_bar_line():
    stream = _Terminal()
    model = _model()
    history = model.fit(
        DATA,
        epochs=1,
        batch_size=10,
        callbacks=[ProgressBar(stream=stream, interval=0.0, ncols=120)],
        verbose=0,
    )
    last = stream.getvalue().replace("\r", "\n").splitlines()[-1]
    logs = f"loss: {history['loss'].iloc[0]:.4f} - accuracy: {history['accuracy'].iloc[0]:.4f}"
    assert last.startswith("Epoch 1/1: 100%") and last.endswith(f"step/s, {logs}]") and len(last) <= 120


def test_fit_adds_no_second_bar_when_the_user_passes_one():
    own = ProgressBar(verbose=2)
    assert default_progress(1, [own]) == []
    assert default_progress(0, []) == []
    added = default_progress(2, [])
    assert len(added) == 1 and isinstance(added[0], ProgressBar)


def test_a_column_that_appears_later_widens_the_csv(tmp_path):
    class StopInSecondEpoch(ember.callbacks.Callback):
        def on_train_batch_end(self, state):
            state.should_stop = state.epoch == 2 and state.batch == 1

    net = mlp()
    model = ember.Model(net).compile(
        nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1), device="cpu"
    )
    logger = CSVLogger(tmp_path / "h.csv")
    data = (torch.randn(20, 4), torch.randint(0, 3, (20,)))
    history = model.fit(data, epochs=3, batch_size=10, callbacks=[logger, StopInSecondEpoch()], verbose=0)
    with (tmp_path / "h.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["batches"] for r in rows] == ["", "1.0"]
    assert [float(r["loss"]) for r in rows] == pytest.approx(list(history["loss"]))
