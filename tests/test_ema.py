"""WeightAverage: hand-computed averages, swaps that restore bitwise, exact resume, no host reads."""

import copy

import pytest
import torch
from torch import nn

from ember.checkpoint import load_checkpoint, save_checkpoint
from ember.ema import WeightAverage
from ember.errors import CheckpointError, ConfigError
from tests.host_ops import HostOps


def _linear() -> nn.Linear:
    """Linear(2, 1) with weight [[1, 2]] and bias [0.5]: dyadic values, so every step below is exact."""
    net = nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 2.0]]))
        net.bias.copy_(torch.tensor([0.5]))
    return net


def _sgd_step(net: nn.Linear, optimizer: torch.optim.Optimizer) -> None:
    """One SGD step with the known gradients d(weight) = [[1, -2]], d(bias) = [4]."""
    net.weight.grad = torch.tensor([[1.0, -2.0]])
    net.bias.grad = torch.tensor([4.0])
    optimizer.step()


def _trained(decay: float = 0.75, steps: int = 3, warmup: bool = False):
    net = _linear()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    average = WeightAverage(net, decay=decay, warmup=warmup)
    for _ in range(steps):
        _sgd_step(net, optimizer)
        average.update()
    return net, optimizer, average


def test_three_updates_give_the_hand_computed_average():
    # weights: [1, 2] -> [0.5, 3] -> [0, 4] -> [-0.5, 5]; bias: 0.5 -> -1.5 -> -3.5 -> -5.5
    # a_t = 0.75 a_(t-1) + 0.25 p_t: weight [0.875, 2.25], [0.65625, 2.6875], [0.3671875, 3.265625]
    #                                 bias   0.0,          -0.875,              -2.03125
    net, _, average = _trained()
    state = average.state_dict()
    assert torch.equal(state["average"]["weight"], torch.tensor([[0.3671875, 3.265625]]))
    assert torch.equal(state["average"]["bias"], torch.tensor([-2.03125]))
    assert torch.equal(net.weight.detach(), torch.tensor([[-0.5, 5.0]]))  # the net itself untouched
    assert int(average.updates) == 3 and average.updates.dtype == torch.int64


def test_swapped_lends_the_average_and_restores_the_weights_bitwise():
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    average = WeightAverage(net, decay=0.9)
    for _ in range(5):
        net(torch.randn(4, 3)).square().sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        average.update()
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    addresses = [p.data_ptr() for p in net.parameters()]
    averaged = {name: t.clone() for name, t in average.state_dict()["average"].items()}
    with average.swapped() as lent:
        assert lent is net
        assert all(torch.equal(p, averaged[name]) for name, p in net.named_parameters())
        assert [p.data_ptr() for p in net.parameters()] == addresses  # values copied, not pointers
        inside = average.state_dict()["average"]
        assert all(torch.equal(inside[name], averaged[name]) for name in averaged)
    assert all(torch.equal(p, before[name]) for name, p in net.named_parameters())
    assert not torch.equal(averaged["weight"], before["weight"])


def test_validation_inside_swapped_uses_the_average():
    net, _, average = _trained()
    x = torch.tensor([[1.0, 1.0]])
    with average.swapped(), torch.no_grad():
        inside = net(x)
    assert torch.equal(inside, torch.tensor([[0.3671875 + 3.265625 - 2.03125]]))
    assert torch.equal(net(x).detach(), torch.tensor([[-0.5 + 5.0 - 5.5]]))


def test_copy_to_swaps_the_average_in_for_good():
    net, _, average = _trained()
    average.copy_to()
    assert torch.equal(net.weight.detach(), torch.tensor([[0.3671875, 3.265625]]))
    assert torch.equal(net.bias.detach(), torch.tensor([-2.03125]))


def test_copy_to_another_net_gives_the_complete_averaged_model():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    average = WeightAverage(net, decay=0.5)
    with torch.no_grad():
        net[0].weight.fill_(3.0)
    net(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))  # moves the running statistics
    average.update()
    other = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)).double()
    average.copy_to(other)
    assert torch.equal(other[0].weight.detach(), torch.full((2, 2), 2.0, dtype=torch.float64))
    assert torch.equal(other[1].running_mean, net[1].running_mean.double())
    assert int(other[1].num_batches_tracked) == 1
    with pytest.raises(
        ConfigError, match=r"(?s)does not fit the averaged Sequential.*size mismatch for 1\.weight"
    ):
        average.copy_to(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)))


