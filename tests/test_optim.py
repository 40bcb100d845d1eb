"""Optimizers made ready for CUDA graphs, written portably, and put back."""

import torch

from ember.optim import GraphReady, takes_tensor_lr


def _adam():
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([param], lr=0.01)
    param.grad = torch.ones(3)
    optimizer.step()
    return optimizer


def test_learning_rates_become_exact_tensors_that_schedulers_fill():
    optimizer = _adam()
    GraphReady(optimizer, torch.device("cpu"), tensor_lr=True)
    lr = optimizer.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and lr.dtype == torch.float64 and float(lr) == 0.01
    assert optimizer.param_groups[0]["capturable"] is False  # capturable only on CUDA
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] is lr and float(lr) == 0.005  # filled in place


def test_state_dict_and_release_give_back_the_users_optimizer():
    optimizer = _adam()
    ready = GraphReady(optimizer, torch.device("cpu"), tensor_lr=True)
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
    ready = GraphReady(optimizer, torch.device("cpu"), tensor_lr=True)
    assert isinstance(ready.state_dict()["param_groups"][0]["lr"], torch.Tensor)
    ready.release()
    assert isinstance(optimizer.param_groups[0]["lr"], torch.Tensor)


def test_without_a_scheduler_learning_rates_stay_floats():
    optimizer = _adam()
    ready = GraphReady(optimizer, torch.device("cpu"), tensor_lr=False)
    assert optimizer.param_groups[0]["lr"] == 0.01 and isinstance(optimizer.param_groups[0]["lr"], float)
    ready.release()
    assert optimizer.param_groups[0]["lr"] == 0.01


def test_which_optimizers_take_tensor_learning_rates():
    params = [torch.nn.Parameter(torch.ones(2))]
    assert takes_tensor_lr(torch.optim.AdamW(params)) and takes_tensor_lr(torch.optim.SGD(params, lr=0.1))
    assert not takes_tensor_lr(torch.optim.LBFGS(params))
