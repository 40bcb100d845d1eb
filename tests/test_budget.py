"""Budgets and the validation schedule: fit(max_steps, steps_per_epoch, max_time, validation_freq,
validate_every) stop and validate at the exact step, as a callback's should_stop would."""

import csv
import math
import time
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from torch import nn

import ember
import ember.budget
from ember.budget import Budget
from ember.callbacks import Callback, CSVLogger, EarlyStopping, ModelCheckpoint
from ember.checkpoint import read_state_dict
from ember.errors import ConfigError, DataError
from ember.state import TrainState
from tests import dist_jobs
from tests.step_callbacks import Crash, CrashAt, StopAtStep

SAMPLES, BATCH = 100, 10  # 10 batches per epoch


# (epoch, step) of the rows of 2 epochs of 10 batches with validate_every=4: validations inside
# epochs at steps 4, 8, 12 and 16, and the epoch rows at steps 10 and 20
EVERY_4_OF_10_ROWS = [(1, 4), (1, 8), (1, 10), (2, 12), (2, 16), (2, 20)]


def _data(n=SAMPLES, seed=1, flip=False):
    """Learnable classes; ``flip`` gives every sample a wrong label (a validation loss that rises)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 4, generator=g) + 2 * nn.functional.one_hot(y, 4).float()
    return x, (y + 1) % 3 if flip else y


def _model(accumulate=1, dropout=0.2, net=None, lr=0.1, **options):
    torch.manual_seed(0)
    net = net or nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(dropout), nn.Linear(8, 3))
    return ember.Model(net).compile(
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(net.parameters(), lr=lr),
        metrics=["accuracy"],
        device="cpu",
        accumulate=accumulate,
        **options,
    )


def _fit(model, epochs=5, x=None, **kwargs):
    torch.manual_seed(5)  # the shuffle seed
    x, y = _data() if x is None else (x, _data()[1])
    return model.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0, **kwargs)


def _values(history):
    return history.drop(columns="seconds")


def _same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.net.parameters(), b.net.parameters(), strict=True))


def _weights(model):
    return {k: v.detach().clone() for k, v in model.net.state_dict().items()}


def _evaluate(model, weights, data):
    model.net.load_state_dict(weights)
    return model.evaluate(data, batch_size=BATCH)


class Hooks(Callback):
    """Records hook calls as (hook, epoch, step)."""

    def __init__(self):
        self.calls = []

    def on_epoch_end(self, state):
        self.calls.append(("on_epoch_end", state.epoch, state.step))

    def on_fit_end(self, state):
        self.calls.append(("on_fit_end", state.epoch, state.step))


class WeightsAt(Callback):
    """The net's weights (or with ``ema``, the average's) after the given steps, or after every epoch."""

    def __init__(self, steps=(), ema=False):
        self.steps, self.ema, self.at = set(steps), ema, {}

    def on_train_batch_end(self, state):
        if state.step in self.steps:
            if self.ema:
                with state.model.ema.swapped():
                    self.at[state.step] = _weights(state.model)
            else:
                self.at[state.step] = _weights(state.model)

    def on_epoch_end(self, state):
        if not self.steps:
            self.at[state.epoch] = _weights(state.model)


class Tape(nn.Module):
    """A linear net that records the sample ids (column 0 of its input) of every training batch."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.seen = []

    def forward(self, x):
        if self.training:
            self.seen.append(x[:, 0].long().tolist())
        return self.linear(x[:, 1:])


def _with_ids():
    x, _ = _data()
    return torch.cat([torch.arange(SAMPLES, dtype=torch.float32)[:, None], x], dim=1)


def _id_batches(count):
    """``count`` batches, batch b with ids 10b .. 10b+9 (the samples of batch b % 10 of the data)."""
    x, y = _with_ids(), _data()[1]
    for b in range(count):
        rows = slice(b % 10 * BATCH, (b % 10 + 1) * BATCH)
        ids = b * BATCH + torch.arange(BATCH, dtype=torch.float32)
        yield torch.cat([ids[:, None], x[rows, 1:]], dim=1), y[rows]


