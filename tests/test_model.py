import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.errors import ConfigError, DataError, NonFiniteLossError, ShapeError
from tests.conftest import mlp


def _compiled(net=None, **kwargs):
    net = net or mlp()
    kwargs.setdefault("loss", nn.CrossEntropyLoss())
    kwargs.setdefault("optimizer", torch.optim.Adam(net.parameters(), lr=0.01))
    kwargs.setdefault("device", "cpu")
    return ember.Model(net).compile(**kwargs)


def test_fit_learns_and_history_has_the_documented_columns(blobs):
    x, y = blobs
    model = _compiled(metrics=["accuracy"])
    history = model.fit((x, y), epochs=5, validation_data=(x[:60], y[:60]), verbose=0)
    assert list(history.columns) == [
        "epoch",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "lr",
        "seconds",
    ]
    assert history["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert history["accuracy"].iloc[-1] > 0.9
    assert history["lr"].tolist() == [0.01] * 5


def test_default_optimizer_is_adam_1e_3():
    model = ember.Model(mlp()).compile(loss=nn.CrossEntropyLoss(), device="cpu")
    assert isinstance(model.optimizer, torch.optim.Adam)
    assert model.optimizer.param_groups[0]["lr"] == 1e-3
    assert model.device == torch.device("cpu")


def test_epoch_loss_is_exactly_sample_weighted(blobs):
    """With lr=0 the weights never change, so the epoch loss must equal the full-data loss."""
    x, y = blobs
    net = mlp()
    model = _compiled(net, optimizer=torch.optim.SGD(net.parameters(), lr=0.0), metrics=["accuracy"])
    history = model.fit((x, y), epochs=1, batch_size=64, verbose=0)  # 300 = 4 x 64 + 44
    with torch.no_grad():
        out = net(x)
        full_loss = nn.functional.cross_entropy(out, y).item()
        full_acc = (out.argmax(1) == y).double().mean().item()
    assert history["loss"].iloc[0] == pytest.approx(full_loss, abs=1e-6)
    assert history["accuracy"].iloc[0] == pytest.approx(full_acc, abs=1e-12)


def test_fit_again_continues_epochs_and_appends_rows(blobs):
    model = _compiled()
    model.fit(blobs, epochs=2, verbose=0)
    history = model.fit(blobs, epochs=1, verbose=0)
    assert history["epoch"].tolist() == [1, 2, 3]
    assert model.state.step == 3 * 10  # 300 samples / 32 -> 10 steps per epoch


def test_evaluate_and_predict(blobs):
    x, y = blobs
    model = _compiled(metrics=["accuracy"])
    model.fit((x, y), epochs=3, verbose=0)
    result = model.evaluate((x, y), batch_size=7)
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model.net(x), y).item()
    assert set(result) == {"loss", "accuracy"}
    assert result["loss"] == pytest.approx(expected, abs=1e-6)
    preds = model.predict(x, batch_size=50)
    assert preds.shape == (300, 3) and preds.device.type == "cpu"
    assert torch.allclose(preds, model.net(x).detach())
    assert model.net.training  # predict and evaluate put the mode back (fit left it training)
    model.net.eval()
    model.predict(x[:4])
    model.evaluate((x[:4], y[:4]))
    assert not model.net.training


def test_accepts_dataloader_dataset_numpy_and_pandas(blobs):
    x, y = blobs
    model = _compiled()
    model.fit(DataLoader(TensorDataset(x, y), batch_size=30), epochs=1, verbose=0)
    model.fit(TensorDataset(x, y), batch_size=30, epochs=1, verbose=0)
    model.fit((x.numpy().astype(np.float64), y.numpy()), epochs=1, verbose=0)
    model.fit((pd.DataFrame(x.numpy()), pd.Series(y.numpy())), epochs=1, verbose=0)
    assert len(model.history) == 4


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(2, 3)

    def forward(self, left, right):
        return self.a(left) + self.b(right)


def test_tuple_inputs_are_positional_and_dict_inputs_are_keywords(blobs):
    x, y = blobs
    extra = torch.randn(len(x), 2)
    model = _compiled(TwoInputs())
    model.fit(DataLoader(TensorDataset(x, extra, y), batch_size=50), epochs=1, verbose=0)
    batches = [
        ({"left": x[i : i + 50], "right": extra[i : i + 50]}, y[i : i + 50]) for i in range(0, 300, 50)
    ]
    history = model.fit(batches, epochs=1, verbose=0)
    assert len(history) == 2
    assert model.predict([({"left": x[:5], "right": extra[:5]},)]).shape == (5, 3)


def test_fit_before_compile_is_explained(blobs):
    with pytest.raises(ConfigError, match="compile"):
        ember.Model(mlp()).fit(blobs, verbose=0)


def test_not_a_module():
    with pytest.raises(ConfigError, match="nn.Module, got function"):
        ember.Model(lambda x: x)


def test_elementwise_loss_shape_mismatch_names_shapes_and_loss():
    net = nn.Linear(3, 1)
    model = _compiled(net, loss=nn.MSELoss())
    with pytest.raises(ShapeError, match=r"MSELoss.*\(32, 1\).*\(32,\)") as info:
        model.fit((torch.randn(64, 3), torch.randn(64)), verbose=0)
    assert isinstance(info.value, ValueError)


