import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import ember
from ember.errors import ConfigError
from tests.conftest import mlp


def test_range_test_suggests_a_rate_and_restores_everything(blobs, tmp_path):
    net = mlp()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    model = ember.Model(net).compile(loss=nn.CrossEntropyLoss(), optimizer=opt, device="cpu")
    model.fit(blobs, epochs=1, verbose=0)  # optimizer state exists
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    opt_state = opt.state_dict()
    exp_avg = opt_state["state"][0]["exp_avg"].clone()
    rng = torch.get_rng_state()
    result = model.find_lr(blobs, start=1e-5, end=10, steps=60)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in weights.items())
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"], exp_avg)
    assert opt.param_groups[0]["lr"] == 1e-3 and torch.equal(torch.get_rng_state(), rng)
    assert len(result.lrs) == len(result.losses) >= 20 and result.lrs[0] == pytest.approx(1e-5)
    assert np.all(np.diff(result.lrs) > 0)
    assert 1e-5 < result.suggestion < 10
    assert len(model.history) == 1 and model.state.step == 10  # find_lr is not training history
    figure = result.plot(tmp_path / "lr.png")
    assert figure.axes[0].get_xscale() == "log"
    assert np.asarray(Image.open(tmp_path / "lr.png").convert("L")).std() > 5


def test_a_diverging_loss_stops_the_test_early(blobs):
    net = mlp()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    model = ember.Model(net).compile(loss=nn.CrossEntropyLoss(), device="cpu", optimizer=opt)
    result = model.find_lr(blobs, start=1e-3, end=1e6, steps=100)
    assert len(result.lrs) < 100


def test_bad_range_is_explained(blobs):
    model = ember.Model(mlp()).compile(loss=nn.CrossEntropyLoss(), device="cpu")
    with pytest.raises(ConfigError, match="0 < start < end"):
        model.find_lr(blobs, start=1.0, end=0.1)


def test_the_range_test_runs_the_fit_step_with_clipping_and_the_scaler(blobs, monkeypatch):
    x, y = blobs
    net = mlp()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    model = ember.Model(net).compile(
        nn.CrossEntropyLoss(), optimizer, grad_clip=0.01, precision="16", device="cpu"
    )
    clipped, scaled = [], []
    clip = nn.utils.clip_grad_norm_
    monkeypatch.setattr(
        nn.utils, "clip_grad_norm_", lambda params, limit: clipped.append(limit) or clip(params, limit)
    )
    scale = model.scaler.scale
    monkeypatch.setattr(model.scaler, "scale", lambda loss: scaled.append(1) or scale(loss))
    scaler_state = model.scaler.state_dict()
    result = model.find_lr((x, y), start=1e-3, end=1e-2, steps=6, batch_size=50)
    assert clipped == [0.01] * len(result.lrs) and len(scaled) == len(result.lrs) == 6
    assert model.scaler.state_dict() == scaler_state  # restored like the rest
