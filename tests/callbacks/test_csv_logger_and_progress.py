import csv
import io

import torch
from torch import nn

import ember
from ember.callbacks import CSVLogger, ProgressBar
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


def test_tensorboard_logger_writes_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ember.callbacks import TensorBoardLogger

    _model().fit(DATA, epochs=3, verbose=0, callbacks=[TensorBoardLogger(tmp_path / "tb")])
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert {"loss", "accuracy", "lr", "seconds"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3]


def test_tensorboard_missing_is_explained(tmp_path, monkeypatch):
    import sys

    import pytest

    from ember.callbacks import TensorBoardLogger
    from ember.errors import ConfigError

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match=r"pip install 'ember\[tensorboard\]'"):
        _model().fit(DATA, epochs=1, verbose=0, callbacks=[TensorBoardLogger(tmp_path / "tb")])
