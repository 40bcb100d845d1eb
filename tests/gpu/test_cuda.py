"""The GPU checks: no host syncs in steady-state steps (``set_sync_debug_mode("error")``), real
CUDA-graph capture against eager training, exact resume with graphs, the capture fallback, reduced
precision, on-device image folders. On a machine without CUDA they run on the CPU with the stand-in
graph of tests/test_graphs.py (no sync checking, no real capture), so their logic stays exercised."""

import pytest
import torch
from torch import nn

import ember
import ember.model
from ember.callbacks import Callback, ModelCheckpoint
from ember.data import DeviceLoader, random_crop, random_flip
from ember.graphs import StepGraph
from tests.test_graphs import EagerGraph

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a real CUDA graph capture")


@pytest.fixture(autouse=True)
def _stand_in_graphs_without_cuda(monkeypatch):
    if not CUDA:
        monkeypatch.setattr(
            ember.model, "step_graph_for", lambda model: StepGraph(model, make_graph=EagerGraph)
        )


def _sync_debug(mode):
    if CUDA:
        torch.cuda.set_sync_debug_mode(mode)


def _net(logits=True):
    torch.manual_seed(0)
    layers = [
        nn.Conv2d(3, 16, 3), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3), nn.Dropout2d(0.1),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(32, 1),
    ]  # fmt: skip
    return nn.Sequential(*layers, *([] if logits else [nn.Sigmoid()]))


def _data(n=1000):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=generator)
    labels = (images[:, 0].float().mean((1, 2)) > 127.5).float().unsqueeze(1)
    return images, labels


def _loader(batch_size=50, augment=True):
    images, labels = _data()
    augment = [random_flip(), random_crop(2)] if augment else None
    return DeviceLoader(
        images, labels, batch_size=batch_size, shuffle=True, seed=1, device=DEVICE, augment=augment
    )


def _model(**options):
    return ember.Model(_net()).compile(
        loss=nn.BCEWithLogitsLoss(), metrics=["accuracy"], device=DEVICE, **options
    )


class NoSyncWindow(Callback):
    """Turns sync debugging to "error" from batch ``start`` to batch ``stop`` of the first epoch."""

    refresh_interval = 1e9  # no progress reads inside the window

    def __init__(self, start=8, stop=16):
        self.start, self.stop, self.checked = start, stop, 0

    def on_train_batch_end(self, state):
        if state.epoch == 1 and state.batch == self.start:
            _sync_debug("error")
        elif state.epoch == 1 and self.start < state.batch <= self.stop:
            self.checked += 1
            if state.batch == self.stop:
                _sync_debug("default")


@pytest.mark.parametrize("options", [{}, {"cuda_graphs": True}, {"precision": "bf16", "channels_last": True}])
def test_steady_state_steps_do_not_sync(options):
    window = NoSyncWindow()
    try:
        _model(**options).fit(_loader(), epochs=1, verbose=0, callbacks=[window])
    finally:
        _sync_debug("default")
    assert window.checked == 8


