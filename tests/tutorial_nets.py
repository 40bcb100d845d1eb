"""The tutorial's Net built the five ways of its chapter 2 (same layers, same parameters)."""

from collections import OrderedDict

from torch import nn


def _layers():
    return [
        ("conv1", nn.Conv2d(3, 32, kernel_size=3)),
        ("pool1", nn.MaxPool2d(2, 2)),
        ("conv2", nn.Conv2d(32, 64, kernel_size=5)),
        ("pool2", nn.MaxPool2d(2, 2)),
        ("dropout", nn.Dropout2d(p=0.1)),
        ("adaptive_pool", nn.AdaptiveMaxPool2d((1, 1))),
        ("flatten", nn.Flatten()),
        ("linear1", nn.Linear(64, 32)),
        ("relu", nn.ReLU()),
        ("linear2", nn.Linear(32, 1)),
        ("sigmoid", nn.Sigmoid()),
    ]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        for name, layer in _layers():
            setattr(self, name, layer)

    def forward(self, x):
        for layer in self.children():
            x = layer(x)
        return x


def sequential():
    return nn.Sequential(*[layer for _, layer in _layers()])


def ordered_dict():
    return nn.Sequential(OrderedDict(_layers()))


class ListNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([layer for _, layer in _layers()])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class DictNet(nn.Module):
    """As in the tutorial: one `pool` module used twice."""

    def __init__(self):
        super().__init__()
        layers = dict(_layers())
        self.layers_dict = nn.ModuleDict(
            {
                "conv1": layers["conv1"],
                "pool": layers["pool1"],
                "conv2": layers["conv2"],
                "dropout": layers["dropout"],
                "adaptive": layers["adaptive_pool"],
                "flatten": layers["flatten"],
                "linear1": layers["linear1"],
                "relu": layers["relu"],
                "linear2": layers["linear2"],
                "sigmoid": layers["sigmoid"],
            }
        )

    def forward(self, x):
        for name in [
            "conv1",
            "pool",
            "conv2",
            "pool",
            "dropout",
            "adaptive",
            "flatten",
            "linear1",
            "relu",
            "linear2",
            "sigmoid",
        ]:
            x = self.layers_dict[name](x)
        return x


ALL = {
    "module": Net,
    "sequential": sequential,
    "ordered_dict": ordered_dict,
    "module_list": ListNet,
    "module_dict": DictNet,
}
