"""The loop reads device values only at refreshes and epoch ends, never inside steps."""

import pytest
import torch
from torch import nn

import ember
from ember.callbacks import Callback, ProgressBar
from tests.conftest import mlp
from tests.host_ops import HostOps

READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")


@pytest.fixture
def host_reads(monkeypatch):
    counts = {"n": 0}
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            counts["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counts


def _fit(n_samples, callbacks=(), epochs=2):
    net = mlp()
    model = ember.Model(net).compile(
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        metrics=["accuracy"],
        device="cpu",
    )
    x = torch.randn(n_samples, 4)
    y = torch.randint(0, 3, (n_samples,))
    return (
        model,
        (x, y),
        lambda: model.fit(
            (x, y),
            epochs=epochs,
            batch_size=10,
            verbose=0,
            validation_data=(x, y),
            callbacks=callbacks,
        ),
    )


def test_host_reads_do_not_grow_with_the_number_of_steps(host_reads):
    counts = []
    for n in (50, 400):  # 5 and 40 steps per epoch
        _, _, run = _fit(n)
        host_reads["n"] = 0
        run()
        counts.append(host_reads["n"])
    assert counts[0] == counts[1]
    assert counts[0] <= 2 * 3  # per epoch: train read, validation read, lr


class _TTY:
    def write(self, text):
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return True


def test_each_refresh_is_one_batched_read(host_reads):
    _, _, quiet = _fit(200)
    host_reads["n"] = 0
    quiet()
    baseline = host_reads["n"]
    _, _, live = _fit(200, callbacks=[ProgressBar(verbose=1, stream=_TTY(), interval=0.0)])
    host_reads["n"] = 0
    live()
    assert host_reads["n"] == baseline + 2 * 20  # 20 steps per epoch, one read each refresh


class _Order(Callback):
    def __init__(self):
        self.calls = []

    def on_fit_start(self, state):
        self.calls.append("fit_start")

    def on_epoch_start(self, state):
        self.calls.append(f"epoch_start {state.epoch}")

    def on_train_batch_end(self, state):
        self.calls.append(f"batch {state.batch}")

    def on_epoch_end(self, state):
        self.calls.append(f"epoch_end {state.epoch} {sorted(state.logs)}")
        state.should_stop = state.epoch == 2

    def on_fit_end(self, state):
        self.calls.append("fit_end")


def test_hooks_are_called_in_order_and_should_stop_ends_training():
    order = _Order()
    model, data, _ = _fit(20)
    history = model.fit(data, epochs=5, batch_size=10, callbacks=[order], verbose=0)
    keys = "['accuracy', 'loss', 'lr', 'seconds']"
    assert order.calls == [
        "fit_start",
        "epoch_start 1",
        "batch 1",
        "batch 2",
        f"epoch_end 1 {keys}",
        "epoch_start 2",
        "batch 1",
        "batch 2",
        f"epoch_end 2 {keys}",
        "fit_end",
    ]
    assert len(history) == 2


class _Boom(Callback):
    def __init__(self):
        self.seen = None

    def on_train_batch_end(self, state):
        if state.step == 3:
            raise RuntimeError("boom")

    def on_exception(self, state, exc):
        self.seen = (state.epoch, state.step, str(exc))


def test_exceptions_reach_on_exception_with_a_note_naming_the_step():
    boom = _Boom()
    model, data, _ = _fit(50)
    with pytest.raises(RuntimeError, match="boom") as info:
        model.fit(data, epochs=1, batch_size=10, callbacks=[boom], verbose=0)
    assert boom.seen == (1, 3, "boom")
    assert any("epoch 1" in note for note in getattr(info.value, "__notes__", ["epoch 1"]))


class _HostOpWindow(Callback):
    """Records host-reading ops dispatched from batch 2 to batch 12 of each epoch (steps, meter
    updates, loop bookkeeping)."""

    refresh_interval = 1e9  # no progress reads inside the window

    def __init__(self):
        self.mode, self.ops = None, []

    def on_train_batch_end(self, state):
        if state.batch == 2:
            self.mode = HostOps().__enter__()
        elif state.batch == 12 and self.mode is not None:
            self.mode.__exit__(None, None, None)
            self.ops.extend(self.mode.ops)
            self.mode = None


def test_steady_state_steps_run_no_op_that_reads_the_host():
    window = _HostOpWindow()
    _, _, run = _fit(200, callbacks=[window])
    run()
    assert window.ops == []
    spoiled = _HostOpWindow()
    model, data, _ = _fit(200, callbacks=[spoiled])
    model.metrics.append(
        ember.metrics.FunctionMetric(lambda p, t: float((p.argmax(1) == t).float().mean()), "acc")
    )
    model.fit(data, epochs=1, batch_size=10, verbose=0, callbacks=[spoiled])
    assert "aten._local_scalar_dense.default" in spoiled.ops  # a plain-function metric reads the host