def test_tied_parameters_are_averaged_once_and_copied_under_every_name():
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encode = nn.Linear(2, 2, bias=False)
            self.decode = nn.Linear(2, 2, bias=False)
            self.decode.weight = self.encode.weight

    net = Tied()
    average = WeightAverage(net, decay=0.5)
    assert list(average.state_dict()["average"]) == ["encode.weight"]
    with torch.no_grad():
        net.encode.weight.fill_(4.0)
    average.update()
    other = Tied()
    average.copy_to(other)
    halfway = average.state_dict()["average"]["encode.weight"]
    assert torch.equal(other.encode.weight.detach(), halfway)
    assert torch.equal(other.decode.weight.detach(), halfway)


def test_batchnorm_statistics_are_the_nets_own_not_averaged():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    average = WeightAverage(net, decay=0.9)
    for step in range(3):
        net(torch.tensor([[1.0, 2.0], [3.0, 4.0 + step]])).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        average.update()
    mean, var = net[1].running_mean.clone(), net[1].running_var.clone()
    assert set(average.state_dict()["average"]) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    with average.swapped():
        assert torch.equal(net[1].running_mean, mean) and torch.equal(net[1].running_var, var)
        assert int(net[1].num_batches_tracked) == 3
    assert int(net[1].num_batches_tracked) == 3


def test_frozen_parameters_are_not_averaged():
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    net[0].requires_grad_(False)
    average = WeightAverage(net, decay=0.5)
    assert list(average.state_dict()["average"]) == ["1.weight", "1.bias"]
    with torch.no_grad():
        net[0].weight.fill_(3.0)
        net[1].weight.fill_(3.0)
    average.update()
    with average.swapped():
        assert torch.equal(net[0].weight, torch.full((2, 2), 3.0))  # the net's own value
        assert not torch.equal(net[1].weight, torch.full((1, 2), 3.0))  # averaged


def test_float64_and_float32_parameters_are_averaged_in_their_own_dtype():
    net = nn.Sequential(nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False).double())
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[1].weight.fill_(1.0)
    average = WeightAverage(net, decay=0.9)
    with torch.no_grad():
        net[0].weight.fill_(2.0)
        net[1].weight.fill_(2.0)
    average.update()
    averages = average.state_dict()["average"]
    assert averages["0.weight"].dtype == torch.float32 and averages["1.weight"].dtype == torch.float64
    # lerp(1, 2, 1 - 0.9) rounds 0.1 to each dtype: the float32 and float64 values differ.
    assert averages["0.weight"].item() == torch.tensor(1.0).lerp(torch.tensor(2.0), 1 - 0.9).item()
    assert averages["1.weight"].item() == 1.0 + (1 - 0.9) * (2.0 - 1.0)
    assert averages["0.weight"].item() != averages["1.weight"].item()


def test_warmup_ramps_the_decay_from_one_tenth():
    # update t uses d = min(0.75, (1 + t) / (10 + t)) in float32: 0.1, 2/11, 0.25, ... 0.75 from t = 26.
    _, _, average = _trained(warmup=True, steps=1)
    weight, param = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, 3.0]])
    expected = (weight - param) * torch.tensor(0.1, dtype=torch.float32) + param
    assert torch.equal(average.state_dict()["average"]["weight"], expected)
    net, optimizer, average = _trained(warmup=True, steps=27)
    before = average.state_dict()["average"]["bias"].clone()
    _sgd_step(net, optimizer)
    average.update()  # t = 27: the full decay
    after = (before - net.bias.detach()) * 0.75 + net.bias.detach()
    assert torch.equal(average.state_dict()["average"]["bias"], after)
    assert int(average.updates) == 28


