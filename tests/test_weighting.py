"""ember.weighting: per-sample losses, the weighted mean, class weights, against hand computations."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from ember.errors import ConfigError, ShapeError
from ember.weighting import (
    check_class_weight,
    class_sample_weights,
    class_weight_table,
    per_sample_loss,
    weighted_mean,
)
from tests.host_ops import HostOps

LN2, LN3 = math.log(2), math.log(3)

# -- weighted_mean ------------------------------------------------------------------------------


def test_weighted_mean_divides_by_the_weight_sum_not_the_count():
    values = torch.tensor([1.0, 3.0], requires_grad=True)
    mean = weighted_mean(values, torch.tensor([3.0, 1.0]))
    mean.backward()
    assert mean.item() == 1.5  # Keras would give (3 + 3) / 2 = 3.0
    assert values.grad.tolist() == [0.75, 0.25]


def test_weighted_mean_of_zero_weights_is_zero_with_zero_gradients():
    values = torch.tensor([2.0, 5.0], requires_grad=True)
    mean = weighted_mean(values, torch.zeros(2))
    mean.backward()
    assert mean.item() == 0.0 and values.grad.tolist() == [0.0, 0.0]


def test_weighted_mean_sums_half_precision_in_float32():
    mean = weighted_mean(torch.full((4,), 2.0, dtype=torch.float16), torch.full((4,), 30000.0))
    assert mean.dtype == torch.float32 and mean.item() == 2.0  # the weight sum overflows float16


def test_weighted_mean_shapes_must_pair_samples():
    with pytest.raises(ShapeError, match=r"values \(2, 3\) and weights \(2,\)"):
        weighted_mean(torch.zeros(2, 3), torch.ones(2))


# -- per_sample_loss ----------------------------------------------------------------------------


def test_module_losses_become_per_sample_means_and_the_original_is_untouched():
    mse = nn.MSELoss()
    per_sample = per_sample_loss(mse)
    losses = per_sample(torch.tensor([[1.0, 3.0], [0.0, 2.0]]), torch.zeros(2, 2))
    assert losses.tolist() == [5.0, 2.0] and mse.reduction == "mean"
    preds, target = torch.randn(5, 3), torch.randn(5, 3)
    assert weighted_mean(per_sample(preds, target), torch.ones(5)).item() == pytest.approx(
        mse(preds, target).item(), rel=1e-6
    )


def test_cross_entropy_per_sample_and_weighted_by_hand():
    logits, target = torch.tensor([[0.0, 0.0], [LN3, 0.0]]), torch.tensor([0, 1])  # losses ln2, ln4
    losses = per_sample_loss(nn.CrossEntropyLoss())(logits, target)
    assert losses.tolist() == pytest.approx([LN2, 2 * LN2])
    assert weighted_mean(losses, torch.tensor([3.0, 1.0])).item() == pytest.approx(5 * LN2 / 4)


def test_cross_entropy_ignore_index_is_left_out_of_a_sequence_mean():
    logits = torch.zeros(1, 2, 3)  # every position: ln 2
    target = torch.tensor([[0, -100, 1]])
    assert per_sample_loss(nn.CrossEntropyLoss())(logits, target).tolist() == pytest.approx(
        [LN2]
    )  # not 2ln2/3
    all_ignored = per_sample_loss(nn.NLLLoss())(torch.zeros(1, 2, 2), torch.full((1, 2), -100))
    assert all_ignored.tolist() == [0.0]


def test_buffers_are_shared_and_batchmean_sums_per_sample():
    bce = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([2.0]))
    losses = per_sample_loss(bce)(torch.zeros(2, 1), torch.tensor([[1.0], [0.0]]))
    assert losses.tolist() == pytest.approx([2 * LN2, LN2])
    kl = nn.KLDivLoss(reduction="batchmean")
    log_p, q = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.75]])), torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    per_sample = per_sample_loss(kl)(log_p, q)
    assert per_sample[0].item() == 0.0
    assert weighted_mean(per_sample, torch.ones(2)).item() == pytest.approx(kl(log_p, q).item())


def test_class_weighted_cross_entropy_and_sum_reduction_are_refused():
    with pytest.raises(ConfigError, match=r"CrossEntropyLoss\(weight=...\).*fit\(class_weight="):
        per_sample_loss(nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0])))
    with pytest.raises(ConfigError, match=r"NLLLoss\(weight=...\)"):
        per_sample_loss(nn.NLLLoss(weight=torch.tensor([1.0, 2.0])))
    with pytest.raises(ConfigError, match=r"L1Loss has reduction='sum'; use reduction='mean'"):
        per_sample_loss(nn.L1Loss(reduction="sum"))


def test_functions_must_return_one_loss_per_sample():
    def mean_abs(p, t):
        return (p - t).abs().mean()

    with pytest.raises(ConfigError, match=r"loss mean_abs returned a 0-dim tensor; a loss function should"):
        per_sample_loss(mean_abs)(torch.zeros(2), torch.ones(2))
    with pytest.raises(ConfigError, match=r"returned a float"):
        per_sample_loss(lambda p, t: 1.0)(torch.zeros(2), torch.ones(2))

    class MeanOnly(nn.Module):  # has a reduction attribute but ignores it
        reduction = "mean"

        def forward(self, p, t):
            return (p - t).abs().mean()

    with pytest.raises(ConfigError, match=r"loss MeanOnly returned a 0-dim tensor"):
        per_sample_loss(MeanOnly())(torch.zeros(2), torch.ones(2))
    rows = per_sample_loss(lambda p, t: (p - t).abs())(torch.tensor([[1.0, 3.0]]), torch.zeros(1, 2))
    assert rows.tolist() == [2.0]


# -- class weights ------------------------------------------------------------------------------


def test_check_class_weight_normalises_keys_and_values():
    assert check_class_weight({0: 1, np.int64(2): np.float32(0.5)}) == {0: 1.0, 2: 0.5}


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({-1: 1.0}, r"key -1 is not a class index"),
        ({1.5: 1.0}, r"key 1.5 is not a class index"),
        ({True: 1.0}, r"key True is not a class index"),
        ({"cat": 1.0}, r"key 'cat' is not a class index"),
        ({0: -2.0}, r"class_weight\[0\] = -2.0: weights must be finite non-negative"),
        ({0: float("nan")}, r"class_weight\[0\] = nan"),
        ({3: "5"}, r"class_weight\[3\] = '5'"),
        ({0: 0.0, 1: 0}, r"every class weight 0"),
        ({}, r"non-empty mapping"),
        ([1.0, 5.0], r"non-empty mapping .* got a list"),
    ],
)
def test_check_class_weight_names_the_bad_entry(mapping, message):
    with pytest.raises(ConfigError, match=message):
        check_class_weight(mapping)


def test_class_sample_weights_from_integer_targets_default_one():
    weights = class_sample_weights({0: 1.0, 1: 5.0}, torch.tensor([1, 0, 1, 2, -100, 7]))
    assert weights.tolist() == [5.0, 1.0, 5.0, 1.0, 1.0, 1.0]  # 2, 7 missing; -100 outside


def test_class_sample_weights_from_binary_one_hot_and_column_targets():
    cw = {0: 0.5, 1: 4.0}
    assert class_sample_weights(cw, torch.tensor([[1.0], [0.0], [0.9]])).tolist() == [4.0, 0.5, 4.0]
    assert class_sample_weights(cw, torch.tensor([1.0, 0.0])).tolist() == [4.0, 0.5]
    assert class_sample_weights(cw, torch.tensor([[0.0, 1.0], [1.0, 0.0]])).tolist() == [4.0, 0.5]
    assert class_sample_weights(cw, torch.tensor([[1], [0]])).tolist() == [4.0, 0.5]
    with pytest.raises(ShapeError, match=r"one class per sample.*got \(2, 3\)"):
        class_sample_weights(cw, torch.zeros(2, 3, dtype=torch.long))


def test_a_prebuilt_table_gives_the_same_weights_without_host_reads():
    table = class_weight_table({0: 0.5, 2: 4.0})
    assert table.tolist() == [0.5, 1.0, 4.0, 1.0]
    target = torch.tensor([2, 1, 0, 3])
    with HostOps() as watch:
        weights = class_sample_weights(table, target)
        loss = weighted_mean(per_sample_loss(nn.CrossEntropyLoss())(torch.zeros(4, 4), target), weights)
    assert watch.ops == []
    assert weights.tolist() == [4.0, 1.0, 0.5, 1.0] and loss.item() == pytest.approx(math.log(4))


def test_class_weight_as_sample_weights_equals_torch_class_weighted_cross_entropy():
    torch.manual_seed(0)
    logits, target = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    cw = {0: 1.0, 1: 5.0, 2: 0.5}
    ours = weighted_mean(
        per_sample_loss(nn.CrossEntropyLoss())(logits, target), class_sample_weights(cw, target)
    )
    torchs = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 5.0, 0.5]))(logits, target)
    assert ours.item() == pytest.approx(torchs.item(), rel=1e-6)
