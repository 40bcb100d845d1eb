"""The misuse suite: what users get wrong, each answered either by a correct result (checked against
plain PyTorch) or by an ember error whose message names the cause and the fix. Never a silent
wrong result, never a bare error from deep inside torch."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau, StepLR

import ember
from ember.callbacks import EarlyStopping, ModelCheckpoint
from ember.errors import CheckpointError, ConfigError, DataError, EmberError, NonFiniteLossError, ShapeError
from ember.metrics import Accuracy
from tests.conftest import mlp

N = 64


def _data(features=4, classes=3, n=N, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=generator), torch.randint(0, classes, (n,), generator=generator)


def _model(net=None, **options):
    net = net or mlp()
    options.setdefault("loss", nn.CrossEntropyLoss())
    options.setdefault("optimizer", torch.optim.SGD(net.parameters(), lr=0.1))
    return ember.Model(net).compile(device="cpu", **options)


def _fit(model, data, **options):
    return model.fit(data, **{"epochs": 1, "verbose": 0, "batch_size": 16, **options})


class _Tuple(nn.Module):
    """Returns (logits, features), as many research models do."""

    def __init__(self):
        super().__init__()
        self.body = mlp()

    def forward(self, x):
        return self.body(x), x


class _Dict(nn.Module):
    """Returns a dict (or a Hugging Face ModelOutput-like OrderedDict subclass) holding its scores
    under ``key`` (metrics read an output's "logits" themselves; other keys they cannot guess)."""

    def __init__(self, kind=dict, key="scores"):
        super().__init__()
        self.body, self.kind, self.key = mlp(), kind, key

    def forward(self, x):
        return self.kind({self.key: self.body(x)})


class _ModelOutput(OrderedDict):
    pass


def _pick_scores(out, y):
    return nn.functional.cross_entropy(out["scores"], y)


class _Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.features(x))


class _TextNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, ids):
        return self.head(self.embedding(ids).mean(1))


def _adam_checkpoints(tmp_path):
    """A ModelCheckpoint folder written by a fit with Adam."""
    net = mlp()
    _fit(
        _model(net, optimizer=torch.optim.Adam(net.parameters())),
        _data(),
        callbacks=[ModelCheckpoint(tmp_path / "ck")],
    )
    return tmp_path / "ck"


def _resume_adam_with_sgd(tmp_path):
    _fit(_model(), _data(), epochs=2, resume=_adam_checkpoints(tmp_path))


def _weights_tuple():
    x, y = _data()
    weights = torch.rand(N)
    return _fit(_model(), torch.utils.data.TensorDataset(x, y, weights))


def _validation_shape():
    x = torch.randn(N, 4)
    model = _model(mlp(4, 1), loss=nn.MSELoss())
    _fit(model, (x, torch.randn(N, 1)), validation_data=(x, torch.randn(N)))


def _evaluate_shape():
    x = torch.randn(N, 4)
    model = _model(mlp(4, 1), loss=nn.MSELoss())
    _fit(model, (x, torch.randn(N, 1)))
    model.evaluate((x, torch.randn(N)))


def _dict_target():
    x, y = _data()
    batches = [(x[i : i + 16], {"label": y[i : i + 16]}) for i in range(0, N, 16)]
    _fit(_model(), batches, batch_size=None)


def _nan_data():
    x, y = _data()
    x[40] = float("nan")
    _fit(_model(), (x, y), shuffle=False)


def _meta_net():
    with torch.device("meta"):
        net = mlp()
    ember.Model(net).compile(nn.CrossEntropyLoss(), device="cpu")


def _same_callback_twice():
    stopper = EarlyStopping("loss")
    _fit(_model(), _data(), callbacks=[stopper, stopper])


def _function_metric_not_a_number():
    _fit(_model(metrics={"bad": lambda p, t: "high"}), _data())


