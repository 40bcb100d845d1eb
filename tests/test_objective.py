"""Objective end to end: sample weights, class weights, several outputs and the EMA, each checked
against a hand computation on a copy of the net (autograd and plain SGD), to 1e-6."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import ember
from ember.callbacks import Callback
from ember.errors import ConfigError, DataError
from tests.host_ops import HostOpWindow

N = 45  # batches of 8: five full batches and one of 5
BATCH = 8
LR = 0.5
CLASS_WEIGHT = {0: 1.0, 1: 5.0, 2: 2.0}
TOL = 1e-6


# -- data, nets and hand computations -------------------------------------------------------------
def _data(n=N, seed=0):
    """Inputs (n, 4), classes in {0, 1, 2} and positive weights in [0.25, 2.25), all far from uniform."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    w = torch.rand(n, generator=g) * 2 + 0.25
    return x, y, w


def _net(seed=0, outputs=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, outputs))


def _model(net, lr=LR, loss=None, **options):
    """``net`` compiled with plain SGD on the CPU (cross-entropy unless ``loss`` is given)."""
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    loss = nn.CrossEntropyLoss() if loss is None else loss
    return ember.Model(net).compile(loss=loss, optimizer=optimizer, device="cpu", **options)


class Triples(Dataset):
    """Items ``(x[i], y[i], w[i])``: a dataset that brings its own sample weights."""

    def __init__(self, x, y, w):
        self.x, self.y, self.w = x, y, w

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i], self.w[i]


def _params(net):
    return {name: p.detach().clone() for name, p in net.named_parameters()}


def _assert_params_close(net, expected, tol=TOL):
    expected = expected if isinstance(expected, dict) else _params(expected)
    for name, p in net.named_parameters():
        assert torch.allclose(p.detach(), expected[name], atol=tol, rtol=0), name


def _weighted_ce(net, x, y, w):
    """``sum(w * l) / sum(w)`` of the per-sample cross-entropies of ``net``."""
    per_sample = F.cross_entropy(net(x), y, reduction="none")
    return (w * per_sample).sum() / w.sum()


def _sgd_step(net, loss, lr=LR):
    """One plain SGD step of ``net`` on ``loss`` (autograd), in place."""
    net.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in net.parameters():
            p -= lr * p.grad


def _average(values, weights):
    """``sum(v * w) / sum(w)`` of two lists of floats."""
    return sum(v * w for v, w in zip(values, weights, strict=True)) / sum(weights)


def _batches(n=N, size=BATCH):
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


class Snapshots(Callback):
    """The net's parameters after every training batch (with the update count then) and at every
    epoch end (after validation: the weights the epoch validated, unless an EMA is swapped in)."""

    def __init__(self, net):
        self.net = net
        self.batches, self.updates, self.epochs = [], [], []

    def on_train_batch_end(self, state):
        self.batches.append(_params(self.net))
        self.updates.append(state.updates)

    def on_epoch_end(self, state):
        self.epochs.append(_params(self.net))


def _load(net, params):
    """A deep copy of ``net`` holding ``params``."""
    other = copy.deepcopy(net)
    other.load_state_dict(params)
    return other


# -- sample weights -------------------------------------------------------------------------------
def _fit_weighted(form, net, x, y, w, **fit_options):
    """Fit on ``(x, y, w)`` given as ``fit(x, y, sample_weight=w)`` ("arrays"), as a Dataset of
    triples ("dataset") or as a DataLoader of triples ("loader"), the last two with weighted=True."""
    if form == "arrays":
        model = _model(net, metrics=["accuracy"])
        return model, model.fit(x, y, sample_weight=w, verbose=0, shuffle=False, **fit_options)
    model = _model(net, metrics=["accuracy"], weighted=True)
    batch_size = fit_options.pop("batch_size")
    if form == "dataset":
        data = Triples(x, y, w)
        return model, model.fit(data, batch_size=batch_size, verbose=0, shuffle=False, **fit_options)
    loader = DataLoader(Triples(x, y, w), batch_size=batch_size, shuffle=False)
    return model, model.fit(loader, verbose=0, **fit_options)


