"""Optimizers made ready for CUDA graphs, written portably, and put back."""

import torch

from ember.optim import GraphReady


def _adam():
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([param], lr=0.01)
    param.grad = torch.ones(3)
    optimizer.step()
    return optimizer


def test_learning_rates_become_exact_tensors_that_schedulers_fill():
    optimizer = _adam()
    GraphReady(optimizer, torch.device("cpu"))
    lr = optimizer.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and lr.dtype == torch.float64 and float(lr) == 0.01
    assert optimizer.param_groups[0]["capturable"] is False  # capturable only on CUDA
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] is lr and float(lr) == 0.005  # filled in place


def test_state_dict_and_release_give_back_the_users_optimizer():
    optimizer = _adam()
    ready = GraphReady(optimizer, torch.device("cpu"))
    optimizer.param_groups[0]["capturable"] = True  # as on CUDA
    state = ready.state_dict()
    assert state["param_groups"][0]["lr"] == 0.01 and state["param_groups"][0]["capturable"] is False
    assert isinstance(optimizer.param_groups[0]["lr"], torch.Tensor)  # the live optimizer is untouched
    ready.release()
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.01 and isinstance(group["lr"], float) and group["capturable"] is False
    assert next(iter(optimizer.state.values()))["step"].device.type == "cpu"


def test_a_tensor_learning_rate_the_user_chose_stays_a_tensor():
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([param], lr=torch.tensor(0.1))
    ready = GraphReady(optimizer, torch.device("cpu"))
    assert isinstance(ready.state_dict()["param_groups"][0]["lr"], torch.Tensor)
    ready.release()
    assert isinstance(optimizer.param_groups[0]["lr"], torch.Tensor)
