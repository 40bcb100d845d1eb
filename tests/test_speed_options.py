"""compile(channels_last=..., jit=...) on CPU: the same training, other memory layout / compiled steps."""

import pytest
import torch
from torch import nn

import ember


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)
    )


DATA = (torch.randn(64, 3, 12, 12), torch.randint(0, 2, (64,)))


def _fit(**options):
    net = _cnn()
    model = ember.Model(net).compile(
        loss=nn.CrossEntropyLoss(),
        device="cpu",
        metrics=["accuracy"],
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        **options,
    )
    return model, model.fit(DATA, epochs=2, batch_size=16, shuffle=False, verbose=0)


def test_channels_last_trains_the_same():
    seen = []
    model, history = _fit(channels_last=True)
    assert model.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    model.net[0].register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    model.fit(DATA, epochs=1, batch_size=16, verbose=0)
    assert seen and all(seen)
    _, plain = _fit()
    assert history["loss"].to_numpy() == pytest.approx(plain["loss"].to_numpy(), abs=1e-5)


def test_jit_compiles_the_training_step_and_logs_the_compile_time():
    model, history = _fit(jit=True)
    _, plain = _fit()
    assert list(history.columns) == ["epoch", "loss", "accuracy", "compile_seconds", "lr", "seconds"]
    assert history["compile_seconds"].iloc[0] > 0 and history["compile_seconds"].iloc[1] == 0
    assert history["loss"].to_numpy() == pytest.approx(plain["loss"].to_numpy(), abs=1e-4)
    assert sorted(model.net.state_dict()) == sorted(_cnn().state_dict())  # no _orig_mod. prefix
    assert isinstance(model._train_loss, torch._dynamo.eval_frame.OptimizedModule)  # the loss too
    again = model.fit(DATA, epochs=1, batch_size=16, verbose=0)  # compiled already: nothing to time
    assert again["compile_seconds"].iloc[-1] == 0
    assert isinstance(model.loss, nn.CrossEntropyLoss)  # what the input checks look at