@pytest.mark.parametrize("form", ["arrays", "dataset", "loader"])
def test_one_full_batch_minimises_the_weighted_mean(form):
    """One epoch of one batch: the loss column is sum(w*l)/sum(w) of the initial net, the weights
    after it are one SGD step on that loss, and the accuracy column is weighted too."""
    x, y, w = _data()
    net = _net()
    reference = copy.deepcopy(net)
    _, history = _fit_weighted(form, net, x, y, w, batch_size=N, epochs=1)
    with torch.no_grad():
        correct = (reference(x).argmax(1) == y).float()
    expected_loss = _weighted_ce(reference, x, y, w)
    assert history["loss"].iloc[0] == pytest.approx(float(expected_loss.detach()), abs=TOL)
    assert history["accuracy"].iloc[0] == pytest.approx(float((w * correct).sum() / w.sum()), abs=TOL)
    plain = float(F.cross_entropy(reference(x), y).detach())
    assert float(expected_loss.detach()) != pytest.approx(plain, abs=1e-3)
    _sgd_step(reference, expected_loss)
    _assert_params_close(net, reference)


@pytest.mark.parametrize("form", ["arrays", "dataset", "loader"])
def test_the_epoch_loss_is_the_weighted_mean_over_batches(form):
    """Six uneven batches: the epoch loss is sum_b(L_b * W_b) / sum_b(W_b), where L_b is the batch's
    weighted loss of the net before its step (a copy steps alongside) and W_b its weight sum; a
    mean of the batch losses weighted by their sample counts would differ."""
    x, y, w = _data()
    net = _net()
    reference = copy.deepcopy(net)
    _, history = _fit_weighted(form, net, x, y, w, batch_size=BATCH, epochs=1)
    losses, weight_sums, counts = [], [], []
    for part in _batches():
        loss = _weighted_ce(reference, x[part], y[part], w[part])
        losses.append(float(loss.detach()))
        weight_sums.append(float(w[part].sum()))
        counts.append(len(y[part]))
        _sgd_step(reference, loss)
    exact, by_count = _average(losses, weight_sums), _average(losses, counts)
    assert history["loss"].iloc[0] == pytest.approx(exact, abs=TOL)
    assert abs(exact - by_count) > 1e-3  # the two readings are told apart
    _assert_params_close(net, reference)


def test_a_zero_learning_rate_gives_the_weighted_mean_of_the_whole_data():
    x, y, w = _data()
    net = _net()
    model = _model(net, lr=0.0)
    history = model.fit(x, y, sample_weight=w, batch_size=BATCH, epochs=2, verbose=0)
    expected = float(_weighted_ce(net, x, y, w).detach())
    assert history["loss"].tolist() == pytest.approx([expected, expected], abs=TOL)


def test_evaluate_weights_a_weighted_dataset_and_not_pairs():
    x, y, w = _data()
    net = _net()
    model = _model(net, metrics=["accuracy"], weighted=True)
    with torch.no_grad():
        logits = net(x)
    correct = (logits.argmax(1) == y).float()
    per_sample = F.cross_entropy(logits, y, reduction="none")
    weighted = model.evaluate(Triples(x, y, w), batch_size=BATCH)
    assert weighted["accuracy"] == pytest.approx(float((w * correct).sum() / w.sum()), abs=TOL)
    assert weighted["loss"] == pytest.approx(float((w * per_sample).sum() / w.sum()), abs=TOL)
    plain = model.evaluate(TensorDataset(x, y), batch_size=BATCH)
    assert plain["accuracy"] == pytest.approx(float(correct.mean()), abs=TOL)
    assert plain["loss"] == pytest.approx(float(per_sample.mean()), abs=TOL)
    assert plain["accuracy"] != pytest.approx(weighted["accuracy"], abs=1e-3)


