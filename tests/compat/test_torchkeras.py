"""The tutorial's class-style code, run unchanged apart from the import."""

import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ember.compat import torchkeras
from ember.errors import ConfigError
from tests.test_summary import LSTM_TABLE, LstmNet


class CnnModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(
            [
                nn.Conv2d(in_channels=3, out_channels=8, kernel_size=3),
                nn.MaxPool2d(kernel_size=2, stride=2),
                nn.AdaptiveMaxPool2d((1, 1)),
                nn.Flatten(),
                nn.Linear(8, 2),
            ]
        )

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def accuracy(y_pred, y_true):
    y_pred_cls = torch.argmax(nn.Softmax(dim=1)(y_pred), dim=1).data
    return accuracy_score(y_true.numpy(), y_pred_cls.numpy())


def _images(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.rand(n, 3, 12, 12, generator=g) + y.view(-1, 1, 1, 1) * 0.8
    return x, y


@pytest.fixture
def loaders():
    x, y = _images()
    return DataLoader(TensorDataset(x[:90], y[:90]), batch_size=10), DataLoader(
        TensorDataset(x[90:], y[90:]), batch_size=10
    )


def test_tutorial_class_style_snippet(loaders, capsys):
    dl_train, dl_valid = loaders
    torch.manual_seed(0)
    model = torchkeras.Model(CnnModel())
    model.compile(
        loss_func=nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam(model.parameters(), lr=0.02),
        metrics_dict={"accuracy": accuracy},
    )
    dfhistory = model.fit(3, dl_train=dl_train, dl_val=dl_valid, log_step_freq=3)
    out = capsys.readouterr().out
    assert list(dfhistory.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert isinstance(dfhistory, pd.DataFrame) and dfhistory["epoch"].tolist() == [1, 2, 3]
    assert out.count("{'step': 3, 'loss': ") == 3 and "{'step': 9, " in out and "'step': 4," not in out
    assert "| epoch |" in out and "Finished Training" in out
    assert dfhistory["val_accuracy"].iloc[-1] > 0.9
    result = model.evaluate(dl_valid)
    assert list(result) == ["val_loss", "val_accuracy"]
    assert result["val_loss"] == pytest.approx(dfhistory["val_loss"].iloc[-1])
    assert model.predict(dl_valid).shape == (30, 2)
    assert sorted(model.state_dict())[0].startswith("net.")


def test_save_and_reload_state_dict_gives_the_same_numbers(loaders, tmp_path):
    dl_train, dl_valid = loaders
    model = torchkeras.Model(CnnModel())
    model.compile(loss_func=nn.CrossEntropyLoss(), metrics_dict={"accuracy": accuracy})
    model.fit(2, dl_train, dl_val=dl_valid, log_step_freq=100)
    torch.save(model.state_dict(), tmp_path / "model_parameter.pt")
    clone = torchkeras.Model(CnnModel())
    clone.load_state_dict(torch.load(tmp_path / "model_parameter.pt"))
    clone.compile(loss_func=nn.CrossEntropyLoss(), metrics_dict={"accuracy": accuracy})
    assert clone.evaluate(dl_valid) == pytest.approx(model.evaluate(dl_valid))


class Net(torchkeras.Model):
    """Subclass style, with an embedding fed integer ids (the tutorial series' text model)."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(50, 3, padding_idx=1)
        self.flatten = nn.Flatten()
        self.dense = nn.Linear(3 * 200, 1)

    def forward(self, x):
        return torch.sigmoid(self.dense(self.flatten(self.embedding(x))))


def test_subclass_style_summary_and_fit_without_validation(capsys):
    net = Net()
    assert net.summary(input_shape=(200,), input_dtype=torch.LongTensor) is None
    out = capsys.readouterr().out
    assert "Input size (MB): 0.000763" in out
    assert "Embedding-1               [-1, 200, 3]             150" in out
    assert sorted(net.state_dict()) == ["dense.bias", "dense.weight", "embedding.weight"]
    x = torch.randint(0, 50, (64, 200))
    y = (x[:, 0] > 25).float().unsqueeze(1)

    def bce(y_pred, y_true):
        return nn.functional.binary_cross_entropy(y_pred, y_true)

    net.compile(loss_func=bce)
    history = net.fit(2, DataLoader(TensorDataset(x, y), batch_size=16), log_step_freq=10)
    assert list(history.columns) == ["epoch", "loss"]


def test_summary_of_a_small_regression_net(capsys):
    model = torchkeras.Model(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)))
    assert model.summary(input_shape=(8, 3)) is None
    out = capsys.readouterr().out
    assert "Linear-1                 [-1, 8, 4]              16" in out and "Total params: 21" in out


def test_summary_prints_the_series_table_once_and_returns_none(capsys):
    """The series' LSTM example: in a notebook the cell shows the table once, nothing after it."""
    model = torchkeras.Model(LstmNet())
    assert model.summary(input_shape=(8, 3), input_dtype=torch.FloatTensor) is None
    assert capsys.readouterr().out == LSTM_TABLE + "\n"
    assert torchkeras.summary(LstmNet(), input_shape=(8, 3)) is None
    assert capsys.readouterr().out == LSTM_TABLE + "\n"


def mae(y_pred, y_true):
    return torch.mean(torch.abs(y_pred - y_true))


def third(y_pred, y_true):
    return mae(y_pred, y_true) / 3


def test_step_log_is_the_legacy_dict_of_rounded_running_means(capsys):
    """Zero weights and lr=0: every batch's loss and metrics are known exactly."""
    net = nn.Linear(1, 1)
    nn.init.zeros_(net.weight)
    nn.init.zeros_(net.bias)
    model = torchkeras.Model(net)
    model.compile(
        loss_func=nn.MSELoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
        metrics_dict={"mae": mae, "third": third},
    )
    x, y = torch.zeros(6, 1), torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0], [6.0]])
    model.fit(2, DataLoader(TensorDataset(x, y), batch_size=2), log_step_freq=2)
    steps = [line for line in capsys.readouterr().out.splitlines() if "step" in line]
    # step 2: loss (1+4+9+16)/4, mae (1+2+3+4)/4; 2.5 / 3 rounded to 3 places
    assert steps == ["{'step': 2, 'loss': 7.5, 'mae': 2.5, 'third': 0.833}"] * 2


