"""Jobs that tests/test_distributed.py runs in several processes (module level, so spawn can import them)."""

import json
import os
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.callbacks import Callback, CSVLogger, ModelCheckpoint


def data(n=45, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 5, generator=g) + nn.functional.one_hot(y, 5).float()
    return x, y


class HelperStep(ember.Model):
    """A user's own train_step written with the helpers; it knows nothing of processes."""

    def train_step(self, batch):
        x, y = self.unpack(batch)
        with self.autocast():
            out = self.forward(x)
            loss = nn.functional.cross_entropy(out, y)
        self.optimize(loss)
        return ember.StepOutput(loss, out, y, len(y))


def model(dropout=0.0, custom=False, accumulate=1):
    ember.seed_everything(0)
    net = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Dropout(dropout), nn.Linear(12, 3))
    return (HelperStep if custom else ember.Model)(net).compile(
        loss=nn.CrossEntropyLoss(),
        metrics=["accuracy"],
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        device="cpu",
        accumulate=accumulate,
    )


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def dump(out, name, model, history):
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    ember.save_weights(model.net, folder / f"{name}-rank{rank()}.safetensors")
    history.drop(columns=["seconds"]).to_json(folder / f"{name}-rank{rank()}.json")


def fit_job(out, n, batch, val_n=21, name="fit", dropout=0.0, loader=False, custom=False, accumulate=1):
    m = model(dropout, custom, accumulate)
    x, y = data(n)
    vx, vy = data(val_n, seed=1)
    train = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True) if loader else (x, y)
    history = m.fit(
        train,
        epochs=3,
        batch_size=None if loader else batch,
        validation_data=(vx, vy),
        verbose=0,
        callbacks=[CSVLogger(Path(out) / f"{name}.csv")],
    )
    dump(out, name, m, history)
    predictions = m.predict(vx, batch_size=4)
    torch.save(predictions, Path(out) / f"{name}-predict-rank{rank()}.pt")
    (Path(out) / f"{name}-evaluate-rank{rank()}.json").write_text(
        json.dumps(m.evaluate((vx, vy), batch_size=4))
    )


class StopAt(Callback):
    order = 200

    def __init__(self, step, only_rank=None):
        self.step, self.only_rank = step, only_rank

    def on_train_batch_end(self, state):
        if state.step == self.step and self.only_rank in (None, rank()):
            raise RuntimeError(f"boom at step {state.step}")


def resume_job(out, phase, stop_at=4, crash_rank=None, accumulate=1):
    m = model(dropout=0.3, accumulate=accumulate)
    x, y = data(45)
    checkpoint = ModelCheckpoint(Path(out) / "ck", every_n_steps=1, keep_last=1)
    callbacks = [checkpoint] + ([StopAt(stop_at, crash_rank)] if phase == "first" else [])
    resume = "latest" if phase == "second" else None
    history = m.fit(
        DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True),
        epochs=3,
        verbose=0,
        callbacks=callbacks,
        resume=resume,
    )
    dump(out, phase, m, history)


def raising_job(out):
    m = model()
    x, y = data(45)
    m.fit((x, y), epochs=3, batch_size=4, verbose=0, callbacks=[StopAt(3, only_rank=1)])


def several_optimizers_job(out):
    """A step with two optimizers under two processes: refused before training, on every process."""
    net = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3))
    optimizers = {
        "a": torch.optim.SGD(net[0].parameters(), lr=0.1),
        "b": torch.optim.SGD(net[1].parameters(), lr=0.1),
    }
    m = ember.Model(net).compile(loss=nn.CrossEntropyLoss(), optimizer=optimizers, device="cpu")
    try:
        m.fit(data(), epochs=1, verbose=0)
    except ember.ConfigError as exc:
        (Path(out) / f"refused-rank{rank()}.txt").write_text(str(exc))


# -- the training features, each in one process and in two, and interrupted and resumed ----------
FEATURES = ("accumulate", "weights", "outputs", "dict", "ema")


class TwoHeads(nn.Module):
    """A net with two outputs: class scores and a regression value."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 12), nn.ReLU())
        self.cls, self.reg = nn.Linear(12, 3), nn.Linear(12, 1)

    def forward(self, x):
        hidden = self.body(x)
        return {"cls": self.cls(hidden), "reg": self.reg(hidden).squeeze(1)}


class KeywordNet(nn.Module):
    """A net called with keyword inputs, as a dict batch's keys."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 3))

    def forward(self, x):
        return self.net(x)


