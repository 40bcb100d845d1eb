"""WandbLogger with the real wandb library in offline mode, checked by reading back the records the
run wrote (its ``.wandb`` file, parsed with wandb's own protobuf messages)."""

import json
import sys
import warnings
from pathlib import Path

import pytest

from ember.callbacks import Callback, ModelCheckpoint, WandbLogger
from ember.errors import ConfigError
from tests.callbacks.logger_helpers import BATCH, DATA, EveryStepRefresh, make_model
from tests.step_callbacks import Crash, CrashAt

wandb = pytest.importorskip("wandb", reason="the wandb extra is not installed (ember[wandb])")
from wandb.proto import wandb_internal_pb2  # noqa: E402


@pytest.fixture(autouse=True)
def quiet_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")  # runs go to dir=tmp_path: wandb reads WANDB_DIR once


def log_records(path):
    """The records of a ``.wandb`` file: a 7-byte header, then LevelDB-style log blocks of 32 KiB
    whose chunks (checksum, length, type) are whole records or their first, middle, last parts."""
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B"
    position, block, pending = 7, 32768, b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a chunk header is padding
            position += block - position % block
            continue
        length, kind = int.from_bytes(data[position + 4 : position + 6], "little"), data[position + 6]
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last part of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending + chunk if kind == 4 else chunk)
            pending = b""
            yield record
        elif kind in (2, 3):
            pending += chunk


def run_of(tmp_path, run_id):
    """(config, history rows) of the offline run(s) with ``run_id`` under ``tmp_path``, in order."""
    config, rows = {}, []
    segments = tmp_path.glob(f"**/wandb/offline-run-*/run-{run_id}.wandb")  # a resumed run adds one
    for path in sorted(segments, key=lambda p: p.stat().st_mtime_ns):
        for record in log_records(path):
            kind = record.WhichOneof("record_type")
            if kind in ("run", "config"):  # the config comes with the run record or in its own
                update = record.run.config.update if kind == "run" else record.config.update
                config.update({item.key: json.loads(item.value_json) for item in update})
            elif kind == "history":
                items = record.history.item  # "train/loss" is stored as the nested key (train, loss)
                rows.append(
                    {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}
                )
    return config, rows


def test_offline_run_records_config_steps_and_epochs(tmp_path):
    logger = WandbLogger("tests", name="first", mode="offline", dir=str(tmp_path))
    history = make_model().fit(
        DATA,
        epochs=3,
        batch_size=BATCH,
        validation_data=DATA,
        callbacks=[logger, EveryStepRefresh()],
        verbose=0,
    )
    config, rows = run_of(tmp_path, logger.run_id)
    assert "parameters" in config, f"config read back: {config}"
    assert config["parameters"] == 4 * 8 + 8 + 8 * 2 + 2 and config["fit.epochs"] == 3
    assert config["optimizer"] == "SGD" and config["optimizer.lr"] == 0.1
    steps = [row["global_step"] for row in rows if "train/loss" in row]
    assert steps == list(range(1, 13))
    epochs = [row for row in rows if "loss" in row]  # W&B adds the last epoch to step rows too
    assert [row["epoch"] for row in epochs] == [1, 2, 3]
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        assert [row[key] for row in epochs] == pytest.approx(history[key].tolist(), rel=1e-6)
    assert logger.failed is None


def test_resumed_fit_continues_the_run_id(tmp_path):
    options = {"epochs": 3, "batch_size": BATCH, "verbose": 0}
    keeper = ModelCheckpoint(tmp_path / "ckpt", every_n_steps=4)
    first = WandbLogger("tests", mode="offline", dir=str(tmp_path / "first"))
    with pytest.raises(Crash):
        make_model().fit(DATA, callbacks=[first, keeper, EveryStepRefresh(), CrashAt(6)], **options)
    # a resumed process writes its own segment (here in its own folder: wandb names a segment by
    # the second it started, and two starts within one second would otherwise need its renaming)
    second = WandbLogger("tests", mode="offline", dir=str(tmp_path / "second"))
    keeper = ModelCheckpoint(tmp_path / "ckpt", every_n_steps=4)
    make_model().fit(DATA, callbacks=[second, keeper, EveryStepRefresh()], resume="latest", **options)
    assert (first.failed, second.failed) == (None, None)
    assert second.run_id == first.run_id
    _, rows = run_of(tmp_path, first.run_id)
    steps = [row["global_step"] for row in rows if "train/loss" in row]
    # offline: the resumed segment cannot ask a server what was logged, so step 5 comes twice
    assert steps == [1, 2, 3, 4, 5, *range(5, 13)]
    assert [row["epoch"] for row in rows if "loss" in row] == [1, 2, 3]


def test_a_failing_run_warns_once_and_training_goes_on(tmp_path, monkeypatch):
    logger = WandbLogger("tests", mode="offline", dir=str(tmp_path))

    class Broken(Callback):
        def on_epoch_end(self, state):
            if state.epoch == 1:
                monkeypatch.setattr(logger._run, "log", _raise)

    keeper = ModelCheckpoint(tmp_path / "ckpt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = make_model().fit(
            DATA, epochs=3, batch_size=BATCH, callbacks=[Broken(), logger, keeper], verbose=0
        )
    assert len(history) == 3 and keeper.latest() is not None
    messages = [str(w.message) for w in caught if "WandbLogger" in str(w.message)]
    assert messages == [
        "WandbLogger stopped logging after an error (OSError: disk full); training and checkpoints go on"
    ]


def _raise(*args, **kwargs):
    raise OSError("disk full")


def test_missing_wandb_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ConfigError, match=r"pip install 'ember\[wandb\]'"):
        make_model().fit(
            DATA, epochs=1, callbacks=[WandbLogger("tests", mode="offline", dir=str(tmp_path))], verbose=0
        )