def _batch_numbers(seen):
    return [ids[0] // BATCH for ids in seen]


# -- the Budget itself --------------------------------------------------------------------------------
def test_validation_freq_validates_epochs_k_2k_and_the_last():
    budget = Budget(validation_freq=2)
    assert [budget.validates_epoch(e, last=e == 5) for e in range(1, 6)] == [False, True, False, True, True]


def test_validate_every_validates_inside_epochs_only():
    budget = Budget(validate_every=4)
    state = TrainState(steps_per_epoch=10)
    due = []
    for step in range(11, 21):  # epoch 2: steps 11..20, batches 1..10
        state.step, state.batch = step, step - 10
        due.append(budget.validates_step(state))
    assert [s for s, d in zip(range(11, 21), due, strict=True) if d] == [12, 16]  # not 20: the epoch's end
    assert not Budget().validates_step(state)


def test_max_steps_counts_the_updates_of_this_call():
    budget = Budget(max_steps=5)
    state = TrainState()
    state.updates, state.fit_start_updates = 27, 23
    assert not budget.spent(state)
    state.updates = 28
    assert budget.spent(state)


def test_epoch_length_caps_a_pass():
    assert Budget().epoch_length(10) == 10
    assert Budget().epoch_length(None) is None
    assert Budget(steps_per_epoch=3).epoch_length(10) == 3
    assert Budget(steps_per_epoch=10).epoch_length(10) == 10
    assert Budget(steps_per_epoch=3).epoch_length(None) == 3  # a stream: any length


# -- max_steps ----------------------------------------------------------------------------------------
def test_max_steps_ends_the_epoch_at_that_step():
    model = _model()
    history = _fit(model, max_steps=23)
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history["batches"].tolist()[2] == 3.0
    assert history["batches"].isna().tolist() == [True, True, False]
    assert (model.state.updates, model.state.step, model.state.epochs_done) == (23, 23, 3)


@pytest.mark.parametrize(("accumulate", "max_steps", "steps", "batches"), [(1, 23, 23, 3.0), (2, 7, 14, 4.0)])
def test_a_budget_stop_equals_a_callback_stop_bitwise(accumulate, max_steps, steps, batches):
    budget, stopped = _model(accumulate), _model(accumulate)
    budget_history = _fit(budget, max_steps=max_steps)
    stopped_history = _fit(stopped, callbacks=[StopAtStep(steps)])
    assert (budget.state.updates, budget.state.step) == (max_steps, steps)
    assert _same_weights(budget, stopped)
    assert _values(budget_history).equals(_values(stopped_history))
    assert budget_history["batches"].tolist()[-1] == batches


def test_a_second_fit_call_counts_its_own_max_steps():
    model = _model()
    _fit(model, max_steps=23)
    history = _fit(model, max_steps=5)
    assert (model.state.updates, model.state.step) == (28, 28)
    assert history["epoch"].tolist() == [1, 2, 3, 4]  # the second call starts epoch 4 afresh
    assert history["batches"].tolist()[2:] == [3.0, 5.0]


def test_the_stopped_epoch_ends_normally_and_gets_its_checkpoint(tmp_path):
    hooks = Hooks()
    model = _model()
    checkpoint = ModelCheckpoint(tmp_path / "ck", every_n_epochs=1, keep_last=None)
    _fit(model, max_steps=23, callbacks=[checkpoint, hooks])
    assert hooks.calls == [
        ("on_epoch_end", 1, 10),
        ("on_epoch_end", 2, 20),
        ("on_epoch_end", 3, 23),
        ("on_fit_end", 3, 23),
    ]
    assert checkpoint.last_path.name == "epoch0003-step000000023"
    loaded = _model().load(checkpoint.last_path)
    assert (loaded.state.updates, loaded.state.epochs_done) == (23, 3)
    assert _same_weights(loaded, model)


def test_resuming_mid_epoch_with_the_same_max_steps_is_bitwise(tmp_path):
    reference = _model()
    reference_history = _fit(reference, max_steps=23)
    folder = tmp_path / "ck"
    with pytest.raises(Crash):
        _fit(_model(), max_steps=23, callbacks=[ModelCheckpoint(folder, every_n_steps=1), CrashAt(13)])
    resumed = _model()
    history = _fit(
        resumed, max_steps=23, callbacks=[ModelCheckpoint(folder, every_n_steps=1)], resume="latest"
    )
    assert (resumed.state.updates, resumed.state.step) == (23, 23)
    assert _same_weights(reference, resumed)
    assert _values(history).equals(_values(reference_history))


def test_resuming_from_the_budgets_last_step_trains_no_more(tmp_path):
    folder = tmp_path / "ck"
    with pytest.raises(Crash):
        _fit(_model(), max_steps=23, callbacks=[ModelCheckpoint(folder, every_n_steps=1), CrashAt(23)])
    resumed = _model()
    history = _fit(
        resumed, max_steps=23, callbacks=[ModelCheckpoint(folder, every_n_steps=1)], resume="latest"
    )
    assert (resumed.state.updates, history["batches"].tolist()[-1]) == (23, 3.0)


# -- steps_per_epoch ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["arrays", "dataset"])
def test_steps_per_epoch_caps_each_epoch_from_the_start_of_its_order(kind):
    def run(**kwargs):
        tape = Tape()
        model = _model(net=tape)
        x, y = _with_ids(), _data()[1]
        data = (x, y) if kind == "arrays" else (torch.utils.data.TensorDataset(x, y),)
        torch.manual_seed(5)
        history = model.fit(*data, epochs=3, batch_size=BATCH, verbose=0, **kwargs)
        return history, model, [tape.seen[e * 10 : e * 10 + 10] for e in range(3)], tape.seen

    capped_history, capped, _, seen = run(steps_per_epoch=3)
    _, _, full_epochs, _ = run()
    assert capped_history["epoch"].tolist() == [1, 2, 3]
    assert "batches" not in capped_history.columns  # a capped epoch is a whole epoch
    assert (capped.state.step, capped.state.updates) == (9, 9)
    assert [seen[e * 3 : e * 3 + 3] for e in range(3)] == [epoch[:3] for epoch in full_epochs]
    assert seen[:3] != seen[3:6] != seen[6:9]  # each epoch its own shuffled order
    assert len({i for batch in seen[:3] for i in batch}) == 30


def test_resuming_from_a_capped_epochs_last_batch_keeps_the_cap(tmp_path):
    reference = _model()
    _fit(reference, epochs=3, steps_per_epoch=3)
    folder = tmp_path / "ck"
    with pytest.raises(Crash):
        _fit(
            _model(),
            epochs=3,
            steps_per_epoch=3,
            callbacks=[ModelCheckpoint(folder, every_n_steps=1), CrashAt(3)],
        )
    resumed = _model()
    _fit(
        resumed,
        epochs=3,
        steps_per_epoch=3,
        callbacks=[ModelCheckpoint(folder, every_n_steps=1)],
        resume="latest",
    )
    assert resumed.state.step == 9
    assert _same_weights(reference, resumed)


def test_steps_per_epoch_larger_than_a_pass_is_refused():
    with pytest.raises(
        ConfigError, match=r"steps_per_epoch=11, but the training data has 10 batches per pass"
    ):
        _fit(_model(), steps_per_epoch=11)


def test_a_generator_continues_across_epochs():
    tape = Tape()
    model = _model(net=tape)
    history = model.fit(_id_batches(20), epochs=3, steps_per_epoch=4, verbose=0)
    assert _batch_numbers(tape.seen) == list(range(12))
    assert history["epoch"].tolist() == [1, 2, 3]
    assert model.state.step == 12


class Batches:
    """The 10 batches of the data, without ``__len__``."""

    def __iter__(self):
        x, y = _data()
        return iter([(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, SAMPLES, BATCH)])


class IdBatches:
    """A re-iterable iterable of 5 batches without ``__len__``: each iteration is a new pass."""

    def __iter__(self):
        return _id_batches(5)


def test_an_iterable_without_a_length_continues_and_starts_a_new_pass():
    tape = Tape()
    model = _model(net=tape)
    model.fit(IdBatches(), epochs=3, steps_per_epoch=4, verbose=0)
    assert _batch_numbers(tape.seen) == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]


