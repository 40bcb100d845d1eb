"""The tutorial's class-style snippet on the real CIFAR-2 images: > 85% test accuracy in 3 epochs."""

import torch
from sklearn.metrics import accuracy_score
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from ember.compat import torchkeras
from ember.demo import CnnModel
from tests.conftest import shared_data


def accuracy(y_pred, y_true):
    y_pred_cls = torch.argmax(nn.Softmax(dim=1)(y_pred), dim=1).data
    return accuracy_score(y_true.numpy(), y_pred_cls.numpy())


def test_class_style_reaches_85_percent_on_cifar2():
    root = shared_data("cifar2")
    torch.manual_seed(0)
    transform = transforms.Compose([transforms.ToTensor()])
    ds_train = datasets.ImageFolder(str(root / "train"), transform=transform)
    ds_valid = datasets.ImageFolder(str(root / "test"), transform=transform)
    assert ds_train.class_to_idx == {"0_airplane": 0, "1_automobile": 1}
    dl_train = DataLoader(ds_train, batch_size=50, shuffle=True, num_workers=2)
    dl_valid = DataLoader(ds_valid, batch_size=50, num_workers=2)

    model = torchkeras.Model(CnnModel(in_channels=3, num_classes=2))
    model.compile(
        loss_func=nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
        metrics_dict={"accuracy": accuracy},
    )
    dfhistory = model.fit(3, dl_train=dl_train, dl_val=dl_valid, log_step_freq=100)
    assert len(dfhistory) == 3
    assert dfhistory["val_accuracy"].iloc[-1] > 0.85
    result = model.evaluate(dl_valid)
    assert result["val_accuracy"] > 0.85