def test_float_labels_for_cross_entropy_are_explained(blobs):
    x, y = blobs
    with pytest.raises(DataError, match=r"CrossEntropyLoss needs integer class labels.*y.long\(\)"):
        _compiled().fit((x, y.float()), verbose=0)


def test_label_out_of_range_is_explained(blobs):
    x, y = blobs
    y = y.clone()
    y[100] = 7  # appears in a later batch, not the first
    with pytest.raises(DataError, match=r"labels must lie in \[0, 3\).*7"):
        _compiled().fit((x, y), shuffle=False, verbose=0)


def test_empty_data_and_unknown_metric(blobs):
    with pytest.raises(DataError, match="0 samples"):
        _compiled().fit((torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)), verbose=0)
    with pytest.raises(DataError, match="empty list"):
        _compiled().fit([], verbose=0)
    with pytest.raises(DataError, match="no batches in epoch 1"):
        _compiled().fit(iter(()), verbose=0)
    with pytest.raises(ConfigError, match="unknown metric 'acuracy'"):
        _compiled(metrics=["acuracy"])


def test_non_finite_loss_names_epoch_and_step(blobs):
    x, y = blobs
    x = x.clone()
    x[5 * 32 + 3] = float("nan")  # sample in batch 6 of epoch 2 when not shuffled
    model = _compiled()
    model.fit((x[: 32 * 5], y[: 32 * 5]), shuffle=False, epochs=1, verbose=0)  # 5 clean steps
    with pytest.raises(NonFiniteLossError, match="epoch 2, step 11 .batch 6 of the epoch") as info:
        model.fit((x, y), shuffle=False, epochs=1, verbose=0)
    assert (info.value.epoch, info.value.step) == (2, 11)


def test_step_scheduler_and_epoch_scheduler(blobs):
    net = mlp()
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    model = _compiled(
        net,
        optimizer=opt,
        scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 1, 0.5),
        scheduler_interval="step",
    )
    model.fit(blobs, epochs=1, verbose=0)  # 10 steps
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5**10)
    net = mlp()
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    model = _compiled(net, optimizer=opt, scheduler=torch.optim.lr_scheduler.StepLR(opt, 1, 0.1))
    history = model.fit(blobs, epochs=3, verbose=0)
    assert history["lr"].tolist() == pytest.approx([1.0, 0.1, 0.01])


def test_reduce_on_plateau_steps_on_val_loss(blobs):
    net = mlp()
    opt = torch.optim.SGD(net.parameters(), lr=0.0)  # no learning: val_loss never improves
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    opt.param_groups[0]["lr"] = 0.0
    model = _compiled(net, optimizer=opt, scheduler=plateau)
    model.fit(blobs, validation_data=blobs, epochs=3, verbose=0)
    assert plateau.best == pytest.approx(model.history["val_loss"].iloc[0])


def test_grad_clip_bounds_the_update():
    net = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(net.weight)
    model = _compiled(
        net, loss=nn.MSELoss(), optimizer=torch.optim.SGD(net.parameters(), lr=1.0), grad_clip=0.5
    )
    model.fit((torch.ones(1, 1), torch.full((1, 1), 100.0)), epochs=1, verbose=0)
    assert net.weight.item() == pytest.approx(0.5)  # gradient -200 clipped to norm 0.5


def test_bf16_precision_trains_on_cpu(blobs):
    model = _compiled(precision="bf16", metrics=["accuracy"])
    history = model.fit(blobs, epochs=3, verbose=0)
    assert history["accuracy"].iloc[-1] > 0.8


def test_fp16_precision_uses_a_grad_scaler(blobs):
    model = _compiled(precision="16", metrics=["accuracy"])
    history = model.fit(blobs, epochs=3, verbose=0)
    assert isinstance(model.scaler, torch.amp.GradScaler)
    assert model.scaler.get_scale() == 65536.0  # no overflow on this data: the initial scale
    assert history["accuracy"].iloc[-1] > 0.8


def test_optimizer_for_another_model_is_refused_by_fit_not_by_evaluate(blobs):
    other = nn.Linear(2, 2)
    model = _compiled(optimizer=torch.optim.SGD(other.parameters(), lr=0.1), metrics=["accuracy"])
    evaluated = model.evaluate(blobs)  # the legacy series evaluates a clone compiled this way
    assert set(evaluated) == {"loss", "accuracy"}
    assert model.predict(blobs[0]).shape == (len(blobs[0]), 3)
    before = [p.clone() for p in model.net.parameters()]
    with pytest.raises(ConfigError, match="none of this model's parameters"):
        model.fit(blobs, verbose=0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.net.parameters(), strict=True))


def test_binary_accuracy_follows_the_loss(blobs):
    x, y = blobs
    target = (y == 0).float().unsqueeze(1)
    model = _compiled(mlp(4, 1), loss=nn.BCEWithLogitsLoss(), metrics=["accuracy"])
    assert model.metrics[0].from_logits is True
    history = model.fit((x, target), epochs=5, verbose=0)
    assert history["accuracy"].iloc[-1] > 0.9