def test_a_generator_that_ends_is_a_data_error():
    model = _model(net=Tape())
    with pytest.raises(DataError, match=r"training data ended after 5 batches.*generator can be read once"):
        model.fit(_id_batches(5), epochs=3, steps_per_epoch=4, verbose=0)
    assert model.state.step == 5  # epoch 2 trained batch 5, then found no 6th


def test_an_accumulation_window_closes_at_the_capped_epochs_last_batch():
    """6 batches of 10 per epoch with accumulate=4: windows of 40 and 20 samples, as batches of 40."""
    x, y = _data()
    small = _model(accumulate=4, dropout=0.0)
    small.fit(x, y, epochs=3, batch_size=10, shuffle=False, steps_per_epoch=6, verbose=0)
    big = _model(dropout=0.0)
    big.fit(x[:60], y[:60], epochs=3, batch_size=40, shuffle=False, verbose=0)
    assert (small.state.updates, small.state.step) == (6, 18)
    for p, q in zip(small.net.parameters(), big.net.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6, rtol=0)


# -- max_time -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("max_time", "steps", "batches"), [(2.5, 3, [3.0]), (12.5, 13, [math.nan, 3.0])])
def test_max_time_stops_after_the_step_that_spends_it(monkeypatch, max_time, steps, batches):
    """A clock of one second per step: the budget is checked after every step."""
    model = _model()
    base = time.monotonic()
    monkeypatch.setattr(ember.budget, "time", SimpleNamespace(monotonic=lambda: base + model.state.step))
    history = _fit(model, max_time=max_time)
    assert model.state.step == steps
    assert history["batches"].tolist() == pytest.approx(batches, nan_ok=True)