def _same_params(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_arrays_with_sample_weight_train_like_a_loader_of_triples():
    x, y, w = _data()
    from_arrays, from_loader = _net(), _net()
    _fit_weighted("arrays", from_arrays, x, y, w, batch_size=BATCH, epochs=2)
    _fit_weighted("loader", from_loader, x, y, w, batch_size=BATCH, epochs=2)
    assert _same_params(from_arrays, from_loader)


def test_shuffled_sample_weights_stay_with_their_samples():
    """Shuffled with the same seed, ``fit(x, y, sample_weight=w)`` trains exactly like a Dataset
    whose items carry ``(x[i], y[i], w[i])`` together; weights given in another order do not."""
    x, y, w = _data()
    nets = [_net(), _net(), _net()]
    data = [Triples(x, y, w), Triples(x, y, w.flip(0))]
    torch.manual_seed(5)  # the shuffle seed
    _model(nets[0]).fit(x, y, sample_weight=w, batch_size=BATCH, epochs=2, verbose=0)
    for net, triples in zip(nets[1:], data, strict=True):
        torch.manual_seed(5)
        _model(net, weighted=True).fit(triples, batch_size=BATCH, epochs=2, verbose=0)
    assert _same_params(nets[0], nets[1])
    assert not _same_params(nets[0], nets[2])


def test_weighted_validation_triples_give_a_weighted_val_loss():
    """With sample weights, validation ``(vx, vy, vw)`` is weighted as in Keras (lr=0: the net is fixed)."""
    x, y, w = _data()
    vx, vy, vw = _data(n=21, seed=7)
    net = _net()
    history = _model(net, lr=0.0).fit(
        x, y, sample_weight=w, validation_data=(vx, vy, vw), batch_size=BATCH, verbose=0
    )
    with torch.no_grad():
        expected = float(_weighted_ce(net, vx, vy, vw))
        plain = float(F.cross_entropy(net(vx), vy))
    assert history["val_loss"].iloc[0] == pytest.approx(expected, abs=TOL)
    assert abs(expected - plain) > 1e-3


def test_a_batch_of_zero_weights_changes_nothing():
    """Batch 2 (samples 8-15) weighs 0: plain SGD skips it and the epoch loss counts it with W_b = 0."""
    x, y, w = _data()
    w = w.clone()
    w[8:16] = 0.0
    net = _net()
    reference = copy.deepcopy(net)
    history = _model(net).fit(x, y, sample_weight=w, batch_size=BATCH, shuffle=False, verbose=0)
    losses, weight_sums = [], []
    for part in _batches():
        if part.start == 8:
            continue
        loss = _weighted_ce(reference, x[part], y[part], w[part])
        losses.append(float(loss.detach()))
        weight_sums.append(float(w[part].sum()))
        _sgd_step(reference, loss)
    assert history["loss"].iloc[0] == pytest.approx(_average(losses, weight_sums), abs=TOL)
    _assert_params_close(net, reference)


def test_unweighted_steps_read_nothing_on_the_host():
    """The control of the test below: the same window without weights sees no host read."""
    x, y, _ = _data()
    window = HostOpWindow(1, 5)
    _model(_net(), metrics=["accuracy"]).fit(x, y, batch_size=BATCH, verbose=0, callbacks=[window])
    assert window.ops == []


@pytest.mark.parametrize("weighting", ["sample_weight", "class_weight"])
def test_weighted_steps_read_nothing_on_the_host(weighting):
    x, y, w = _data()
    window = HostOpWindow(1, 5)
    options = {"sample_weight": w} if weighting == "sample_weight" else {"class_weight": CLASS_WEIGHT}
    model = _model(_net(), metrics=["accuracy"])
    model.fit(x, y, batch_size=BATCH, verbose=0, callbacks=[window], **options)
    assert window.ops == []


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.left, self.right = nn.Linear(4, 3), nn.Linear(2, 3)

    def forward(self, a, b):
        return self.left(a) + self.right(b)


def test_without_weighted_a_triple_is_two_inputs_and_a_target():
    x, y, _ = _data()
    x2 = torch.randn(N, 2, generator=torch.Generator().manual_seed(3))
    net = TwoInputs()
    reference = copy.deepcopy(net)
    history = _model(net).fit(TensorDataset(x, x2, y), batch_size=N, shuffle=False, verbose=0)
    expected = F.cross_entropy(reference(x, x2), y)
    assert history["loss"].iloc[0] == pytest.approx(float(expected.detach()), abs=TOL)
    _sgd_step(reference, expected)
    _assert_params_close(net, reference)


def test_sample_weight_with_a_loader_is_a_config_error():
    x, y, w = _data()
    model = _model(_net())
    with pytest.raises(ConfigError, match="weighted=True"):
        model.fit(DataLoader(TensorDataset(x, y), batch_size=BATCH), sample_weight=w, verbose=0)


def test_sample_weight_of_the_wrong_length_names_both_counts():
    x, y, w = _data()
    model = _model(_net())
    with pytest.raises(DataError, match="x has 45, got 44"):
        model.fit(x, y, sample_weight=w[:44], verbose=0)


def test_two_weights_per_sample_are_a_data_error():
    x, y, w = _data()
    model = _model(_net())
    before = _params(model.net)
    with pytest.raises(DataError, match=r"shape \(8, 2\)"):
        model.fit(x, y, sample_weight=torch.stack([w, w], 1), batch_size=BATCH, verbose=0)
    _assert_params_close(model.net, before, tol=0.0)  # refused before any update


class OwnLoss(nn.Module):
    """A net computing its own loss from ``labels`` (as transformers' models do)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(4, 3)

    def forward(self, x, labels):
        logits = self.linear(x)
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


def test_a_model_computed_loss_refuses_class_weights():
    x, y, _ = _data()
    data = [{"x": x[part], "labels": y[part]} for part in _batches()]
    model = ember.Model(OwnLoss()).compile(loss=None, device="cpu")
    model.fit(data, verbose=0)  # trains without class weights
    with pytest.raises(ConfigError, match=r"loss=None"):
        model.fit(data, class_weight=CLASS_WEIGHT, verbose=0)


def test_a_class_weighted_cross_entropy_refuses_sample_weights():
    x, y, w = _data()
    model = _model(_net(), loss=nn.CrossEntropyLoss(weight=torch.tensor([1.0, 5.0, 2.0])))
    with pytest.raises(ConfigError, match=r"CrossEntropyLoss\(weight=\.\.\.\).*class_weight"):
        model.fit(x, y, sample_weight=w, verbose=0)


# -- class weights --------------------------------------------------------------------------------
def _class_weighted_pair(batch_size, class_weight=CLASS_WEIGHT, table=(1.0, 5.0, 2.0), epochs=2):
    """The same net trained with ``fit(class_weight=...)`` and with ``CrossEntropyLoss(weight=table)``."""
    x, y, _ = _data()
    by_fit, by_loss = _net(), _net()
    recorder = Snapshots(by_fit)
    weighted_loss = nn.CrossEntropyLoss(weight=torch.tensor(table))
    fit_history = _model(by_fit).fit(
        x,
        y,
        class_weight=class_weight,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=[recorder],
    )
    loss_history = _model(by_loss, loss=weighted_loss).fit(
        x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0
    )
    return by_fit, by_loss, fit_history, loss_history, recorder


@pytest.mark.parametrize("batch_size", [N, BATCH])
def test_class_weight_trains_like_a_class_weighted_cross_entropy(batch_size):
    by_fit, by_loss, _, _, _ = _class_weighted_pair(batch_size)
    _assert_params_close(by_fit, by_loss)
    assert not torch.allclose(by_fit[0].weight, _net()[0].weight, atol=1e-3)  # it trained


def test_class_weight_loss_column_equals_the_class_weighted_cross_entropy_on_full_batches():
    _, _, fit_history, loss_history, _ = _class_weighted_pair(N)
    assert fit_history["loss"].tolist() == pytest.approx(loss_history["loss"].tolist(), abs=TOL)


def test_class_weight_loss_column_is_the_exact_weighted_epoch_mean():
    """Batches of 8: ``class_weight`` reports sum(w*l)/sum(w) over the epoch (the net before each
    batch taken from the snapshots), while CrossEntropyLoss(weight=...) is a per-batch mean that
    ember averages by sample counts, so the two loss columns differ although the weights agree."""
    x, y, _ = _data()
    _, _, fit_history, loss_history, recorder = _class_weighted_pair(BATCH, epochs=1)
    w = torch.tensor([CLASS_WEIGHT[int(c)] for c in y])
    before = [_params(_net()), *recorder.batches[:-1]]
    losses, weight_sums = [], []
    for params, part in zip(before, _batches(), strict=True):
        losses.append(float(_weighted_ce(_load(_net(), params), x[part], y[part], w[part]).detach()))
        weight_sums.append(float(w[part].sum()))
    exact = _average(losses, weight_sums)
    by_count = _average(losses, [part.stop - part.start for part in _batches()])
    assert fit_history["loss"].iloc[0] == pytest.approx(exact, abs=TOL)
    assert loss_history["loss"].iloc[0] == pytest.approx(by_count, abs=TOL)
    assert abs(exact - by_count) > 1e-3


def test_validation_is_not_class_weighted():
    """Each epoch's val_loss is the plain mean cross-entropy of the net that epoch ended with."""
    x, y, _ = _data()
    vx, vy, _ = _data(n=21, seed=7)
    net = _net()
    recorder = Snapshots(net)
    history = _model(net).fit(
        x,
        y,
        validation_data=(vx, vy),
        class_weight=CLASS_WEIGHT,
        batch_size=BATCH,
        epochs=2,
        verbose=0,
        callbacks=[recorder],
    )
    vw = torch.tensor([CLASS_WEIGHT[int(c)] for c in vy])
    for epoch, params in enumerate(recorder.epochs):
        ended = _load(net, params)
        with torch.no_grad():
            plain = float(F.cross_entropy(ended(vx), vy))
            weighted = float(_weighted_ce(ended, vx, vy, vw))
        assert history["val_loss"].iloc[epoch] == pytest.approx(plain, abs=TOL)
        assert abs(plain - weighted) > 1e-3


def test_classes_missing_from_class_weight_weigh_one():
    by_fit, by_loss, _, _, _ = _class_weighted_pair(BATCH, class_weight={1: 5.0}, table=(1.0, 5.0, 1.0))
    _assert_params_close(by_fit, by_loss)


def test_binary_targets_take_class_weights():
    """BCEWithLogitsLoss with float 0/1 targets of shape (N, 1): class 1 weighs 3, class 0 weighs 1."""
    x, y, _ = _data()
    target = (y == 1).float().unsqueeze(1)
    net = _net(outputs=1)
    reference = copy.deepcopy(net)
    model = _model(net, loss=nn.BCEWithLogitsLoss())
    history = model.fit(x, target, class_weight={0: 1.0, 1: 3.0}, batch_size=N, shuffle=False, verbose=0)
    w = 1.0 + 2.0 * target[:, 0]
    per_sample = F.binary_cross_entropy_with_logits(reference(x), target, reduction="none")[:, 0]
    expected = (w * per_sample).sum() / w.sum()
    assert history["loss"].iloc[0] == pytest.approx(float(expected.detach()), abs=TOL)
    assert float(expected.detach()) != pytest.approx(float(per_sample.detach().mean()), abs=1e-3)
    _sgd_step(reference, expected)
    _assert_params_close(net, reference)


# -- several outputs ------------------------------------------------------------------------------
class TwoHeads(nn.Module):
    """A shared body with a 3-class head and a scalar regression head; ``tuple_out`` returns a tuple."""

    def __init__(self, tuple_out=False):
        super().__init__()
        torch.manual_seed(0)
        self.body, self.cls, self.reg = nn.Linear(4, 6), nn.Linear(6, 3), nn.Linear(6, 1)
        self.tuple_out = tuple_out

    def forward(self, x):
        h = torch.tanh(self.body(x))
        cls, reg = self.cls(h), self.reg(h).squeeze(1)
        return (cls, reg) if self.tuple_out else {"cls": cls, "reg": reg}


class HeadsData(Dataset):
    """Items ``(x, {"cls": y, "reg": r})`` (``keys`` chooses which targets; ``tuples``: ``(y, r)``)."""

    def __init__(self, n=N, seed=0, keys=("cls", "reg"), tuples=False):
        self.x, self.y, _ = _data(n, seed)
        self.r = torch.randn(n, generator=torch.Generator().manual_seed(seed + 100))
        self.keys, self.tuples = keys, tuples

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if self.tuples:
            return self.x[i], (self.y[i], self.r[i])
        targets = {"cls": self.y[i], "reg": self.r[i]}
        return self.x[i], {key: targets[key] for key in self.keys}


def _heads_model(net=None):
    net = TwoHeads() if net is None else net
    return ember.Model(net).compile(
        loss={"cls": nn.CrossEntropyLoss(), "reg": nn.MSELoss()},
        loss_weights={"cls": 1.0, "reg": 0.5},
        metrics={"cls": ["accuracy"], "reg": ["mae"]},
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        device="cpu",
    )


def test_two_heads_have_keras_columns_and_a_weighted_total():
    model = _heads_model()
    history = model.fit(
        HeadsData(), validation_data=HeadsData(21, seed=7), batch_size=BATCH, epochs=2, verbose=0
    )
    assert list(history.columns) == [
        "epoch",
        "loss",
        "cls_loss",
        "reg_loss",
        "cls_accuracy",
        "reg_mae",
        "val_loss",
        "val_cls_loss",
        "val_reg_loss",
        "val_cls_accuracy",
        "val_reg_mae",
        "lr",
        "seconds",
    ]
    for prefix in ("", "val_"):
        total = history[f"{prefix}cls_loss"] + 0.5 * history[f"{prefix}reg_loss"]
        assert history[f"{prefix}loss"].tolist() == pytest.approx(total.tolist(), abs=TOL)


def test_two_heads_evaluate_equals_the_whole_data_by_hand():
    """45 samples in batches of 8 (the last of 5): every value is the mean over all 45 samples."""
    data = HeadsData()
    model = _heads_model()
    model.fit(data, batch_size=BATCH, epochs=1, verbose=0)
    with torch.no_grad():
        out = model.net(data.x)
    cls_loss = float(F.cross_entropy(out["cls"], data.y))
    reg_loss = float(F.mse_loss(out["reg"], data.r))
    expected = {
        "loss": cls_loss + 0.5 * reg_loss,
        "cls_loss": cls_loss,
        "reg_loss": reg_loss,
        "cls_accuracy": float((out["cls"].argmax(1) == data.y).float().mean()),
        "reg_mae": float((out["reg"] - data.r).abs().mean()),
    }
    result = model.evaluate(data, batch_size=BATCH)
    assert sorted(result) == sorted(expected)
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, abs=TOL), name


