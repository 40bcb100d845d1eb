"""Per-sample weights in the built-in metrics and the Meter, against hand computations."""

import math

import numpy as np
import pytest
import torch
import torchmetrics
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from ember.errors import ConfigError, ShapeError
from ember.metrics import AUC, MAE, MSE, RMSE, Accuracy, Meter, Metric, resolve_metrics
from tests.host_ops import HostOps

W = torch.tensor

# -- accuracy -----------------------------------------------------------------------------------


def test_weighted_multiclass_accuracy_then_an_unweighted_batch():
    m = Accuracy()
    m.update(W([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), W([0, 0, 0]), W([1.0, 2.0, 3.0]))  # correct 1,0,1
    assert m.compute().item() == pytest.approx(4 / 6)
    m.update(W([[0.1, 0.9]]), W([1]))  # unweighted: weight 1, correct
    assert m.compute().item() == pytest.approx(5 / 7)
    assert m.counts() == {"total": 4, "total_weighted": 3}


def test_weighted_binary_accuracy():
    m = Accuracy(from_logits=False)
    m.update(W([[0.3], [0.7], [0.6]]), W([[0.0], [1.0], [0.0]]), W([0.5, 1.0, 2.5]))  # correct 1,1,0
    assert m.compute().item() == pytest.approx(1.5 / 4)


def test_weighted_accuracy_averages_positions_within_a_sample():
    preds = W([[[2.0, 0.0], [0.0, 1.0]], [[2.0, 2.5], [0.0, 3.0]]])  # (N=2, C=2, L=2)
    target = W([[0, 0], [0, 1]])  # sample 0: correct 1,0 (0.5); sample 1: 1,1 (1.0)
    m = Accuracy()
    m.update(preds, target, W([3.0, 1.0]))
    assert m.compute().item() == pytest.approx((3 * 0.5 + 1 * 1.0) / 4)


def test_all_zero_weights_give_nan_not_a_number_from_nothing():
    m = Accuracy()
    m.update(W([[1.0, 0.0]]), W([0]), W([0.0]))
    assert math.isnan(m.compute().item())


# -- regression ---------------------------------------------------------------------------------

PREDS, ZEROS, WEIGHTS = W([[1.0, 3.0], [0.0, 1.0]]), torch.zeros(2, 2), W([1.0, 3.0])


def test_weighted_mae_mse_rmse_use_per_sample_means():
    # per-sample MAE: 2, 0.5; per-sample MSE: 5, 0.5; weights 1, 3
    for metric, expected in ((MAE(), 3.5 / 4), (MSE(), 6.5 / 4), (RMSE(), math.sqrt(6.5 / 4))):
        metric.update(PREDS, ZEROS, WEIGHTS)
        assert metric.compute().item() == pytest.approx(expected)


def test_weighted_and_unweighted_batches_mix_exactly():
    m = MAE()
    m.update(PREDS, ZEROS, WEIGHTS)
    m.update(W([[2.0, 2.0]]), torch.zeros(1, 2))  # one unweighted sample, MAE 2, weight 1
    assert m.compute().item() == pytest.approx((1 * 2 + 3 * 0.5 + 1 * 2) / 5)


def test_weights_of_ones_give_exactly_the_unweighted_values():
    torch.manual_seed(0)
    preds, target = torch.randn(37, 3), torch.randn(37, 3)
    logits, labels = torch.randn(37, 4), torch.randint(0, 4, (37,))
    scores, binary = torch.randint(0, 5, (37,)).float(), torch.randint(0, 2, (37,))
    cases = [(MAE, preds, target), (MSE, preds, target), (RMSE, preds, target)]
    cases += [(Accuracy, logits, labels), (AUC, scores, binary)]
    for kind, p, t in cases:
        plain, ones = kind(), kind()
        plain.update(p, t)
        ones.update(p, t, torch.ones(37))
        assert ones.compute().item() == plain.compute().item(), kind.__name__


def test_weight_shape_errors_name_both_shapes():
    cases = [(Accuracy(), torch.zeros(2).long()), (MAE(), torch.zeros(2, 2)), (AUC(), torch.zeros(2))]
    for metric, target in cases:
        with pytest.raises(ShapeError, match=r"sample weights \(3,\).*\(2, 2\)"):
            metric.update(torch.zeros(2, 2), target, torch.ones(3))
    with pytest.raises(ShapeError, match=r"\(2, 1\)"):
        MAE().update(torch.zeros(2), torch.zeros(2), torch.ones(2, 1))


# -- AUC ----------------------------------------------------------------------------------------


def test_weighted_auc_by_hand_with_a_tie():
    # pairs (pos, neg): 0.4(w1) > 0.1(w1): 1; 0.4 ties 0.4(w2): 1 * 2 / 2; 0.8(w3) > both: 3 + 6
    m = AUC()
    m.update(W([0.1, 0.4, 0.4, 0.8]), W([0, 0, 1, 1]), W([1.0, 2.0, 1.0, 3.0]))
    assert m.compute().item() == pytest.approx(11 / 12)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans(), st.floats(0.1, 5.0)), min_size=2, max_size=40))