@pytest.mark.parametrize(
    ("option", "bad"),
    [
        ("max_time", 0),
        ("max_time", -1),
        ("max_time", math.nan),
        ("max_time", True),
        ("max_time", "5"),
        ("max_steps", 0),
        ("steps_per_epoch", 1.5),
        ("validation_freq", 0),
        ("validate_every", -1),
    ],
)
def test_invalid_budgets_are_refused_by_name(option, bad):
    model = _model()
    with pytest.raises(ConfigError, match=option):
        _fit(model, **{option: bad})
    assert model.state.step == 0


# -- validation_freq ----------------------------------------------------------------------------------
def test_validation_freq_validates_epochs_2_4_and_the_last():
    val = _data(30, seed=2)
    recorder = WeightsAt()
    model = _model()
    history = _fit(model, validation_data=val, validation_freq=2, callbacks=[recorder])
    assert history["val_loss"].notna().tolist() == [False, True, False, True, True]
    for epoch in (2, 4, 5):
        expected = _evaluate(model, recorder.at[epoch], val)
        row = history.iloc[epoch - 1]
        assert (row["val_loss"], row["val_accuracy"]) == pytest.approx(
            (expected["loss"], expected["accuracy"]), abs=1e-6
        )


def test_early_stopping_counts_validated_epochs_only():
    """The validation loss rises every epoch: best at epoch 2 (the first validated), worse at 4."""
    stopper = EarlyStopping("val_loss", patience=1)
    model = _model()
    history = _fit(
        model, validation_data=_data(30, seed=2, flip=True), validation_freq=2, callbacks=[stopper]
    )
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert (stopper.best_epoch, stopper.stopped_epoch) == (2, 4)
    assert history["val_loss"][3] > history["val_loss"][1]


def test_save_best_picks_among_validated_epochs(tmp_path):
    recorder = WeightsAt()
    checkpoint = ModelCheckpoint(tmp_path / "ck", every_n_epochs=None, save_best=True)
    model = _model()
    history = _fit(
        model,
        validation_data=_data(30, seed=2, flip=True),
        validation_freq=2,
        callbacks=[recorder, checkpoint],
    )
    assert history["val_loss"].dropna().is_monotonic_increasing
    assert checkpoint.best_epoch == 2
    best = _model().load(checkpoint.best_path)
    assert all(torch.equal(best.net.state_dict()[k], w) for k, w in recorder.at[2].items())


