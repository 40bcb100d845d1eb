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