def test_predict_accepts_one_tuples_and_pairs():
    model = torchkeras.Model(nn.Linear(4, 2))
    x = torch.randn(10, 4)
    expected = model.net(x).detach()
    assert torch.allclose(model.predict(DataLoader(TensorDataset(x), batch_size=3)), expected)
    pairs = DataLoader(TensorDataset(x, torch.zeros(10)), batch_size=4)
    assert torch.allclose(model.predict(pairs), expected)


def test_data_parallel_net_trains_and_saves(loaders):
    dl_train, dl_valid = loaders
    model = torchkeras.Model(nn.DataParallel(CnnModel()))
    model.compile(
        loss_func=nn.CrossEntropyLoss(),
        metrics_dict={"accuracy": accuracy},
        device=torch.device("cuda:0" if torch.cuda.is_available() else "cpu"),
    )
    model.fit(1, dl_train, dl_val=dl_valid)
    keys = sorted(model.net.module.state_dict())
    assert keys[0] == "layers.0.bias"
    assert sorted(model.state_dict())[0] == "net.module.layers.0.bias"


def test_fit_before_compile_is_explained(loaders):
    with pytest.raises(Exception, match="compile"):
        torchkeras.Model(CnnModel()).fit(1, loaders[0])


def test_a_clone_compiled_with_the_originals_optimizer_evaluates(loaders):
    dl_train, dl_valid = loaders
    model = torchkeras.Model(CnnModel())
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    model.compile(loss_func=nn.CrossEntropyLoss(), optimizer=optimizer, metrics_dict={"accuracy": accuracy})
    model.fit(1, dl_train, log_step_freq=100)
    clone = torchkeras.Model(CnnModel())
    clone.load_state_dict(model.state_dict())
    clone.compile(loss_func=nn.CrossEntropyLoss(), optimizer=optimizer, metrics_dict={"accuracy": accuracy})
    assert clone.evaluate(dl_valid) == pytest.approx(model.evaluate(dl_valid))
    assert torch.equal(clone.predict(dl_valid), model.predict(dl_valid))
    with pytest.raises(ConfigError, match="the optimizer holds none of this model's parameters"):
        clone.fit(1, dl_train)