class Zero(nn.Module):
    def forward(self, x):
        return x * 0.0


def test_reduce_lr_on_plateau_steps_after_validated_epochs_only():
    """A constant loss (outputs are zero): every validation after the first is a plateau."""
    net = nn.Sequential(nn.Linear(4, 3), Zero())
    model = _model(
        net=net,
        lr=1.0,
        scheduler=lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0),
    )
    history = _fit(model, validation_data=_data(30, seed=2), validation_freq=2)
    assert history["lr"].tolist() == [1.0, 1.0, 1.0, 1.0, 0.5]  # the lr each epoch trained with
    assert model.optimizer.param_groups[0]["lr"] == 0.25  # halved after epochs 4 and 5
    assert model.scheduler.last_epoch == 3  # stepped after epochs 2, 4, 5


def test_a_val_monitor_without_validation_data_still_raises():
    with pytest.raises(ConfigError, match=r"monitor 'val_loss' is not in the logs"):
        _fit(_model(), validation_freq=2, callbacks=[EarlyStopping("val_loss")])


# -- validate_every -----------------------------------------------------------------------------------
class Validations(Callback):
    def __init__(self):
        self.calls = []

    def on_validation_end(self, state, logs):
        self.calls.append((state.epoch, state.step, dict(logs)))


def test_validate_every_adds_rows_inside_epochs():
    val = _data(30, seed=2)
    recorder, validations = WeightsAt(steps=(4, 8, 12, 16)), Validations()
    model = _model()
    history = _fit(model, epochs=2, validation_data=val, validate_every=4, callbacks=[recorder, validations])
    assert list(history.columns) == [
        "epoch",
        "step",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "lr",
        "seconds",
    ]
    assert list(zip(history["epoch"], history["step"], strict=True)) == EVERY_4_OF_10_ROWS
    assert history["loss"].notna().tolist() == [False, False, True, False, False, True]
    assert [(epoch, step) for epoch, step, _ in validations.calls] == [(1, 4), (1, 8), (2, 12), (2, 16)]
    for row, (_, step, logs) in zip([0, 1, 3, 4], validations.calls, strict=True):
        assert logs == {"val_loss": history["val_loss"][row], "val_accuracy": history["val_accuracy"][row]}
        expected = _evaluate(model, recorder.at[step], val)
        assert logs["val_loss"] == pytest.approx(expected["loss"], abs=1e-6)
        assert logs["val_accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)


def test_validations_inside_epochs_leave_training_unchanged():
    """Dropout on: the validation passes draw no randomness the training steps would see."""
    plain, validated = _model(), _model()
    plain_history = _fit(plain, epochs=2, validation_data=_data(30, seed=2))
    validated_history = _fit(validated, epochs=2, validation_data=_data(30, seed=2), validate_every=4)
    epochs = validated_history[validated_history["loss"].notna()].reset_index(drop=True)
    assert _values(epochs).drop(columns="step").equals(_values(plain_history))
    assert _same_weights(plain, validated)


def test_validate_every_uses_the_ema_weights():
    val = _data(30, seed=2)
    average, raw = WeightsAt(steps=(4,), ema=True), WeightsAt(steps=(4,))
    model = _model(ema=0.9)
    history = _fit(model, epochs=1, validation_data=val, validate_every=4, callbacks=[average, raw])
    assert history["val_loss"][0] == pytest.approx(_evaluate(model, average.at[4], val)["loss"], abs=1e-6)
    assert history["val_loss"][0] != pytest.approx(_evaluate(model, raw.at[4], val)["loss"], abs=1e-4)


def test_csv_logger_writes_one_line_per_epoch_with_validate_every(tmp_path):
    path = tmp_path / "log.csv"
    history = _fit(
        _model(), epochs=2, validation_data=_data(30, seed=2), validate_every=4, callbacks=[CSVLogger(path)]
    )
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "step", "lr", "seconds"]
    assert [(int(r["epoch"]), float(r["step"])) for r in rows] == [
        (1, 10.0),
        (2, 20.0),
    ]  # step written "10.0"
    assert [float(r["val_loss"]) for r in rows] == pytest.approx(
        history["val_loss"][[2, 5]].tolist(), rel=1e-12
    )


