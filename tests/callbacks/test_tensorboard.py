"""TensorBoardLogger: epoch values as train/val pairs, running values per step, the Custom Scalars
layout, and resume without doubled events; read back with TensorBoard's own event reader."""

import pytest

from ember.callbacks import ModelCheckpoint, TensorBoardLogger
from tests.callbacks.logger_helpers import BATCH, DATA, EveryStepRefresh, make_model
from tests.step_callbacks import Crash, CrashAt

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator", reason="the tensorboard extra is not installed"
)


def read(folder):
    events = event_accumulator.EventAccumulator(str(folder))
    events.Reload()
    return events


def steps_of(events, tag):
    return [e.step for e in events.Scalars(tag)]


def test_epoch_pairs_running_steps_and_layout(tmp_path):
    logger = TensorBoardLogger(tmp_path / "tb")
    history = make_model().fit(
        DATA,
        epochs=3,
        batch_size=BATCH,
        validation_data=DATA,
        callbacks=[logger, EveryStepRefresh()],
        verbose=0,
    )
    epochs = read(tmp_path / "tb")
    tags = set(epochs.Tags()["scalars"])
    assert tags == {"loss/train", "loss/val", "accuracy/train", "accuracy/val", "lr", "seconds"}
    assert steps_of(epochs, "loss/val") == [1, 2, 3]
    values = [e.value for e in epochs.Scalars("loss/train")]
    assert values == pytest.approx(history["loss"].tolist(), rel=1e-6)
    (layout,) = epochs.Tensors("custom_scalars__config__")  # a serialized Layout proto
    assert b"loss/train" in layout.tensor_proto.string_val[0]
    assert b"loss/val" in layout.tensor_proto.string_val[0]
    steps = read(tmp_path / "tb" / "steps")
    assert set(steps.Tags()["scalars"]) == {"running/loss", "running/accuracy"}
    assert steps_of(steps, "running/loss") == list(range(1, 13))


def test_resume_purges_what_follows_the_checkpoint(tmp_path):
    options = {"epochs": 3, "batch_size": BATCH, "verbose": 0}
    keeper = ModelCheckpoint(tmp_path / "ckpt", every_n_steps=6)
    first = [TensorBoardLogger(tmp_path / "tb"), keeper, EveryStepRefresh(), CrashAt(7)]
    with pytest.raises(Crash):  # epoch 1 done and logged; the checkpoint of step 6 is the newest
        make_model().fit(DATA, callbacks=first, **options)
    keeper = ModelCheckpoint(tmp_path / "ckpt", every_n_steps=6)
    second = [TensorBoardLogger(tmp_path / "tb"), keeper, EveryStepRefresh()]
    make_model().fit(DATA, callbacks=second, resume="latest", **options)
    assert steps_of(read(tmp_path / "tb"), "loss/train") == [1, 2, 3]
    assert steps_of(read(tmp_path / "tb" / "steps"), "running/loss") == list(range(1, 13))
