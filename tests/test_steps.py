"""One step body per fit: a custom train_step with several optimizers (a GAN) trains with fit, is
checkpointed with every optimizer and resumes mid-epoch bitwise; the step context reaches it."""

import pytest
import torch
from torch import nn

import ember
from ember.callbacks import Callback, ModelCheckpoint
from ember.errors import CheckpointError


class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.generator = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        self.discriminator = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))


class GAN(ember.Model):
    """Both players in one train_step; fit, checkpoints and resume take care of the rest."""

    def train_step(self, batch):
        real, _ = self.unpack(batch)
        generator, discriminator = self.net.generator, self.net.discriminator
        ones, zeros = torch.ones(len(real), 1), torch.zeros(len(real), 1)
        fake = generator(torch.randn(len(real), 4))
        self.optimizers["discriminator"].zero_grad(set_to_none=True)  # the generator's backward left some
        d_loss = self.loss(discriminator(real), ones) + self.loss(discriminator(fake.detach()), zeros)
        self.optimize(d_loss, self.optimizers["discriminator"])
        g_loss = self.loss(discriminator(fake), ones)
        self.optimize(g_loss, self.optimizers["generator"])
        return ember.StepOutput(d_loss.detach() + g_loss.detach(), None, None, len(real))


REAL = torch.randn(96, 2, generator=torch.Generator().manual_seed(0)) * 0.5 + torch.tensor([2.0, -1.0])


def _gan():
    ember.seed_everything(0)
    net = Pair()
    optimizers = {
        "generator": torch.optim.Adam(net.generator.parameters(), lr=2e-3, betas=(0.5, 0.999)),
        "discriminator": torch.optim.Adam(net.discriminator.parameters(), lr=2e-3, betas=(0.5, 0.999)),
    }
    return GAN(net).compile(loss=nn.BCEWithLogitsLoss(), optimizer=optimizers, device="cpu")


class _Stop(Exception):
    pass


class _StopAt(Callback):
    order = 200

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, state):
        if state.step == self.step:
            raise _Stop


def _fit(model, callbacks=(), resume=None):
    return model.fit((REAL,), epochs=3, batch_size=16, callbacks=list(callbacks), verbose=0, resume=resume)


def test_a_gan_trains_with_fit_and_resumes_mid_epoch_bitwise(tmp_path):
    reference = _gan()
    initial = {k: v.clone() for k, v in reference.net.state_dict().items()}
    history = _fit(reference)
    assert len(history) == 3 and history["loss"].notna().all()
    trained = reference.net.state_dict()
    assert all(not torch.equal(initial[k], trained[k]) for k in initial)  # both players stepped

    first = _gan()
    with pytest.raises(_Stop):
        _fit(first, [ModelCheckpoint(tmp_path / "ck", every_n_steps=4), _StopAt(8)])  # epoch 2, batch 2
    resumed = _gan()
    resumed_history = _fit(
        resumed, [ModelCheckpoint(tmp_path / "ck", every_n_steps=4)], resume=tmp_path / "ck"
    )
    for (name, a), b in zip(
        reference.net.state_dict().items(), resumed.net.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    for name, optimizer in reference.optimizers.items():
        for a, b in zip(optimizer.state.values(), resumed.optimizers[name].state.values(), strict=True):
            assert torch.equal(a["exp_avg"], b["exp_avg"]), name
    assert resumed_history["loss"].tolist() == history["loss"].tolist()


def test_a_checkpoint_needs_every_optimizer_of_the_step(tmp_path):
    model = _gan()
    _fit(model, [ModelCheckpoint(tmp_path / "ck")])
    net = Pair()
    single = ember.Model(net).compile(
        nn.BCEWithLogitsLoss(), torch.optim.Adam(net.generator.parameters()), device="cpu"
    )
    with pytest.raises(
        CheckpointError,
        match=r"the checkpoint holds the state of 'optimizer.discriminator', which this model lacks",
    ):
        single.load(ModelCheckpoint(tmp_path / "ck").latest())


def test_the_step_context_carries_the_loss_scale_into_backward():
    net = nn.Linear(3, 1, bias=False)
    model = ember.Model(net).compile(nn.MSELoss(), torch.optim.SGD(net.parameters(), lr=1.0), device="cpu")
    x, y = torch.ones(4, 3), torch.zeros(4, 1)
    nn.init.constant_(net.weight, 1.0)
    model.step_context = ember.StepContext(loss_scale=0.5)
    model.train_step((x, y))  # d/dw mean((3)^2) = 2 * 3 * 1 = 6 per weight, halved: 3
    assert torch.allclose(net.weight, torch.full((1, 3), 1.0 - 3.0))


def test_evaluate_before_compile_asks_for_compile_and_predict_works():
    model = ember.Model(nn.Linear(3, 2))
    assert model.predict(torch.ones(5, 3)).shape == (5, 2)
    with pytest.raises(ember.ConfigError, match=r"call model.compile\(loss=...\) before fit, evaluate"):
        model.evaluate((torch.ones(5, 3), torch.zeros(5, dtype=torch.long)))


def test_the_gradient_scaler_updates_once_per_step_with_several_optimizers(monkeypatch):
    model = _gan()
    net = model.net
    optimizers = {"generator": torch.optim.SGD(net.generator.parameters(), lr=0.01)}
    optimizers["discriminator"] = torch.optim.SGD(net.discriminator.parameters(), lr=0.01)
    model.compile(loss=nn.BCEWithLogitsLoss(), optimizer=optimizers, precision="16", device="cpu")
    updates = []
    update = model.scaler.update
    monkeypatch.setattr(model.scaler, "update", lambda *a: updates.append(1) or update(*a))
    model.fit((REAL,), epochs=1, batch_size=16, verbose=0)
    assert len(updates) == 6  # 96 / 16 steps, two optimizers each


@pytest.mark.parametrize(
    ("optimizers", "message"),
    [
        (lambda net: {"g": None}, r"optimizer must be a torch.optim.Optimizer, got NoneType"),
        (lambda net: {}, r"optimizer=\{\} names no optimizer"),
        (lambda net: {"g d": torch.optim.SGD(net.parameters(), lr=0.1)}, r"letters, digits and _; got 'g d'"),
        (
            lambda net: {
                "a": torch.optim.SGD(net.parameters(), lr=0.1),
                "b": torch.optim.Adam(net.generator.parameters()),
            },
            r"optimizers 'a' and 'b' hold the same parameter \(shape \(8, 4\)\)",
        ),
    ],
)
def test_named_optimizers_are_checked(optimizers, message):
    net = Pair()
    with pytest.raises(ember.ConfigError, match=message):
        GAN(net).compile(loss=nn.BCEWithLogitsLoss(), optimizer=optimizers(net), device="cpu")


def test_the_step_context_is_fresh_after_a_fit():
    model = _gan()
    model.step_context = ember.StepContext(loss_scale=0.25)
    _fit(model)
    assert model.step_context == ember.StepContext()