def test_weighted_auc_matches_sklearn_sample_weight(rows):
    scores = np.array([s for s, _, _ in rows], dtype=float)
    labels = np.array([int(b) for _, b, _ in rows])
    weights = np.array([w for _, _, w in rows])
    if labels.min() == labels.max():
        return
    m = AUC()
    half = len(rows) // 2
    m.update(torch.tensor(scores[:half]), torch.tensor(labels[:half]), torch.tensor(weights[:half]))
    m.update(torch.tensor(scores[half:]), torch.tensor(labels[half:]), torch.tensor(weights[half:]))
    assert m.compute().item() == pytest.approx(roc_auc_score(labels, scores, sample_weight=weights), abs=1e-9)


def test_auc_unweighted_batches_weigh_one_and_survive_state_and_sync():
    whole = AUC()
    whole.update(W([0.1, 0.4, 0.4, 0.8]), W([0, 0, 1, 1]), W([1.0, 2.0, 1.0, 3.0]))
    whole.update(W([0.3, 0.9]), W([1, 0]), W([1.0, 1.0]))
    first, second = AUC(), AUC()
    first.update(W([0.1, 0.4, 0.4, 0.8]), W([0, 0, 1, 1]), W([1.0, 2.0, 1.0, 3.0]))
    second.update(W([0.3, 0.9]), W([1, 0]))  # no weights at all on this "process"
    assert set(second.state_dict()) == {"scores", "targets"}
    restored = AUC()
    restored.load_state_dict(first.state_dict())
    theirs = {k: v.cpu() for k, v in second.state_dict().items()}
    merged = restored.synchronize(lambda own: [own, theirs])
    assert merged.compute().item() == pytest.approx(whole.compute().item())
    # positives 0.4(w1) 0.8(w3) 0.3(w1), negatives 0.1(w1) 0.4(w2) 0.9(w1): pair sums 2, 9, 1
    assert whole.compute().item() == pytest.approx((2 + 9 + 1) / (5 * 4))


# -- state: state_dict, state_vector, clone, old states -------------------------------------------


def test_weighted_state_round_trip_sum_and_clone():
    a, b, whole = Accuracy(), Accuracy(), Accuracy()
    batches = [(W([[1.0, 0.0], [0.0, 1.0]]), W([0, 0]), W([2.0, 3.0])), (W([[0.0, 1.0]]), W([1]), None)]
    for metric, (p, t, w) in zip((a, b), batches, strict=True):
        metric.update(p, t, w)
    for p, t, w in batches:
        whole.update(p, t, w)
    summed = a.with_state_vector(a.state_vector() + b.state_vector())
    assert summed.compute().item() == pytest.approx(3 / 6) == whole.compute().item()
    restored, copy = Accuracy(), a.clone()
    restored.load_state_dict(a.state_dict())
    copy.update(*batches[1][:2])
    assert restored.compute().item() == pytest.approx(2 / 5)
    assert a.compute().item() == pytest.approx(2 / 5)  # the clone's update left it alone


def test_a_state_saved_before_weights_existed_still_loads():
    m = Accuracy()
    m.load_state_dict({"correct": torch.tensor(3.0, dtype=torch.float64), "total": 4})
    assert m.compute().item() == 0.75


# -- adapters -----------------------------------------------------------------------------------


def test_function_and_torchmetrics_metrics_refuse_weights_by_name():
    fn, tm = resolve_metrics({"pos": lambda p, t: 1.0, "tm": torchmetrics.MeanSquaredError()})
    with pytest.raises(ConfigError, match=r"'pos' is a plain function.*built-in metric \(acc, accuracy"):
        fn.update(torch.zeros(2), torch.zeros(2), torch.ones(2))
    with pytest.raises(ConfigError, match=r"'tm' is a torchmetrics MeanSquaredError.*without sample"):
        tm.update(torch.zeros(2), torch.zeros(2), torch.ones(2))


def test_a_custom_metric_without_a_weight_parameter_gets_a_config_error():
    class Count(Metric):
        def __init__(self):
            super().__init__("count")

        def update(self, preds, target):
            pass

    meter = Meter([Count()], torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"'count' \(Count\) has update\(preds, target\) without"):
        meter.update(torch.tensor(1.0), torch.zeros(2), torch.zeros(2), 2, torch.ones(2))


# -- meter --------------------------------------------------------------------------------------