def test_two_heads_predict_concatenates_each_output():
    data = HeadsData()
    model = _heads_model()
    predicted = model.predict(data, batch_size=BATCH)
    with torch.no_grad():
        out = model.net(data.x)
    assert sorted(predicted) == ["cls", "reg"]
    assert (tuple(predicted["cls"].shape), tuple(predicted["reg"].shape)) == ((N, 3), (N,))
    assert torch.allclose(predicted["cls"], out["cls"], atol=TOL, rtol=0)
    assert torch.allclose(predicted["reg"], out["reg"], atol=TOL, rtol=0)


def test_tuple_outputs_with_a_list_of_losses_name_columns_by_position():
    data = HeadsData(tuples=True)
    net = TwoHeads(tuple_out=True)
    model = ember.Model(net).compile(
        loss=[nn.CrossEntropyLoss(), nn.MSELoss()],
        loss_weights=[1.0, 2.0],
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        device="cpu",
    )
    history = model.fit(data, batch_size=BATCH, epochs=1, verbose=0)
    assert list(history.columns) == ["epoch", "loss", "output_0_loss", "output_1_loss", "lr", "seconds"]
    with torch.no_grad():
        cls, reg = net(data.x)
    first, second = float(F.cross_entropy(cls, data.y)), float(F.mse_loss(reg, data.r))
    result = model.evaluate(data, batch_size=BATCH)
    assert result == pytest.approx(
        {"loss": first + 2.0 * second, "output_0_loss": first, "output_1_loss": second}, abs=TOL
    )


