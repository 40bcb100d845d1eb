"""Gradient accumulation: a window of k micro-batches trains exactly like one batch holding them."""

import pytest
import torch
from torch import nn

import ember
from ember.accumulate import Accumulation, sample_count
from ember.callbacks import ModelCheckpoint
from ember.errors import CheckpointError, ConfigError
from tests import dist_jobs
from tests.step_callbacks import Crash, CrashAt, StopAtStep

SAMPLES = 70  # batch 8: 8 full batches and one of 6, so k=4 leaves a last window of one batch


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(SAMPLES, 5, generator=g), torch.randint(0, 3, (SAMPLES,), generator=g)


def _model(accumulate=1, dropout=0.2, **options):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Dropout(dropout), nn.Linear(7, 3))
    optimizer = options.pop("optimizer", None) or torch.optim.SGD(net.parameters(), lr=0.5)
    return ember.Model(net).compile(
        loss=nn.CrossEntropyLoss(),
        optimizer=optimizer,
        metrics=["accuracy"],
        device="cpu",
        accumulate=accumulate,
        **options,
    )


def _fit(model, batch_size, epochs=3, **kwargs):
    torch.manual_seed(5)  # the shuffle seed of the data
    x, y = _data()
    return model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, **kwargs)


def _assert_close(a, b, tol=1e-6):
    for (name, p), q in zip(a.net.named_parameters(), b.net.parameters(), strict=True):
        assert torch.allclose(p, q, atol=tol, rtol=0), name


def test_the_window_plans_updates_and_divisors():
    window = Accumulation(3)
    plans = [window.plan(n, last) for n, last in [(4, False), (4, False), (4, False), (4, False), (2, True)]]
    assert plans == [(False, 1.0), (False, 1.0), (True, 12.0), (False, 1.0), (True, 6.0)]
    assert not window.open
    window.plan(5, last=False)
    assert window.open and window.close() == 5.0 and not window.open


def test_sample_count_reads_the_first_tensor():
    assert sample_count((torch.zeros(6, 2), torch.zeros(6))) == 6
    assert sample_count({"ids": torch.zeros(3, 9), "labels": torch.zeros(3)}) == 3
    assert sample_count(torch.tensor(1.0)) == 1


@pytest.mark.parametrize("shuffle", [False, True])
def test_accumulating_four_batches_equals_one_big_batch(shuffle):
    """SGD, k=4, batches of 8 (the last has 6): the weights after 3 epochs equal batches of 32."""
    big, small = _model(), _model(accumulate=4)
    big_history = _fit(big, 32, shuffle=shuffle)
    small_history = _fit(small, 8, shuffle=shuffle)
    _assert_close(big, small)
    for column in ["loss", "accuracy", "lr"]:
        assert small_history[column].tolist() == pytest.approx(big_history[column].tolist(), abs=1e-6)
    assert (big.state.updates, small.state.updates) == (9, 9)
    assert (big.state.step, small.state.step) == (9, 27)


def test_the_divisor_is_the_sample_count_not_the_number_of_batches():
    """Windows of uneven batches (8 + 6 samples): dividing by 2 batches would weight the 6 more."""
    big, small = _model(dropout=0.0), _model(accumulate=2, dropout=0.0)  # masks of 8 + 6 != 14
    _fit(big, 14, epochs=1, shuffle=False)
    x, y = _data()
    starts = [start + offset for start in range(0, SAMPLES, 14) for offset in (0, 8)]
    batches = [(x[i : i + (8 if i % 14 == 0 else 6)], y[i : i + (8 if i % 14 == 0 else 6)]) for i in starts]
    small.fit(batches, epochs=1, verbose=0)
    _assert_close(big, small)
    assert small.state.updates == 5


class Batches:
    """An iterable of batches without a length: the window left open at its end is applied."""

    def __init__(self, size):
        self.size = size

    def __iter__(self):
        x, y = _data()
        for i in range(0, SAMPLES, self.size):
            yield x[i : i + self.size], y[i : i + self.size]


def test_data_without_a_length_applies_the_last_open_window():
    big, small = _model(), _model(accumulate=4)
    torch.manual_seed(5)
    big.fit(Batches(32), epochs=2, verbose=0)
    torch.manual_seed(5)
    small.fit(Batches(8), epochs=2, verbose=0)
    _assert_close(big, small)
    assert small.state.updates == 6


