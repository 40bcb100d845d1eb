"""Exact resume: interrupted after any step and resumed, training ends bitwise where it would have."""

import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, Dataset

import ember
from ember.callbacks import Callback, EarlyStopping, ModelCheckpoint
from ember.errors import CheckpointError, ConfigError

EPOCHS, SAMPLES, BATCH = 3, 45, 8  # 6 steps per epoch (the last one has 5 samples), 18 in all


class Augmented(Dataset):
    """Random augmentation inside the Dataset, drawn from torch and from python's random."""

    def __init__(self, n=SAMPLES, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x, self.y = torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] * random.uniform(0.8, 1.2) + 0.1 * torch.randn(6), self.y[i]


class Stop(Exception):
    pass


class StopAt(Callback):
    order = 200  # after ModelCheckpoint wrote the step's checkpoint

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, state):
        if state.step == self.step:
            raise Stop(f"stopped at step {state.step}")


def _model():
    ember.seed_everything(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    opt = torch.optim.AdamW(net.parameters(), lr=0.01)
    return ember.Model(net).compile(
        loss=nn.CrossEntropyLoss(), optimizer=opt, metrics=["accuracy"], device="cpu"
    )


def _fit(model, workers=0, callbacks=(), resume=None):
    train = DataLoader(Augmented(), batch_size=BATCH, shuffle=True, num_workers=workers)
    val = DataLoader(Augmented(20, seed=1), batch_size=BATCH)
    return model.fit(
        train, epochs=EPOCHS, validation_data=val, callbacks=list(callbacks), verbose=0, resume=resume
    )


def _interrupted_then_resumed(tmp_path, step, workers=(0, 0)):
    folder = tmp_path / f"ck{step}"
    first = _model()
    with pytest.raises(Stop):
        _fit(first, workers[0], [ModelCheckpoint(folder, every_n_steps=1, keep_last=1), StopAt(step)])
    second = _model()
    history = _fit(
        second, workers[1], [ModelCheckpoint(folder, every_n_steps=1, keep_last=1)], resume="latest"
    )
    return second, history


@pytest.fixture(scope="module")
def reference():
    model = _model()
    history = _fit(model)
    return model, history


def _assert_same(a, b, history_a, history_b):
    for key, value in a.net.state_dict().items():
        assert torch.equal(value, b.net.state_dict()[key]), key
    opt_a, opt_b = a.optimizer.state_dict(), b.optimizer.state_dict()
    for pid, entries in opt_a["state"].items():
        for name, value in entries.items():
            assert torch.equal(value, opt_b["state"][pid][name]), (pid, name)
    columns = [c for c in history_a.columns if c != "seconds"]  # wall time cannot repeat
    assert history_a[columns].equals(history_b[columns])


@pytest.mark.parametrize("step", [1, 4, 6, 7, 17, 18])
def test_resume_after_any_step_is_bitwise_exact(tmp_path, reference, step):
    model, history = _interrupted_then_resumed(tmp_path, step)
    _assert_same(reference[0], model, reference[1], history)


@settings(max_examples=12, deadline=None)
@given(st.integers(1, EPOCHS * 6))
def test_resume_at_drawn_steps(tmp_path_factory, reference, step):
    model, history = _interrupted_then_resumed(tmp_path_factory.mktemp("drawn"), step)
    _assert_same(reference[0], model, reference[1], history)


@pytest.mark.parametrize("workers", [(2, 0), (0, 2)])
def test_resume_with_a_different_number_of_workers(tmp_path, reference, workers):
    model, history = _interrupted_then_resumed(tmp_path, 8, workers)
    _assert_same(reference[0], model, reference[1], history)


def test_resume_from_an_epoch_end_checkpoint(tmp_path, reference):
    class StopAtEpoch(Callback):
        order = 200

        def on_epoch_end(self, state):
            if state.epoch == 2:
                raise Stop()

    first = _model()
    with pytest.raises(Stop):
        _fit(first, callbacks=[ModelCheckpoint(tmp_path, every_n_epochs=1), StopAtEpoch()])
    second = _model()
    history = _fit(second, resume=tmp_path)
    _assert_same(reference[0], second, reference[1], history)


def test_callback_states_come_back(tmp_path):
    stopper = EarlyStopping("val_loss", patience=10)
    with pytest.raises(Stop):  # two epochs and two steps, then interrupted
        _fit(_model(), callbacks=[ModelCheckpoint(tmp_path, every_n_steps=1), stopper, StopAt(14)])
    restored = EarlyStopping("val_loss", patience=10)
    with pytest.raises(Stop):  # resumed, and stopped one step later to look at the callback
        _fit(
            _model(),
            callbacks=[ModelCheckpoint(tmp_path, every_n_steps=1), restored, StopAt(15)],
            resume=tmp_path,
        )
    assert restored.best_epoch == stopper.best_epoch and restored.best_epoch is not None
    assert restored.monitor.best == stopper.monitor.best and restored.wait == stopper.wait


@pytest.mark.parametrize("switch_off", ["restore_rng_states", "load_data_state"])
def test_negative_controls_break_parity(tmp_path, reference, monkeypatch, switch_off):
    """Without the RNG restore or the data position, resume must differ: the parity test can fail."""
    monkeypatch.setattr(f"ember.resume.{switch_off}", lambda *args, **kwargs: None)
    model, history = _interrupted_then_resumed(tmp_path, 4)
    with pytest.raises(AssertionError):
        _assert_same(reference[0], model, reference[1], history)


def test_resume_in_a_fresh_process(tmp_path, reference):
    root = Path(__file__).resolve().parents[1]
    script = textwrap.dedent(f"""
        import sys, torch
        from tests.test_resume import _model, _fit, ModelCheckpoint, StopAt, Stop
        model = _model()
        if sys.argv[1] == "first":
            try:
                _fit(model, callbacks=[ModelCheckpoint({str(tmp_path)!r}, every_n_steps=1), StopAt(9)])
            except Stop:
                pass
        else:
            _fit(model, resume={str(tmp_path)!r})
            ember.save_weights(model.net, {str(tmp_path / "final.safetensors")!r})
    """).replace("import sys, torch", "import sys, torch, ember")
    for phase in ("first", "second"):
        subprocess.run([sys.executable, "-c", script, phase], check=True, cwd=root)
    final = ember.checkpoint.read_state_dict(tmp_path / "final.safetensors")
    assert all(torch.equal(v, final[k]) for k, v in reference[0].net.state_dict().items())


def test_nothing_to_resume_from_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match=f"nothing to resume from: {tmp_path}"):
        _fit(_model(), resume=tmp_path)
    with pytest.raises(ConfigError, match="needs a ModelCheckpoint"):
        _fit(_model(), resume="latest")