@pytest.mark.parametrize("warmup", [False, True])
def test_state_dict_round_trip_is_bitwise_and_resumed_updates_continue_identically(warmup, tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    average = WeightAverage(net, decay=0.99, warmup=warmup)
    batches = [torch.randn(5, 3) for _ in range(6)]

    def train(net, optimizer, average, xs):
        for x in xs:
            net(x).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()
            average.update()

    train(net, optimizer, average, batches[:3])
    save_checkpoint(tmp_path / "ckpt", {"net": net, "optimizer": optimizer, "ema": average})
    train(net, optimizer, average, batches[3:])

    resumed_net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    resumed_optimizer = torch.optim.SGD(resumed_net.parameters(), lr=0.1)
    resumed = WeightAverage(resumed_net, decay=0.99, warmup=warmup)
    objects = {"net": resumed_net, "optimizer": resumed_optimizer, "ema": resumed}
    load_checkpoint(tmp_path / "ckpt", objects)
    assert int(resumed.updates) == 3
    train(resumed_net, resumed_optimizer, resumed, batches[3:])
    ours, theirs = average.state_dict(), resumed.state_dict()
    assert all(torch.equal(ours["average"][k], theirs["average"][k]) for k in ours["average"])
    assert int(theirs["updates"]) == 6


def test_load_keeps_the_tensors_and_their_addresses():
    _, _, average = _trained()
    state = copy.deepcopy(average.state_dict())
    _, _, fresh = _trained(steps=1)
    addresses = [t.data_ptr() for t in fresh.state_dict()["average"].values()]
    fresh.load_state_dict(state)
    assert [t.data_ptr() for t in fresh.state_dict()["average"].values()] == addresses
    assert torch.equal(fresh.state_dict()["average"]["weight"], torch.tensor([[0.3671875, 3.265625]]))
    assert int(fresh.updates) == 3


def test_a_state_of_another_net_is_refused_naming_the_key():
    _, _, average = _trained()
    state = copy.deepcopy(average.state_dict())
    other = WeightAverage(nn.Linear(3, 1), decay=0.75)
    with pytest.raises(CheckpointError, match=r"'weight' has shape \(1, 2\).*shape \(1, 3\)"):
        other.load_state_dict(state)
    renamed = dict(state, average={"w": state["average"]["weight"], "bias": state["average"]["bias"]})
    with pytest.raises(CheckpointError, match=r"missing keys \['weight'\], unexpected keys \['w'\]"):
        average.load_state_dict(renamed)
    with pytest.raises(CheckpointError, match="no 'updates'"):
        average.load_state_dict({k: v for k, v in state.items() if k != "updates"})
    with pytest.raises(ConfigError, match=r"decay=0.75, this one decay=0.5"):
        WeightAverage(_linear(), decay=0.5).load_state_dict(state)


@pytest.mark.parametrize("decay", [0, 1, 1.5, -0.1, float("nan"), True, "0.9", None])
def test_decay_outside_zero_one_is_refused_naming_the_value(decay):
    with pytest.raises(ConfigError, match=rf"decay must be a number in \(0, 1\).*got {decay!r}"):
        WeightAverage(_linear(), decay=decay)


def test_bad_nets_are_refused():
    with pytest.raises(ConfigError, match="no trainable parameters"):
        WeightAverage(nn.Linear(2, 1).requires_grad_(False))
    with pytest.raises(ConfigError, match="is the class"):
        WeightAverage(nn.Linear)
    with pytest.raises(ConfigError, match="must be an nn.Module, got dict"):
        WeightAverage({})


def test_calls_inside_swapped_are_refused():
    _, _, average = _trained()
    with average.swapped():
        for call in (average.update, average.copy_to, lambda: average.swapped().__enter__()):
            with pytest.raises(ConfigError, match=r"inside swapped\(\)"):
                call()
    assert torch.equal(average.state_dict()["average"]["bias"], torch.tensor([-2.03125]))


@pytest.mark.parametrize("warmup", [False, True])
def test_update_reads_nothing_on_the_host(warmup, monkeypatch):
    net, optimizer, average = _trained(warmup=warmup, steps=1)
    _sgd_step(net, optimizer)

    def refuse(*args, **kwargs):
        raise AssertionError("host read")

    monkeypatch.setattr(torch.Tensor, "item", refuse)
    monkeypatch.setattr(torch.Tensor, "tolist", refuse)
    with HostOps() as seen:
        average.update()
    assert seen.ops == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("warmup", [False, True])
def test_update_captured_in_a_cuda_graph_matches_eager(warmup):
    torch.manual_seed(0)
    net = nn.Linear(8, 4).cuda()
    eager_net = copy.deepcopy(net)
    captured, eager = WeightAverage(net, 0.9, warmup), WeightAverage(eager_net, 0.9, warmup)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        captured.update()  # warm-up call on a side stream, as before any capture
        eager.update()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured.update()
    for step in range(4):
        with torch.no_grad():
            net.weight.add_(step)
            eager_net.weight.add_(step)
        graph.replay()
        eager.update()
    torch.cuda.synchronize()
    assert torch.equal(captured.state_dict()["average"]["weight"], eager.state_dict()["average"]["weight"])
    assert int(captured.updates) == int(eager.updates) == 5
