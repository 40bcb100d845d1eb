import math

import pytest
import torch

from ember.errors import ShapeError
from ember.metrics import MAE, MSE, RMSE


def _feed(metric, batches):
    for p, t in batches:
        metric.update(torch.tensor(p), torch.tensor(t))
    return metric.compute().item()


BATCHES = [([1.0, 2.0, 3.0], [1.0, 1.0, 1.0]), ([5.0], [1.0])]  # errors 0,1,2 | 4


def test_mae_is_over_all_samples_not_mean_of_batch_means():
    assert _feed(MAE(), BATCHES) == pytest.approx((0 + 1 + 2 + 4) / 4)  # batch means: (1 + 4)/2


def test_mse_and_rmse():
    assert _feed(MSE(), BATCHES) == pytest.approx((0 + 1 + 4 + 16) / 4)
    assert _feed(RMSE(), BATCHES) == pytest.approx(math.sqrt(21 / 4))


def test_column_vs_flat_targets_compare_elementwise():
    m = MAE()
    m.update(torch.tensor([[1.0], [2.0]]), torch.tensor([0.0, 0.0]))
    assert m.compute().item() == pytest.approx(1.5)


def test_element_count_mismatch_is_an_error():
    with pytest.raises(ShapeError, match=r"mae.*\(3,\).*\(2,\)"):
        MAE().update(torch.zeros(3), torch.zeros(2))
