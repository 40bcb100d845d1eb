"""Shared fixtures: small deterministic datasets and the path to the real data beside the project."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ember.metrics import Metric

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _one_thread_and_seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def blobs() -> tuple[torch.Tensor, torch.Tensor]:
    """300 samples, 4 features, 3 classes that a small MLP separates."""
    generator = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (300,), generator=generator)
    centers = torch.tensor([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    x = centers[y] + 0.5 * torch.randn(300, 4, generator=generator)
    return x, y


def mlp(inputs: int = 4, outputs: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(inputs, 16), torch.nn.ReLU(), torch.nn.Linear(16, outputs))


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path


class DeclaredScore(Metric):
    """A custom metric whose name says nothing but which declares that higher is better."""

    higher_is_better = True

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Nothing to add: only the declaration matters to the tests."""

    def compute(self) -> torch.Tensor:
        """A constant."""
        return torch.tensor(0.0)
