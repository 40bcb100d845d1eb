"""What the logger tests share: a refresh after every step, a small classifier and its data."""

import torch
from torch import nn

import ember
from ember.callbacks import Callback

N, BATCH = 64, 16  # 4 steps per epoch
DATA = (torch.randn(N, 4, generator=torch.Generator().manual_seed(0)), torch.arange(N) % 2)


class EveryStepRefresh(Callback):
    """Refresh the running values after every step, as a fast progress bar would."""

    refresh_interval = 0.0


def make_model():
    """A 4 -> 8 -> 2 classifier with SGD(lr=0.1) and accuracy, from a fixed seed."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    return ember.Model(net).compile(nn.CrossEntropyLoss(), optimizer, metrics=["accuracy"], device="cpu")
