import torch
from torch import nn

import ember
from ember.callbacks import Callback, ModelCheckpoint
from ember.checkpoint import read_state_dict
from tests.conftest import mlp


def test_best_and_last_weights_are_written(tmp_path):
    snapshots = {}

    class Snapshot(Callback):
        def on_epoch_end(self, state):
            state.logs["val_accuracy"] = [0.5, 0.9, 0.7][state.epoch - 1]
            snapshots[state.epoch] = {k: v.clone() for k, v in state.model.net.state_dict().items()}

    checkpoint = ModelCheckpoint(tmp_path / "ck", monitor="val_accuracy", mode="max")
    net = mlp()
    model = ember.Model(net).compile(
        loss=nn.CrossEntropyLoss(),
        device="cpu",
        optimizer=torch.optim.SGD(net.parameters(), lr=0.5),
    )
    model.fit(
        (torch.randn(20, 4), torch.randint(0, 3, (20,))),
        epochs=3,
        verbose=0,
        callbacks=[Snapshot(), checkpoint],
    )
    best, last = read_state_dict(checkpoint.best_path), read_state_dict(checkpoint.last_path)
    assert checkpoint.best_epoch == 2
    assert all(torch.equal(best[k], snapshots[2][k]) for k in best)
    assert all(torch.equal(last[k], snapshots[3][k]) for k in last)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "best.safetensors",
        "last.safetensors",
    ]
    fresh = mlp()
    ember.load_weights(fresh, checkpoint.best_path)
    assert torch.equal(fresh[0].weight, snapshots[2]["0.weight"])
