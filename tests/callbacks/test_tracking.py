"""The shared tracker base: main process only, the order of calls, skipped steps on resume, the
failure rule and the recorded parameters (with an in-memory tracker)."""

import warnings
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import ember
from ember.callbacks import Callback
from ember.callbacks.tracking import Tracker, run_params


class MemoryTracker(Tracker):
    name = "MemoryTracker"

    def __init__(self, marks=(0, 0), fail_at=None):
        super().__init__()
        self.marks, self.fail_at, self.calls = marks, fail_at, []

    def _start(self, params):
        self.run_id = self.run_id or "run-1"
        self.calls.append(("start", params["parameters"]))
        return self.marks

    def _log_metrics(self, values, step, axis):
        if self.fail_at == (axis, step):
            raise ConnectionError("server gone")
        self.calls.append((axis, step, sorted(values)))

    def _log_files(self, files):
        self.calls.append(("files", sorted(files)))

    def _finish(self, status):
        self.calls.append(("finish", status))


class EveryStepRefresh(Callback):
    refresh_interval = 0.0


DATA = (torch.randn(32, 3, generator=torch.Generator().manual_seed(0)), torch.arange(32) % 2)


def make_model():
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    return ember.Model(net).compile(
        nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1), device="cpu"
    )


def test_calls_arrive_in_order_on_the_thread():
    tracker = MemoryTracker()
    make_model().fit(DATA, epochs=2, batch_size=16, callbacks=[tracker, EveryStepRefresh()], verbose=0)
    assert tracker.calls == [
        ("start", 8),
        ("step", 1, ["train/loss"]),
        ("step", 2, ["train/loss"]),
        ("epoch", 1, ["loss", "lr", "seconds"]),
        ("step", 3, ["train/loss"]),
        ("step", 4, ["train/loss"]),
        ("epoch", 2, ["loss", "lr", "seconds"]),
        ("files", ["plots"]),
        ("finish", "FINISHED"),
    ]
    assert tracker.state_dict() == {"run_id": "run-1"}


def test_steps_and_epochs_the_run_holds_are_skipped():
    tracker = MemoryTracker(marks=(3, 1))  # as a resumed run reports
    make_model().fit(DATA, epochs=2, batch_size=16, callbacks=[tracker, EveryStepRefresh()], verbose=0)
    logged = [call[:2] for call in tracker.calls if call[0] in ("step", "epoch")]
    assert logged == [("step", 4), ("epoch", 2)]


def test_a_failure_warns_once_stops_logging_and_training_goes_on():
    tracker = MemoryTracker(fail_at=("step", 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = make_model().fit(
            DATA, epochs=3, batch_size=16, callbacks=[tracker, EveryStepRefresh()], verbose=0
        )
    assert len(history) == 3
    assert [str(w.message) for w in caught] == [
        "MemoryTracker stopped logging after an error (ConnectionError: server gone); "
        "training and checkpoints go on"
    ]
    # nothing logged after the failure, and the run is closed as failed rather than left open
    assert tracker.calls == [("start", 8), ("step", 1, ["train/loss"]), ("finish", "FAILED")]
    tracker.fail_at = None  # the next fit starts afresh: logging again, in a new run
    tracker.run_id = "old"
    make_model().fit(DATA, epochs=1, batch_size=16, callbacks=[tracker, EveryStepRefresh()], verbose=0)
    assert (
        tracker.failed is None and tracker.run_id == "run-1" and tracker.calls[-1] == ("finish", "FINISHED")
    )


def test_only_the_main_process_starts_a_run():
    tracker = MemoryTracker()
    state = SimpleNamespace(model=SimpleNamespace(is_main=False), running={"loss": 1.0}, step=1)
    tracker.on_fit_start(state)
    tracker.on_refresh(state)
    tracker.on_fit_end(state)
    assert tracker.calls == [] and tracker.run_id is None


def test_run_params_hold_the_arguments_as_given():
    model = make_model()
    model.fit(DATA, epochs=1, batch_size=16, verbose=0)
    params = run_params(model.state)
    assert params["parameters"] == params["trainable_parameters"] == 8
    assert params["compile.loss"] == "CrossEntropyLoss" and params["compile.device"] == "cpu"
    assert params["fit.batch_size"] == 16 and params["fit.epochs"] == 1 and "fit.train_data" not in params
    assert params["optimizer.lr"] == 0.1 and "optimizer.params" not in params


@pytest.mark.parametrize(
    ("value", "logged"),
    [
        (None, None),
        (3, 3),
        ("32", "32"),
        (torch.tensor(0.5), 0.5),
        ([1, "a"], "[1, 'a']"),
        (nn.ReLU(), "ReLU"),
    ],
)
def test_values_are_logged_as_numbers_text_or_type_names(value, logged):
    from ember.callbacks.tracking import _loggable

    assert _loggable(value) == logged
