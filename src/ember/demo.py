"""``ember demo``: the tutorial's CNN trained end to end on real images, with every output a user expects.

Data: an image-folder tree (``--data DIR`` with ``train/`` and ``test/``, e.g. the CIFAR-2 folders),
or, by default, one built from scikit-learn's bundled handwritten digits (no download). Writes the
history (CSV and PNG), the best and last weights, and a predictions sample into the output folder.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from ember.callbacks import CSVLogger, ModelCheckpoint
from ember.errors import ConfigError, DataError
from ember.model import Model
from ember.seed import seed_everything
from ember.summary import summary

__all__ = ["CnnModel", "digits_image_folder", "run_demo"]


class CnnModel(nn.Module):
    """The tutorial's class-style CNN (Conv 3->32->64, pools, dropout, two linear layers)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [
                nn.Conv2d(in_channels, 32, kernel_size=3),
                nn.MaxPool2d(2, 2),
                nn.Conv2d(32, 64, kernel_size=5),
                nn.MaxPool2d(2, 2),
                nn.Dropout2d(p=0.1),
                nn.AdaptiveMaxPool2d((1, 1)),
                nn.Flatten(),
                nn.Linear(64, 32),
                nn.ReLU(),
                nn.Linear(32, num_classes),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layers in order."""
        for layer in self.layers:
            x = layer(x)
        return x


def digits_image_folder(root: str | Path, test_fraction: float = 0.2, seed: int = 0) -> Path:
    """Write scikit-learn's 1797 8x8 digits as 32x32 RGB PNGs in ``root/{train,test}/<digit>/``."""
    root = Path(root)
    from PIL import Image

    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ConfigError("the built-in demo data needs scikit-learn: pip install 'ember[demo]'") from exc
    if (root / "train").is_dir() and (root / "test").is_dir():
        return root
    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.images))
    n_test = round(len(order) * test_fraction)
    for rank, index in enumerate(order):
        split = "test" if rank < n_test else "train"
        folder = root / split / str(digits.target[index])
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (digits.images[index] * (255 / 16)).astype(np.uint8)
        image = Image.fromarray(pixels).resize((32, 32), Image.Resampling.BILINEAR).convert("RGB")
        image.save(folder / f"{index:04d}.png")
    return root


def _loaders(data: Path, batch_size: int, augment: bool) -> tuple[DataLoader, DataLoader, list[str]]:
    for split in ("train", "test"):
        if not (data / split).is_dir():
            raise DataError(f"{data / split} is missing: --data needs train/ and test/ image folders")
    evaluation = transforms.ToTensor()
    training = transforms.Compose([transforms.RandomHorizontalFlip(), evaluation]) if augment else evaluation
    train_set = datasets.ImageFolder(str(data / "train"), transform=training)
    test_set = datasets.ImageFolder(str(data / "test"), transform=evaluation)
    generator = torch.Generator().manual_seed(0)
    return (
        DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=generator),
        DataLoader(test_set, batch_size=batch_size),
        train_set.classes,
    )


def run_demo(
    out: Path,
    data: Path | None = None,
    epochs: int | None = None,
    batch_size: int = 50,
    verbose: int = 1,
) -> dict[str, float]:
    """Train, evaluate and write every artefact; returns the test loss and accuracy."""
    seed_everything(0)
    out.mkdir(parents=True, exist_ok=True)
    if data is None:
        print("data: scikit-learn's handwritten digits as a 32x32 image folder (no download)")
        data, epochs, augment = digits_image_folder(out / "digits"), epochs or 10, False
    else:
        epochs, augment = epochs or 3, True
    train, test, classes = _loaders(data, batch_size, augment)
    print(f"data: {data} - {len(train.dataset)} train / {len(test.dataset)} test images, classes {classes}")
    net = CnnModel(3, len(classes))
    summary(net, input_shape=(3, 32, 32))
    model = Model(net).compile(
        loss=nn.CrossEntropyLoss(),
        metrics=["accuracy"],
        optimizer=torch.optim.Adam(net.parameters(), lr=1e-3),
    )
    checkpoint = ModelCheckpoint(
        out / "checkpoints", save_best=True, monitor="val_accuracy", mode="max", keep_last=1
    )
    history = model.fit(
        train,
        epochs=epochs,
        validation_data=test,
        verbose=verbose,
        callbacks=[checkpoint, CSVLogger(out / "history.csv")],
    )
    print(history.to_string(index=False))
    history.plot(path=out / "history.png")
    result = model.evaluate(test)
    _write_predictions(model, test, classes, out / "predictions.csv")
    print(f"test accuracy: {result['accuracy']:.4f} (loss {result['loss']:.4f})")
    print(
        f"wrote {out / 'history.png'}, {out / 'history.csv'}, {checkpoint.best_path}, "
        f"{checkpoint.last_path}, {out / 'predictions.csv'}"
    )
    return result


def _write_predictions(
    model: Model, test: DataLoader, classes: list[str], path: Path, count: int = 20
) -> None:
    samples = test.dataset.samples[:count]  # type: ignore[attr-defined]
    images = torch.stack([test.dataset[i][0] for i in range(len(samples))])
    probabilities = model.predict(images).softmax(dim=1)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "predicted", "probability"])
        for (file, label), p in zip(samples, probabilities, strict=True):
            best = int(p.argmax())
            writer.writerow([file, classes[label], classes[best], f"{float(p[best]):.4f}"])