ERRORS = {
    # compile arguments
    "loss class": (
        lambda: _model(loss=nn.CrossEntropyLoss),
        ConfigError,
        r"loss=CrossEntropyLoss is the class; pass an object: loss=CrossEntropyLoss\(...\)",
    ),
    "optimizer class": (
        lambda: _model(optimizer=torch.optim.Adam),
        ConfigError,
        r"optimizer=Adam is the class",
    ),
    "metric class": (lambda: _model(metrics=[Accuracy]), ConfigError, r"metrics=Accuracy is the class"),
    "scheduler class": (lambda: _model(scheduler=StepLR), ConfigError, r"scheduler=StepLR is the class"),
    "loss not callable": (lambda: _model(loss="mse"), ConfigError, r"loss must be callable"),
    "optimizer not an optimizer": (
        lambda: _model(optimizer="adam"),
        ConfigError,
        r"must be a torch.optim.Optimizer",
    ),
    "negative grad_clip": (
        lambda: _model(grad_clip=-1.0),
        ConfigError,
        r"grad_clip must be a finite number > 0",
    ),
    "zero grad_clip": (lambda: _model(grad_clip=0.0), ConfigError, r"grad_clip must be a finite number > 0"),
    "unknown precision": (lambda: _model(precision="fp8"), ConfigError, r"precision='fp8' is not one of"),
    "unknown metric name": (
        lambda: _model(metrics=["accuracy2"]),
        ConfigError,
        r"unknown metric 'accuracy2'",
    ),
    "duplicate metric names": (
        lambda: _model(metrics={"loss": "accuracy"}),
        ConfigError,
        r"metric names must be unique and not reserved",
    ),
    "not a module": (lambda: ember.Model(lambda x: x), ConfigError, r"Model wraps a torch.nn.Module"),
    "meta device net": (_meta_net, ConfigError, r"tensors on the meta device \(e.g. '0.weight'\).*to_empty"),
    "scheduler over another optimizer": (
        lambda: _model(scheduler=StepLR(torch.optim.SGD(mlp().parameters(), lr=0.1), 1)),
        ConfigError,
        r"StepLR was built over another optimizer",
    ),
    "max plateau scheduler on val_loss": (
        lambda: _model(scheduler=lambda opt: ReduceLROnPlateau(opt, mode="max")),
        ConfigError,
        r"ReduceLROnPlateau\(mode='max'\).*'val_loss', where lower is better",
    ),
    "plateau scheduler per step": (
        lambda: _model(scheduler=lambda opt: ReduceLROnPlateau(opt), scheduler_interval="step"),
        ConfigError,
        r"scheduler_interval='epoch'",
    ),
    "scheduler_monitor without a plateau scheduler": (
        lambda: _model(scheduler=lambda opt: StepLR(opt, 1), scheduler_monitor="val_loss"),
        ConfigError,
        r"applies to ReduceLROnPlateau; StepLR steps without a metric",
    ),
    # fit arguments
    "fit before compile": (lambda: ember.Model(mlp()).fit(_data()), ConfigError, r"call model.compile"),
    "negative epochs": (
        lambda: _fit(_model(), _data(), epochs=-1),
        ConfigError,
        r"epochs must be an int >= 1",
    ),
    "zero epochs": (lambda: _fit(_model(), _data(), epochs=0), ConfigError, r"epochs must be an int >= 1"),
    "zero batch size": (
        lambda: _fit(_model(), _data(), batch_size=0),
        ConfigError,
        r"batch_size must be an int >= 1",
    ),
    "verbose word": (lambda: _fit(_model(), _data(), verbose="yes"), ConfigError, r"verbose must be 0"),
    "callback not in a list": (
        lambda: _fit(_model(), _data(), callbacks=EarlyStopping("loss")),
        ConfigError,
        r"callbacks takes a list: callbacks=\[EarlyStopping\(...\)\]",
    ),
    "same callback twice": (
        _same_callback_twice,
        ConfigError,
        r"the same EarlyStopping object is in callbacks twice",
    ),
    "epochs as second positional": (
        lambda: _model().fit(_data(), 3),
        ConfigError,
        r"second positional argument is the target y.*epochs=3",
    ),
    "x and y of different lengths": (
        lambda: _fit(_model(), _data()[0], y=_data()[1][:-1]),
        DataError,
        r"x has 64 samples but y has 63",
    ),
    "batch_size with a DataLoader": (
        lambda: _model().fit(
            torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*_data())), batch_size=8
        ),
        ConfigError,
        r"a DataLoader brings its own batch size",
    ),
    "empty data": (
        lambda: _fit(_model(), (torch.zeros(0, 4), torch.zeros(0).long())),
        DataError,
        r"has 0 samples",
    ),
    "optimizer of another model at fit": (
        lambda: _fit(_model(optimizer=torch.optim.SGD(mlp().parameters(), lr=0.1)), _data()),
        ConfigError,
        r"the optimizer holds none of this model's parameters",
    ),
    # callbacks
    "unknown monitor direction": (
        lambda: _fit(
            _model(metrics={"score": lambda p, t: 0.0}), _data(), callbacks=[EarlyStopping("val_score")]
        ),
        ConfigError,
        r"cannot tell whether a higher or a lower 'val_score' is better; pass mode='min' or mode='max'",
    ),
    "misspelled monitor": (
        lambda: _fit(_model(metrics=["accuracy"]), _data(), callbacks=[EarlyStopping("val_accuarcy")]),
        ConfigError,
        r"'val_accuarcy' is none of the columns the compiled loss and metrics log "
        r"\(loss, accuracy, val_loss, val_accuracy\): check the spelling",
    ),
    "unknown mode": (
        lambda: EarlyStopping(mode="lowest"),
        ConfigError,
        r"mode must be 'auto', 'min' or 'max'",
    ),
    "monitor needs validation data": (
        lambda: _fit(_model(metrics=["accuracy"]), _data(), callbacks=[EarlyStopping("val_accuracy")]),
        ConfigError,
        r"'val_accuracy' is not in the logs; available: accuracy, loss",
    ),
    "negative patience": (
        lambda: EarlyStopping(patience=-1),
        ConfigError,
        r"patience=...\) must be an int >= 0",
    ),
    "keep no checkpoint": (
        lambda: ModelCheckpoint("ck", keep_last=0),
        ConfigError,
        r"keep_last=...\) must be an int >= 1",
    ),
    "plateau column missing": (
        lambda: _fit(
            _model(scheduler=lambda o: ReduceLROnPlateau(o, mode="max"), scheduler_monitor="val_auc"), _data()
        ),
        ConfigError,
        r"'val_auc' is not in the logs; available: loss",
    ),
    # seeds
    "seed as a string": (
        lambda: ember.seed_everything("42"),
        ConfigError,
        r"seed must be an int, got '42'",
    ),
    "seed as a float": (lambda: ember.seed_everything(1.5), ConfigError, r"seed must be an int, got 1.5"),
    # losses and targets
    "BCELoss fed logits": (
        lambda: _fit(_model(mlp(4, 1), loss=nn.BCELoss()), (torch.randn(N, 4) * 5, torch.rand(N, 1).round())),
        DataError,
        r"BCELoss takes probabilities in \[0, 1\].*look like logits; use nn.BCEWithLogitsLoss\(\)",
    ),
    "BCE integer targets": (
        lambda: _fit(
            _model(mlp(4, 1), loss=nn.BCEWithLogitsLoss()), (torch.randn(N, 4), torch.ones(N, 1).long())
        ),
        DataError,
        r"BCEWithLogitsLoss needs float targets",
    ),
    "dict target to a torch loss": (
        _dict_target,
        DataError,
        r"CrossEntropyLoss takes the target as one tensor, but the batches hold a dict with keys \['label'\]",
    ),
    "no target": (
        lambda: _fit(_model(), torch.utils.data.TensorDataset(_data()[0])),
        DataError,
        r"the batches have no target",
    ),
    "tuple output to a torch loss": (
        lambda: _fit(_model(_Tuple()), _data()),
        DataError,
        r"CrossEntropyLoss takes the model output as one tensor, but the model returned a tuple of 2",
    ),
    "dict output to a metric": (
        lambda: _fit(_model(_Dict(), loss=_pick_scores, metrics=["accuracy"]), _data()),
        ConfigError,
        r"metric 'accuracy' takes the model output as one tensor, but the model returned a dict with keys "
        r"\['scores'\]",
    ),
    "ModelOutput to a function metric": (
        lambda: _fit(
            _model(_Dict(_ModelOutput), loss=_pick_scores, metrics={"f": lambda p, t: 0.0}), _data()
        ),
        ConfigError,
        r"metric 'f' takes .* a _ModelOutput with keys \['scores'\]",
    ),
    "labels out of range": (
        lambda: _fit(_model(), (torch.randn(N, 4), torch.full((N,), 5))),
        DataError,
        r"labels must lie in \[0, 3\).*found labels from 5 to 5",
    ),
    "float class labels": (
        lambda: _fit(_model(), (torch.randn(N, 4), torch.randint(0, 3, (N,)).float())),
        DataError,
        r"needs integer class labels",
    ),
    "train target shape": (
        lambda: _fit(_model(mlp(4, 1), loss=nn.MSELoss()), (torch.randn(N, 4), torch.randn(N))),
        ShapeError,
        r"MSELoss: model output has shape \(16, 1\) but target has shape \(16,\)",
    ),
    "validation target shape": (
        _validation_shape,
        ShapeError,
        r"model output has shape \(16, 1\) but target .*\(16,\)",
    ),
    "evaluate target shape": (
        _evaluate_shape,
        ShapeError,
        r"model output has shape \(32, 1\) but target .*\(32,\)",
    ),
    "non-finite loss": (
        _nan_data,
        NonFiniteLossError,
        r"non-finite at epoch 1, step 3 \(batch 3 of the epoch\)",
    ),
    "function metric not a number": (
        _function_metric_not_a_number,
        ConfigError,
        r"metric 'bad' returned str",
    ),
    # the net does not fit the data
    "feature count": (
        lambda: _fit(_model(), (torch.randn(N, 5), _data()[1])),
        DataError,
        r"layer '0' \(Linear\(in_features=4.*received an input of shape \(16, 5\) float32; "
        r"it expects inputs of "
        r"shape \(\.\.\., 4\) and dtype float32",
    ),
    "float64 input": (
        lambda: _fit(
            _model(), torch.utils.data.TensorDataset(torch.randn(N, 4, dtype=torch.float64), _data()[1])
        ),
        DataError,
        r"layer '0'.*shape \(16, 4\) float64; it expects .*dtype float32",
    ),
    "image channels": (
        lambda: _fit(_model(_Conv()), (torch.randn(N, 1, 8, 8), torch.randint(0, 2, (N,)))),
        DataError,
        r"layer 'features.0' \(Conv2d.*shape \(16, 1, 8, 8\) float32; "
        r"it expects inputs of shape \(N, 3, H, W\)",
    ),
    "float token ids": (
        lambda: _fit(_model(_TextNet()), (torch.rand(N, 7) * 9, torch.randint(0, 2, (N,)))),
        DataError,
        r"layer 'embedding' \(Embedding\(10, 4\)\).*float32; it expects integer indices",
    ),
    "sample weights as a third element": (
        _weights_tuple,
        DataError,
        r"batch of 3 elements.*looks like sample weights: compile\(weighted=True\).*\(\(x1, x2\), y\)",
    ),
    # files
    "resume Adam state with SGD": (
        _resume_adam_with_sgd,
        CheckpointError,
        r"holds the state of a Adam optimizer, but this model's optimizer is a SGD",
    ),
    "resume from nothing": (
        lambda: _fit(_model(), _data(), resume="/nonexistent/ck"),
        CheckpointError,
        r"nothing to resume from",
    ),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_misuse_gets_an_ember_error_naming_the_cause(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    action, error, message = ERRORS[name]
    call = (lambda: action(tmp_path)) if action is _resume_adam_with_sgd else action
    with pytest.raises(error, match=message) as info:
        call()
    assert isinstance(info.value, EmberError)


def _hand_trained(x, y, batch, epochs=1, lr=0.1):
    net = mlp()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(epochs):
        for i in range(0, len(x), batch):
            loss = nn.functional.cross_entropy(net(x[i : i + batch]), y[i : i + batch])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    return net


def _same_weights(a, b):
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_a_list_of_sample_tuples_is_batched_like_a_dataset():
    x, y = _data()
    samples = [(x[i], int(y[i])) for i in range(N)]
    model = _model()
    history = _fit(model, samples, shuffle=False)
    _same_weights(model.net, _hand_trained(x, y, 16))
    assert len(history) == 1


def test_keras_positional_x_y_trains_like_plain_pytorch():
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    _same_weights(model.net, _hand_trained(x, y, 16, epochs=2))


def test_three_inputs_and_a_label_still_train():
    x, y = _data()

    class ThreeInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = mlp(12)

        def forward(self, a, b, c):
            return self.body(torch.cat([a, b, c], 1))

    history = _fit(_model(ThreeInputs()), torch.utils.data.TensorDataset(x, x, x, y))
    assert len(history) == 1 and history["loss"].iloc[0] > 0


def test_uint8_labels_reach_the_loss_as_their_values():
    x, y = _data()
    reference = _model()
    reference_history = _fit(reference, (x, y), shuffle=False)
    model = _model()
    history = _fit(model, (x, y.to(torch.uint8)), shuffle=False)
    assert history["loss"].iloc[0] == pytest.approx(reference_history["loss"].iloc[0])
    _same_weights(model.net, reference.net)


def test_bf16_predictions_come_back_as_float32_for_numpy():
    x, _ = _data()
    model = _model(precision="bf16")
    out = model.predict(x)
    assert out.dtype == torch.float32
    assert np.asarray(out).shape == (N, 3)
    ref = mlp()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = ref(x)
    torch.testing.assert_close(out, expected.float())
    pairs = ember.Model(_Dict()).compile(nn.CrossEntropyLoss(), device="cpu", precision="bf16").predict(x)
    assert pairs["scores"].dtype == torch.float32


def test_positive_grad_clip_clips_like_torch():
    x, y = _data()
    model = _model(grad_clip=0.01)
    _fit(model, (x, y), shuffle=False)
    net = mlp()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    for i in range(0, N, 16):
        nn.functional.cross_entropy(net(x[i : i + 16]), y[i : i + 16]).backward()
        nn.utils.clip_grad_norm_(net.parameters(), 0.01)
        optimizer.step()
        optimizer.zero_grad()
    _same_weights(model.net, net)


def test_the_suite_holds_at_least_fifty_scenarios():
    extra = [
        name
        for name in globals()
        if name.startswith("test_") and name != "test_the_suite_holds_at_least_fifty_scenarios"
    ]
    assert len(ERRORS) + len(extra) - 1 >= 50


class _OutOfMemory(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = mlp()

    def forward(self, x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_is_never_rewritten_as_a_data_error():
    with pytest.raises(torch.cuda.OutOfMemoryError, match="Tried to allocate"):
        _fit(_model(_OutOfMemory()), _data())


def test_a_float_target_of_two_inputs_gets_the_layer_not_the_weights_message():
    x, y = _data()

    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(7, 1)  # the bug: two inputs of 4 features make 8

        def forward(self, a, b):
            return self.head(torch.cat([a, b], 1))

    data = torch.utils.data.TensorDataset(x, x, y.float().view(-1, 1))
    with pytest.raises(DataError, match=r"layer 'head' \(Linear\(in_features=7.*shape \(16, 8\)"):
        _fit(_model(TwoInputs(), loss=nn.MSELoss()), data)


def test_an_overridden_forward_is_what_runs_again():
    x, y = _data()

    class DictModel(ember.Model):
        def forward(self, inputs):
            return super().forward(inputs["x"])

    model = DictModel(mlp(5)).compile(nn.CrossEntropyLoss(), device="cpu")
    batches = [({"x": x[i : i + 16]}, y[i : i + 16]) for i in range(0, N, 16)]
    with pytest.raises(DataError, match=r"layer '0' \(Linear\(in_features=5.*shape \(16, 4\) float32"):
        model.fit(batches, verbose=0)


def test_a_function_metric_is_shared_not_copied():
    import threading

    class Scorer:
        def __init__(self):
            self.lock, self.calls = threading.Lock(), 0

        def __call__(self, preds, target):
            with self.lock:
                self.calls += 1
            return 1.0

    scorer = Scorer()
    history = _fit(_model(metrics={"s": scorer}), _data())
    assert scorer.calls == 4 and history["s"].iloc[0] == 1.0


def test_a_loader_stopped_mid_epoch_starts_whole_next_time():
    from ember.callbacks import Callback
    from ember.data import DeviceLoader

    class Stop(Callback):
        def on_train_batch_end(self, state):
            state.should_stop = state.batch == 2

    x, y = _data()
    loader = DeviceLoader(x, y, batch_size=8, shuffle=False)
    model = _model()
    _fit(model, loader, batch_size=None, callbacks=[Stop()])
    assert model.evaluate(loader)["loss"] == pytest.approx(model.evaluate((x, y))["loss"])


def test_numpy_integers_are_integers():
    history = _fit(_model(), _data(), epochs=np.int64(2), batch_size=np.int64(16))
    assert len(history) == 2
    assert ember.seed_everything(np.int64(3)) == 3


def test_a_refused_resume_changes_no_weight(tmp_path):
    folder = _adam_checkpoints(tmp_path)
    other = _model()
    before = {k: v.clone() for k, v in other.net.state_dict().items()}
    with pytest.raises(CheckpointError, match="holds the state of a Adam optimizer"):
        other.load(ModelCheckpoint(folder).latest())
    assert all(torch.equal(v, other.net.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.int8])
def test_labels_of_an_integer_type_torch_refuses_get_a_named_error(dtype):
    x, y = _data()
    with pytest.raises(
        DataError, match=rf"CrossEntropyLoss needs int64 labels of shape \(16,\), got {dtype}"
    ):
        _fit(_model(), torch.utils.data.TensorDataset(x, y.to(dtype)))