def test_sample_weights_with_several_outputs_are_a_config_error():
    model = _heads_model()
    model.objective.weighted = True  # as compile(weighted=True) sets it, on the same model
    data = [(x, target, torch.ones(len(x))) for x, target in DataLoader(HeadsData(), batch_size=BATCH)]
    with pytest.raises(ConfigError, match="several outputs"):
        model.fit(data, verbose=0)


def test_class_weight_with_several_outputs_is_refused_not_ignored():
    weighted = _heads_model()
    with pytest.raises(ConfigError, match="class_weight weighs one loss"):
        weighted.fit(HeadsData(), batch_size=BATCH, shuffle=False, verbose=0, class_weight=CLASS_WEIGHT)


def test_a_target_without_an_output_key_names_the_key():
    model = _heads_model()
    with pytest.raises(DataError, match="target has no key 'reg'"):
        model.fit(HeadsData(keys=("cls",)), batch_size=BATCH, verbose=0)


# -- exponential moving average of the weights ----------------------------------------------------
def _ema_model(net, accumulate=1):
    return _model(net, lr=0.2, ema=0.5, accumulate=accumulate)


def _hand_average(start, snapshots, decay=0.5):
    """``avg = start``; then ``avg = decay * avg + (1 - decay) * p`` for each snapshot ``p``."""
    average = {name: t.clone() for name, t in start.items()}
    for params in snapshots:
        for name in average:
            average[name] = decay * average[name] + (1 - decay) * params[name]
    return average


