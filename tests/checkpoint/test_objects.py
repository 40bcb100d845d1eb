import pytest
import torch
from torch import nn

from ember import load_checkpoint, save_checkpoint
from ember.errors import CheckpointError


def _pair(seed):
    torch.manual_seed(seed)
    a, b = nn.Linear(3, 2), nn.Linear(2, 1)
    opt_a, opt_b = (
        torch.optim.Adam(a.parameters(), lr=0.01),
        torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9),
    )
    loss = b(a(torch.randn(4, 3))).sum()
    loss.backward()
    opt_a.step()
    opt_b.step()
    return {"modelA": a, "modelB": b, "optimizerA": opt_a, "optimizerB": opt_b}


def test_the_tutorials_two_models_two_optimizers(tmp_path):
    saved = _pair(0)
    save_checkpoint(tmp_path / "ck", saved, epoch=7, loss=0.25)
    fresh = _pair(1)
    extra = load_checkpoint(tmp_path / "ck", fresh)
    assert extra == {"epoch": 7, "loss": 0.25}
    assert torch.equal(fresh["modelA"].weight, saved["modelA"].weight)
    state_a = fresh["optimizerA"].state_dict()
    assert state_a["param_groups"][0]["betas"] == (0.9, 0.999)
    assert torch.equal(
        state_a["state"][0]["exp_avg"], saved["optimizerA"].state_dict()["state"][0]["exp_avg"]
    )
    assert torch.equal(
        fresh["optimizerB"].state_dict()["state"][0]["momentum_buffer"],
        saved["optimizerB"].state_dict()["state"][0]["momentum_buffer"],
    )


def test_missing_names_are_reported_on_both_sides(tmp_path):
    save_checkpoint(tmp_path / "ck", {"modelA": nn.Linear(3, 2)})
    with pytest.raises(
        CheckpointError,
        match=r"missing from the checkpoint: \['modelB'\]; in the checkpoint but not given: \[\]",
    ):
        load_checkpoint(tmp_path / "ck", {"modelA": nn.Linear(3, 2), "modelB": nn.Linear(2, 1)})
    with pytest.warns(UserWarning, match="modelB"):
        load_checkpoint(tmp_path / "ck", {"modelA": nn.Linear(3, 2), "modelB": nn.Linear(2, 1)}, strict=False)
    with pytest.raises(CheckpointError, match="'modelA' does not fit"):
        load_checkpoint(tmp_path / "ck", {"modelA": nn.Linear(4, 2)})
    with pytest.raises(CheckpointError, match="cannot name"):
        save_checkpoint(tmp_path / "bad", {"../x": nn.Linear(1, 1)})