def test_graphed_training_matches_eager():
    eager = _model()
    eager.fit(_loader(), epochs=3, verbose=0)
    graphed = _model(cuda_graphs=True)
    graphed.fit(_loader(), epochs=3, verbose=0)
    assert graphed._graphs.reason is None and graphed._graphs.eager_batches == 0
    assert graphed.history["compile_seconds"].iloc[0] > 0
    for column in ("loss", "accuracy"):
        assert graphed.history[column].to_numpy() == pytest.approx(eager.history[column].to_numpy(), rel=1e-4)
    for x, y in zip(eager.net.state_dict().values(), graphed.net.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_graphed_resume_mid_epoch_is_exact(tmp_path):
    whole = _model(cuda_graphs=True)
    checkpoints = ModelCheckpoint(tmp_path, every_n_steps=13, keep_last=None)
    whole.fit(_loader(), epochs=2, verbose=0, callbacks=[checkpoints])
    resumed = _model(cuda_graphs=True)
    resumed.fit(_loader(), epochs=2, verbose=0, resume=tmp_path / "epoch0001-step000000013")
    for x, y in zip(whole.net.state_dict().values(), resumed.net.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    columns = ["loss", "accuracy"]
    assert resumed.history[columns].equals(whole.history[columns])


class Syncing(nn.Module):
    """A net whose forward reads a value on the host: it cannot be captured."""

    def __init__(self):
        super().__init__()
        self.net = _net()

    def forward(self, x):
        out = self.net(x)
        if float(out.detach().abs().max()) > 1e6:
            raise AssertionError("unexpected")
        return out


@needs_cuda
def test_a_step_that_cannot_be_captured_trains_on_eagerly():
    model = ember.Model(Syncing()).compile(loss=nn.BCEWithLogitsLoss(), device="cuda", cuda_graphs=True)
    with pytest.warns(UserWarning, match="could not be captured"):
        model.fit(_loader(augment=False), epochs=2, verbose=0)
    eager = ember.Model(Syncing()).compile(loss=nn.BCEWithLogitsLoss(), device="cuda")
    eager.fit(_loader(augment=False), epochs=2, verbose=0)
    assert model.history["loss"].to_numpy() == pytest.approx(eager.history["loss"].to_numpy(), rel=1e-4)


@pytest.mark.parametrize("precision", ["bf16", "16"])
def test_reduced_precision_with_graphs_trains(precision):
    model = _model(cuda_graphs=True, precision=precision, channels_last=True)
    history = model.fit(_loader(batch_size=100), epochs=3, verbose=0)
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    print(precision, "captured" if model._graphs.reason is None else f"eager: {model._graphs.reason}")


def test_fit_on_device_with_an_image_folder_and_augmentation(tmp_path):
    from PIL import Image
    from torchvision import transforms as tv

    for label, color in (("a", 20), ("b", 230)):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(60):
            Image.new("RGB", (8, 8), (color, i, 0)).save(tmp_path / "imgs" / label / f"{i}.png")
    folder = ember.data.image_folder(tmp_path / "imgs", transform=tv.ToTensor(),
                                     target_transform=lambda t: torch.tensor([t]).float())  # fmt: skip
    model = _model(cuda_graphs=True)
    history = model.fit(folder, epochs=4, batch_size=20, on_device=True, augment=random_flip(), verbose=0)
    assert history["accuracy"].iloc[-1] == 1.0


@needs_cuda
def test_device_decode_on_cuda_matches_the_cpu_decoders(tmp_path):
    from PIL import Image

    from ember.data.device_decode import decoded_batches
    from tests.data.test_decode import _mixed_folder

    root = _mixed_folder(tmp_path / "imgs")
    for flat in root.glob("*/flat.png"):  # JPEGs only: each batch goes through nvJPEG in one call
        flat.unlink()
    Image.new("RGB", (70, 90), (9, 9, 9)).save(root / "cats" / "flat.jpg")
    runs = {}
    for device in ("cuda", "cpu"):
        batches = decoded_batches(root, 32, batch_size=4, device=device, seed=5, num_workers=2,
                                  cache_dir=tmp_path / "c")  # fmt: skip
        runs[device] = [(images.cpu(), labels.cpu()) for images, labels in batches]
        assert all(images.device.type == device for images, _ in batches)
    for (gpu, gpu_labels), (cpu, cpu_labels) in zip(runs["cuda"], runs["cpu"], strict=True):
        assert torch.equal(gpu_labels, cpu_labels)  # the same crops: the seed, not the device, draws them
        assert (gpu - cpu).abs().mean() < 0.03  # nvJPEG's IDCT is not libjpeg-turbo's, bit for bit
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    model = ember.Model(net).compile(loss=nn.CrossEntropyLoss(), metrics=["accuracy"], device="cuda")
    batches = decoded_batches(root, 32, batch_size=4, device="cuda", seed=5, cache_dir=tmp_path / "c")
    history = model.fit(batches, epochs=2, verbose=0)
    assert len(history) == 2 and history["loss"].notna().all()