def test_clipping_and_a_per_step_scheduler_act_per_update():
    big = _model(grad_clip=0.05)
    small = _model(accumulate=4, grad_clip=0.05)
    big.scheduler = torch.optim.lr_scheduler.StepLR(big.optimizer, 1, gamma=0.5)
    small.scheduler = torch.optim.lr_scheduler.StepLR(small.optimizer, 1, gamma=0.5)
    big.scheduler_interval = small.scheduler_interval = "step"
    _fit(big, 32, epochs=2)
    _fit(small, 8, epochs=2)
    _assert_close(big, small)
    assert small.optimizer.param_groups[0]["lr"] == 0.5 * 0.5**6  # 6 updates, not 18 steps


def test_adam_with_accumulation_matches_the_big_batch():
    big = _model()
    big.optimizer = big.optimizers["optimizer"] = torch.optim.Adam(big.net.parameters(), lr=0.01)
    small = _model(accumulate=4)
    small.optimizer = small.optimizers["optimizer"] = torch.optim.Adam(small.net.parameters(), lr=0.01)
    _fit(big, 32)
    _fit(small, 8)
    _assert_close(big, small, tol=1e-5)


def test_a_stop_inside_a_window_applies_it():
    model = _model(accumulate=4)
    history = _fit(model, 8, callbacks=[StopAtStep(6)])
    assert model.state.updates == 2  # steps 1-4, then 5-6 applied at the stop
    assert history["batches"].tolist() == [6.0]
    assert all(p.grad is None for p in model.net.parameters())


@pytest.mark.parametrize("step", [2, 4, 11, 14])
def test_resume_inside_a_window_is_bitwise(tmp_path, step):
    """Killed after micro-batch 2 of a window (and at its end, mid-epoch and in the last window of
    epoch 2), resumed: weights and history bitwise equal to the uninterrupted run."""
    reference = _model(accumulate=4)
    reference_history = _fit(reference, 8)
    folder = tmp_path / "ck"
    first = _model(accumulate=4)
    with pytest.raises(Crash):
        _fit(first, 8, callbacks=[ModelCheckpoint(folder, every_n_steps=1, keep_last=1), CrashAt(step)])
    second = _model(accumulate=4)
    history = _fit(second, 8, callbacks=[ModelCheckpoint(folder, every_n_steps=1)], resume="latest")
    for p, q in zip(reference.net.parameters(), second.net.parameters(), strict=True):
        assert torch.equal(p, q)
    columns = ["loss", "accuracy", "lr"]
    assert history[columns].equals(reference_history[columns])
    assert second.state.updates == reference.state.updates == 9


def test_resuming_a_window_with_another_accumulate_is_refused(tmp_path):
    folder = tmp_path / "ck"
    first = _model(accumulate=4)
    with pytest.raises(Crash):
        _fit(first, 8, callbacks=[ModelCheckpoint(folder, every_n_steps=1, keep_last=1), CrashAt(3)])
    with pytest.raises(CheckpointError, match=r"3 batches into a gradient-accumulation window.*accumulate=2"):
        _fit(_model(accumulate=2), 8, resume=folder)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "4"])
def test_accumulate_must_be_a_positive_count(bad):
    with pytest.raises(ConfigError, match="accumulate"):
        _model(accumulate=bad)


def test_two_processes_accumulating_match_one_process(tmp_path):
    """45 samples: one process with batches of 16, or two processes of 4 per batch accumulating
    2 (windows of 16, 16 and 13 samples, the last window's batches uneven across processes)."""
    dist_jobs.fit_job(tmp_path, 45, 16, name="single")
    ember.launch(dist_jobs.fit_job, 2, str(tmp_path), 45, 4, 21, "double", 0.0, False, False, 2)
    single = ember.checkpoint.read_state_dict(tmp_path / "single-rank0.safetensors")
    for rank in (0, 1):
        double = ember.checkpoint.read_state_dict(tmp_path / f"double-rank{rank}.safetensors")
        assert all(torch.allclose(single[k], double[k], atol=1e-6) for k in single)