class FeatureData(torch.utils.data.Dataset):
    """Samples in the form each feature reads: (x, y), (x, y, w), (x, {"cls", "reg"}), {"x", "labels"}."""

    def __init__(self, feature, n, seed=0):
        self.feature = feature
        self.x, self.y = data(n, seed)
        self.w = torch.linspace(0.25, 2.0, n)
        self.r = self.x.sum(1)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if self.feature == "weights":
            return self.x[i], self.y[i], self.w[i]
        if self.feature == "outputs":
            return self.x[i], {"cls": self.y[i], "reg": self.r[i]}
        if self.feature == "dict":
            return {"x": self.x[i], "labels": self.y[i]}
        return self.x[i], self.y[i]


def feature_model(feature):
    ember.seed_everything(0)
    net = {"outputs": TwoHeads, "dict": KeywordNet}.get(feature, lambda: model().net)()
    options = {"loss": nn.CrossEntropyLoss(), "metrics": ["accuracy"]}
    if feature == "outputs":
        options = {
            "loss": {"cls": nn.CrossEntropyLoss(), "reg": nn.MSELoss()},
            "loss_weights": {"cls": 1.0, "reg": 0.5},
            "metrics": {"cls": ["accuracy"], "reg": ["mae"]},
        }
    return ember.Model(net).compile(
        **options,
        optimizer=torch.optim.AdamW(net.parameters(), lr=0.01),
        device="cpu",
        weighted=feature == "weights",
        accumulate=2 if feature == "accumulate" else 1,
        ema=0.9 if feature == "ema" else None,
    )


def feature_job(out, name, feature, batch, phase="reference", stop_at=7):
    """Fit ``feature``'s model for 3 epochs; ``phase`` "first" stops at step ``stop_at`` (after its
    checkpoint), "second" resumes from it."""
    m = feature_model(feature)
    folder = Path(out) / f"{name}-ck"
    callbacks = [] if phase == "reference" else [ModelCheckpoint(folder, every_n_steps=1, keep_last=1)]
    if phase == "first":
        callbacks.append(StopAt(stop_at))
    history = m.fit(
        DataLoader(FeatureData(feature, 45), batch_size=batch, shuffle=True),
        epochs=3,
        validation_data=DataLoader(FeatureData(feature, 21, seed=1), batch_size=batch),
        verbose=0,
        callbacks=callbacks,
        resume="latest" if phase == "second" else None,
        class_weight={2: 3.0} if feature == "weights" else None,
    )
    dump(out, name, m, history)
    if m.ema is not None:
        with m.ema.swapped():
            ember.save_weights(m.net, Path(out) / f"{name}-ema-rank{rank()}.safetensors")


# -- budgets (tests/test_budget.py): max_steps, validate_every and max_time over processes -------------
def budget_job(out, name, batch, epochs=3, max_steps=None, validate_every=None, max_time=None):
    """Fit 45 samples with a budget; with ``max_time`` the budget's clock is one second per step on
    process 0 and stands still elsewhere, so only process 0's clock can end the fit."""
    import time
    from types import SimpleNamespace

    import ember.budget

    m = model()
    x, y = data(45)
    clock = ember.budget.time
    if max_time is not None:
        base = time.monotonic()
        ember.budget.time = SimpleNamespace(monotonic=lambda: base + m.state.step * (rank() == 0))
    try:
        history = m.fit(
            x,
            y,
            epochs=epochs,
            batch_size=batch,
            validation_data=data(21, seed=1),
            verbose=0,
            max_steps=max_steps,
            validate_every=validate_every,
            max_time=max_time,
        )
    finally:
        ember.budget.time = clock
    dump(out, name, m, history)


def tracker_job(out: str, uri: str) -> None:
    """Two processes fit with an MLflowLogger: only process 0 opens a run and logs."""
    from ember.callbacks import MLflowLogger

    logger = MLflowLogger("two-processes", tracking_uri=uri)
    model().fit(data(), epochs=2, batch_size=8, callbacks=[logger], verbose=0)
    rank = int(os.environ.get("RANK", "0"))
    Path(out, f"run-{rank}.json").write_text(json.dumps({"run_id": logger.run_id}))