def test_a_different_model_shape_is_explained(tmp_path):
    first = _model()
    with pytest.raises(Stop):
        _fit(first, callbacks=[ModelCheckpoint(tmp_path, every_n_steps=1), StopAt(2)])
    net = nn.Linear(6, 3)
    optimizer = torch.optim.AdamW(net.parameters())  # the saved optimizer's class: the net is what differs
    other = ember.Model(net).compile(loss=nn.CrossEntropyLoss(), optimizer=optimizer, device="cpu")
    with pytest.raises(CheckpointError, match="the saved model does not fit"):
        _fit(other, resume=tmp_path)


def test_model_save_and_load(tmp_path, reference):
    model = reference[0]
    path = model.save(tmp_path / "final")
    fresh = _model()
    fresh.load(path)
    assert all(torch.equal(v, fresh.net.state_dict()[k]) for k, v in model.net.state_dict().items())
    assert fresh.history["loss"].tolist() == model.history["loss"].tolist()
    assert fresh.state.step == model.state.step == EPOCHS * 6


class Counting(Augmented):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __getitem__(self, i):
        self.calls += 1
        return super().__getitem__(i)


def test_resume_reads_only_the_remaining_samples(tmp_path):
    with pytest.raises(Stop):
        _fit(_model(), callbacks=[ModelCheckpoint(tmp_path, every_n_steps=1), StopAt(4)])
    data = Counting()
    model = _model()
    model.fit(DataLoader(data, batch_size=BATCH, shuffle=True), epochs=1, verbose=0, resume=tmp_path)
    assert data.calls == SAMPLES - 4 * BATCH  # batches 5 and 6 of epoch 1 only


def test_tensor_data_and_fp16_scaler_resume_exactly(tmp_path):
    def model():
        ember.seed_everything(0)
        net = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.2), nn.Linear(8, 3))
        return ember.Model(net).compile(
            loss=nn.CrossEntropyLoss(),
            device="cpu",
            precision="16",
            optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        )

    x, y = Augmented().x, Augmented().y
    reference = model()
    reference.fit((x, y), epochs=2, batch_size=8, verbose=0)
    with pytest.raises(Stop):
        model().fit(
            (x, y),
            epochs=2,
            batch_size=8,
            verbose=0,
            callbacks=[ModelCheckpoint(tmp_path, every_n_steps=1), StopAt(5)],
        )
    states, _ = ember.checkpoint.load_states(ModelCheckpoint(tmp_path).last_path, ["scaler"])
    assert states["scaler"]["scale"] == 65536.0
    resumed = model()
    resumed.fit((x, y), epochs=2, batch_size=8, verbose=0, resume=tmp_path)
    assert all(torch.equal(v, resumed.net.state_dict()[k]) for k, v in reference.net.state_dict().items())


def test_a_mid_epoch_checkpoint_at_another_world_size_is_refused(tmp_path):
    with pytest.raises(Stop):
        _fit(_model(), callbacks=[ModelCheckpoint(tmp_path, every_n_steps=1), StopAt(2)])
    model = _model()
    model.runtime.world_size = 2
    with pytest.raises(
        CheckpointError,
        match="saved inside an epoch by 1 process; .* resumes with the same number of processes",
    ):
        _fit(model, resume=tmp_path)
