"""The loop reads device values only at refreshes and epoch ends, never inside steps."""

import pytest
import torch
from torch import nn

import ember
from ember.callbacks import Callback, ProgressBar
from tests.conftest import mlp
from tests.host_ops import HostOpWindow
from tests.step_callbacks import StopAtStep

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


def test_steady_state_steps_run_no_op_that_reads_the_host():
    window = HostOpWindow(2, 12)
    _, _, run = _fit(200, callbacks=[window])
    run()
    assert window.ops == []
    spoiled = HostOpWindow(2, 12)
    model, data, _ = _fit(200, callbacks=[spoiled])
    model.metrics.append(
        ember.metrics.FunctionMetric(lambda p, t: float((p.argmax(1) == t).float().mean()), "acc")
    )
    model.fit(data, epochs=1, batch_size=10, verbose=0, callbacks=[spoiled])
    assert "aten._local_scalar_dense.default" in spoiled.ops  # a plain-function metric reads the host


def _sgd_model(net):
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    return ember.Model(net).compile(nn.CrossEntropyLoss(), optimizer, metrics=["accuracy"], device="cpu")


def test_should_stop_mid_epoch_ends_at_that_step_with_exact_partial_sums():
    torch.manual_seed(1)
    x, y = torch.randn(95, 4), torch.randint(0, 3, (95,))
    model = _sgd_model(mlp())
    history = model.fit((x, y), epochs=3, batch_size=10, shuffle=False, callbacks=[StopAtStep(14)], verbose=0)
    reference = mlp()  # the same steps by hand: epoch 1 (10 batches), then 4 batches of epoch 2
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    losses, correct = [], 0
    for b in range(14):
        xb, yb = x[(b % 10) * 10 : (b % 10) * 10 + 10], y[(b % 10) * 10 : (b % 10) * 10 + 10]
        out = reference(xb)
        loss = nn.functional.cross_entropy(out, yb)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if b >= 10:
            losses.append(loss.item() * len(yb))
            correct += int((out.argmax(1) == yb).sum())
    assert list(history["epoch"]) == [1, 2]
    assert model.state.step == 14
    assert history["batches"].isna().tolist() == [True, False]
    assert history["batches"].iloc[1] == 4
    assert history["loss"].iloc[1] == pytest.approx(sum(losses) / 40, rel=1e-6)
    assert history["accuracy"].iloc[1] == pytest.approx(correct / 40)
    for mine, theirs in zip(model.net.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs)


def test_should_stop_from_on_refresh_is_honoured_at_the_next_step():
    class StopOnRefresh(Callback):
        refresh_interval = 0.0

        def on_refresh(self, state):
            if state.step == 3:
                state.should_stop = True

    model, data, _ = _fit(100)
    history = model.fit(data, epochs=2, batch_size=10, callbacks=[StopOnRefresh()], verbose=0)
    assert model.state.step == 3 and list(history["batches"]) == [3]


class _EvaluateEvery(Callback):
    """Calls evaluate, predict and find_lr from inside the fit every few steps."""

    def __init__(self, data, every=3):
        self.data, self.every, self.calls = data, every, 0

    def on_train_batch_end(self, state):
        if state.step % self.every == 0:
            state.model.evaluate(self.data)
            state.model.predict(self.data[0])
            state.model.find_lr(self.data, steps=3, batch_size=10)
            self.calls += 1


def test_evaluate_predict_and_find_lr_inside_fit_change_nothing_of_the_running_epoch():
    torch.manual_seed(2)
    x, y = torch.randn(100, 4), torch.randint(0, 3, (100,))
    held = (torch.randn(30, 4), torch.randint(0, 3, (30,)))

    def run(*callbacks):
        model = _sgd_model(mlp())
        data = (x, y)
        return model.fit(
            data, epochs=2, batch_size=10, validation_data=held, callbacks=list(callbacks), verbose=0
        )

    evaluating = _EvaluateEvery(held)
    plain, with_evaluate = run(), run(evaluating)
    assert evaluating.calls == 6
    columns = ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert with_evaluate[columns].equals(plain[columns])