def _assert_average(model, expected, tol=TOL):
    average = model.ema.state_dict()["average"]
    assert sorted(average) == sorted(expected)
    for name, value in expected.items():
        assert torch.allclose(average[name], value, atol=tol, rtol=0), name


@pytest.mark.parametrize("decay", [0.5, 0.75])  # 0.75 tells decay from 1 - decay
def test_the_ema_is_the_hand_average_of_the_weights_after_each_update(decay):
    x, y, _ = _data()
    net = _net()
    start = _params(net)
    recorder = Snapshots(net)
    model = _model(net, lr=0.2, ema=decay)
    model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0, callbacks=[recorder])
    assert len(recorder.batches) == 12 and int(model.ema.updates) == 12
    expected = _hand_average(start, recorder.batches, decay)
    _assert_average(model, expected)
    with model.ema.swapped():
        _assert_params_close(net, expected)


def test_the_ema_leaves_the_raw_sgd_weights_in_the_net():
    x, y, _ = _data()
    with_ema, without = _net(), _net()
    _ema_model(with_ema).fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    _model(without, lr=0.2).fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    for (name, p), q in zip(with_ema.named_parameters(), without.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_validation_uses_the_ema():
    """The last epoch's val_loss is evaluate inside ``ema.swapped()``, not evaluate of the net."""
    x, y, _ = _data()
    vx, vy, _ = _data(n=21, seed=7)
    model = _ema_model(_net())
    history = model.fit(x, y, validation_data=(vx, vy), batch_size=BATCH, epochs=2, verbose=0)
    with model.ema.swapped():
        averaged = model.evaluate(vx, vy, batch_size=BATCH)["loss"]
    raw = model.evaluate(vx, vy, batch_size=BATCH)["loss"]
    assert history["val_loss"].iloc[-1] == pytest.approx(averaged, abs=TOL)
    assert abs(averaged - raw) > 1e-4


def test_with_accumulation_the_ema_updates_once_per_window():
    """accumulate=2 over 6 batches per epoch: 3 updates per epoch; the average follows the weights
    after the batches that ended a window (where ``state.updates`` grew), and only those."""
    x, y, _ = _data()
    net = _net()
    start = _params(net)
    recorder = Snapshots(net)
    model = _ema_model(net, accumulate=2)
    model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0, callbacks=[recorder])
    assert (model.state.step, model.state.updates, int(model.ema.updates)) == (12, 6, 6)
    assert recorder.updates == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    after_updates = [p for i, p in enumerate(recorder.batches) if i % 2 == 1]
    _assert_average(model, _hand_average(start, after_updates))


def test_the_ema_is_saved_and_loaded_bitwise(tmp_path):
    x, y, _ = _data()
    model = _ema_model(_net())
    model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0)
    model.save(tmp_path / "ckpt")
    restored = _ema_model(_net(seed=1))
    restored.load(tmp_path / "ckpt")
    saved, loaded = model.ema.state_dict(), restored.ema.state_dict()
    assert int(loaded["updates"]) == int(saved["updates"]) == 12
    for name, value in saved["average"].items():
        assert torch.equal(loaded["average"][name], value), name
    assert not torch.equal(saved["average"]["0.weight"], model.net[0].weight)  # the average, not the net