def test_resuming_from_a_validated_step_keeps_its_row(tmp_path):
    val = _data(30, seed=2)
    reference_history = _fit(_model(), epochs=2, validation_data=val, validate_every=4)
    folder = tmp_path / "ck"
    callbacks = [ModelCheckpoint(folder, every_n_steps=4), CrashAt(5)]  # the step-4 checkpoint is the latest
    with pytest.raises(Crash):
        _fit(_model(), epochs=2, validation_data=val, validate_every=4, callbacks=callbacks)
    history = _fit(
        _model(),
        epochs=2,
        validation_data=val,
        validate_every=4,
        callbacks=[ModelCheckpoint(folder, every_n_steps=4)],
        resume="latest",
    )
    assert list(zip(history["epoch"], history["step"], strict=True)) == EVERY_4_OF_10_ROWS
    assert _values(history).equals(_values(reference_history))


def test_validate_every_skips_the_last_step_of_data_without_a_length():
    history = _model().fit(
        Batches(), epochs=2, validation_data=_data(30, seed=2), validate_every=5, verbose=0
    )
    assert list(zip(history["epoch"], history["step"], strict=True)) == [(1, 5), (1, 10), (2, 15), (2, 20)]


# -- two processes ------------------------------------------------------------------------------------
def _read(folder, name, rank=0):
    return read_state_dict(folder / f"{name}-rank{rank}.safetensors")


def test_two_processes_keep_the_budget_and_validations_of_one(tmp_path):
    """45 samples: batches of 8 in one process, 4 + 4 in two; max_steps=11 stops epoch 2 at batch 5
    (rows: steps 3, 6 (epoch 1), 9, 11 (epoch 2))."""
    dist_jobs.budget_job(tmp_path, "single", 8, max_steps=11, validate_every=3)
    ember.launch(dist_jobs.budget_job, 2, str(tmp_path), "double", 4, 3, 11, 3)
    single = pd.read_json(tmp_path / "single-rank0.json")
    for rank in (0, 1):
        double = pd.read_json(tmp_path / f"double-rank{rank}.json")
        assert list(double.columns) == list(single.columns)
        assert list(zip(double["epoch"], double["step"], strict=True)) == [(1, 3), (1, 6), (2, 9), (2, 11)]
        for column in single.columns:
            assert double[column].to_numpy() == pytest.approx(
                single[column].to_numpy(), abs=1e-6, nan_ok=True
            )
        one, two = _read(tmp_path, "single"), _read(tmp_path, "double", rank)
        assert all(torch.allclose(one[k], two[k], atol=1e-6) for k in one)


def test_two_processes_stop_on_process_zeros_clock_at_an_epoch_end(tmp_path):
    """Process 0's clock passes max_time at step 3 (mid-epoch); the other's never does: both
    finish epoch 1 (6 steps) and stop there, as a one-process fit of one epoch."""
    dist_jobs.budget_job(tmp_path, "single", 8, epochs=1)
    ember.launch(dist_jobs.budget_job, 2, str(tmp_path), "double", 4, 3, None, None, 2.5)
    single = pd.read_json(tmp_path / "single-rank0.json")
    for rank in (0, 1):
        double = pd.read_json(tmp_path / f"double-rank{rank}.json")
        assert (
            list(double.columns)
            == list(single.columns)
            == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"]
        )
        assert double.to_numpy() == pytest.approx(single.to_numpy(), abs=1e-6)
        one, two = _read(tmp_path, "single"), _read(tmp_path, "double", rank)
        assert all(torch.allclose(one[k], two[k], atol=1e-6) for k in one)