def test_meter_loss_is_the_exact_weighted_sum_over_batches():
    meter = Meter([MAE()], torch.device("cpu"), capacity=1)  # grows past its capacity
    # batch 1: per-sample losses 1, 3 with weights 3, 1 -> weighted mean 1.5, W = 4
    meter.update(torch.tensor(1.5), PREDS, ZEROS, 2, WEIGHTS.flip(0))
    meter.update(torch.tensor(4.0), W([[2.0, 2.0]]), torch.zeros(1, 2), 1)  # unweighted, n = 1
    logs = meter.read()
    assert logs["loss"] == pytest.approx((3 * 1 + 1 * 3 + 4) / 5)
    assert logs["mae"] == pytest.approx((3 * 2 + 1 * 0.5 + 2) / 5)
    assert (meter.batches, meter.samples, meter.first_nonfinite()) == (2, 3, None)


def test_meter_weights_of_ones_give_exactly_the_unweighted_read():
    plain, ones = Meter([Accuracy()], torch.device("cpu")), Meter([Accuracy()], torch.device("cpu"))
    for loss, n in ((0.7, 3), (1.3, 5)):
        p, t = torch.randn(n, 3), torch.randint(0, 3, (n,))
        plain.update(torch.tensor(loss), p, t, n)
        ones.update(torch.tensor(loss), p, t, n, torch.ones(n))
    assert ones.read() == plain.read()


def test_meter_state_round_trip_keeps_weights_and_old_format():
    meter = Meter([Accuracy()], torch.device("cpu"))
    meter.update(torch.tensor(2.0), W([[1.0, 0.0]]), W([0]), 1)
    assert set(meter.state_dict()) == {"losses", "sizes", "metrics"}  # unweighted: format unchanged
    meter.update(torch.tensor(1.0), W([[1.0, 0.0], [0.0, 1.0]]), W([0, 0]), 2, W([0.5, 1.5]))
    restored = Meter([Accuracy()], torch.device("cpu"), capacity=1)
    restored.load_state_dict(meter.state_dict())
    restored.update(torch.tensor(3.0), W([[0.0, 1.0]]), W([1]), 1)
    # loss: (2*1 + 1*2 + 3*1) / (1 + 2 + 1); accuracy: (1 + 0.5 + 1) / 4
    assert restored.read() == {"loss": pytest.approx(7 / 4), "accuracy": pytest.approx(2.5 / 4)}
    restored.reset()
    restored.update(torch.tensor(3.0), W([[0.0, 1.0]]), W([1]), 1)
    assert restored.read() == {"loss": 3.0, "accuracy": 1.0}  # a reset forgets the weighted batches


def test_two_meters_summed_equal_one_meter_over_both_halves():
    def meter_over(batches):
        meter = Meter([Accuracy(), AUC(), MAE(name="mae")], torch.device("cpu"))
        for loss, preds, target, weight in batches:
            meter.update(torch.tensor(loss), preds, target, len(target), weight)
        return meter

    batches = [
        (0.5, W([[0.2], [0.9]]), W([[0.0], [1.0]]), W([2.0, 0.5])),
        (1.5, W([[0.7], [0.1], [0.6]]), W([[0.0], [1.0], [1.0]]), None),
    ]
    whole = meter_over(batches).read()
    first, second = meter_over(batches[:1]), meter_over(batches[1:])
    recorded = []
    second._global(lambda v: recorded.append(v) or v, lambda obj: [obj])
    auc_of_second = {k: v.cpu() for k, v in second.metrics[1].state_dict().items()}
    merged = first.read(reduce=lambda v: v + recorded[0], gather=lambda obj: [obj, auc_of_second])
    assert merged == pytest.approx(whole)
    assert whole["loss"] == pytest.approx((0.5 * 2.5 + 1.5 * 3) / 5.5)


def test_meter_first_nonfinite_with_weights():
    meter = Meter([], torch.device("cpu"))
    meter.update(torch.tensor(1.0), None, None, 2, W([1.0, 1.0]))
    meter.update(torch.tensor(float("nan")), None, None, 2, W([1.0, 2.0]))
    assert meter.first_nonfinite() == 1 and math.isnan(meter.read()["loss"])


def test_weighted_updates_read_nothing_on_the_host():
    meter = Meter([MAE(), RMSE()], torch.device("cpu"))
    p, w = torch.randn(4, 2), torch.rand(4)
    with HostOps() as watch:
        meter.update(torch.tensor(0.3), p, torch.zeros(4, 2), 4, w)
        Accuracy().update(p, torch.randint(0, 2, (4,)), w)
        Accuracy().update(p[:, :1], torch.randint(0, 2, (4, 1)), w)  # binary, threshold on the device
    assert watch.ops == []
