import torch
from torch import nn

import ember
from ember.callbacks import Callback, EarlyStopping, ModelCheckpoint
from ember.checkpoint import list_checkpoints, read_state_dict
from tests.conftest import mlp

DATA = (torch.randn(20, 4), torch.randint(0, 3, (20,)))


def _model():
    net = mlp()
    return ember.Model(net).compile(
        loss=nn.CrossEntropyLoss(), device="cpu", optimizer=torch.optim.SGD(net.parameters(), lr=0.5)
    )


class Scripted(Callback):
    """Sets val_accuracy to scripted values and keeps a copy of the weights of every epoch."""

    def __init__(self, values):
        self.values, self.snapshots = values, {}

    def on_epoch_end(self, state):
        state.logs["val_accuracy"] = self.values[state.epoch - 1]
        self.snapshots[state.epoch] = {k: v.clone() for k, v in state.model.net.state_dict().items()}


def test_best_and_rotating_checkpoints(tmp_path):
    scripted = Scripted([0.5, 0.9, 0.7, 0.6])
    checkpoint = ModelCheckpoint(
        tmp_path / "ck", save_best=True, monitor="val_accuracy", mode="max", keep_last=2
    )
    _model().fit(DATA, epochs=4, batch_size=10, verbose=0, callbacks=[checkpoint, scripted])
    assert checkpoint.best_epoch == 2
    best, last = read_state_dict(checkpoint.best_path), read_state_dict(checkpoint.last_path)
    assert all(torch.equal(best[k], scripted.snapshots[2][k]) for k in best)
    assert all(torch.equal(last[k], scripted.snapshots[4][k]) for k in last)
    names = [p.name for p in list_checkpoints(tmp_path / "ck")]
    assert names == ["best", "epoch0003-step000000006", "epoch0004-step000000008"]
    fresh = mlp()
    report = ember.load_weights(fresh, checkpoint.best_path)
    assert report.ok and torch.equal(fresh[0].weight, scripted.snapshots[2]["0.weight"])


def test_checkpoint_runs_after_the_other_callbacks(tmp_path):
    stopper = EarlyStopping("loss", patience=5)
    checkpoint = ModelCheckpoint(tmp_path / "ck", keep_last=None)
    _model().fit(DATA, epochs=2, verbose=0, callbacks=[checkpoint, stopper])
    states, _ = ember.checkpoint.load_states(checkpoint.last_path, ["callbacks"])
    assert states["callbacks"]["EarlyStopping-0"]["best_epoch"] == stopper.best_epoch == 2


def test_every_n_steps(tmp_path):
    checkpoint = ModelCheckpoint(tmp_path / "ck", every_n_steps=3, every_n_epochs=None, keep_last=None)
    _model().fit(DATA, epochs=2, batch_size=5, verbose=0, callbacks=[checkpoint])  # 4 steps per epoch
    assert [p.name for p in list_checkpoints(tmp_path / "ck")] == [
        "epoch0001-step000000003",
        "epoch0002-step000000006",
    ]
