import math

import pytest
import torch
from torch import nn

from ember._tree import concat
from ember.errors import ConfigError, DataError
from ember.metrics import (
    AUC,
    MAE,
    Accuracy,
    FunctionMetric,
    LossComponent,
    Meter,
    OutputMetric,
    StructuredLoss,
    as_structured_loss,
    configure_output_accuracy,
    direction,
    loss_component_metrics,
    resolve_output_metrics,
)

CPU = torch.device("cpu")


def _data(seed: int = 0, n: int = 8):
    g = torch.Generator().manual_seed(seed)
    preds = {"cls": torch.randn(n, 3, generator=g), "reg": torch.randn(n, 2, generator=g)}
    target = {"cls": torch.randint(0, 3, (n,), generator=g), "reg": torch.randn(n, 2, generator=g)}
    return preds, target


def _cut(tree, lo, hi):
    return {k: v[lo:hi] for k, v in tree.items()}


def _keras_metrics(loss):
    return loss_component_metrics(loss) + resolve_output_metrics(
        {"cls": ["accuracy"], "reg": ["mae"]}, loss.keys
    )


def test_epoch_columns_equal_the_full_data_values_over_uneven_batches():
    loss = StructuredLoss({"cls": nn.CrossEntropyLoss(), "reg": nn.MSELoss()}, {"cls": 1.0, "reg": 0.5})
    preds, target = _data()
    meter = Meter(_keras_metrics(loss), CPU)
    for lo, hi in ((0, 3), (3, 8)):  # batches of 3 and 5: a mean of batch means would be wrong
        p, t = _cut(preds, lo, hi), _cut(target, lo, hi)
        meter.update(loss(p, t), p, t, hi - lo)
    logs = meter.read()
    ce = nn.functional.cross_entropy(preds["cls"], target["cls"]).item()
    mse = nn.functional.mse_loss(preds["reg"], target["reg"]).item()
    accuracy = (preds["cls"].argmax(1) == target["cls"]).double().mean().item()
    mae = (preds["reg"] - target["reg"]).abs().mean().item()
    assert list(logs) == ["loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae"]
    assert logs["loss"] == pytest.approx(ce + 0.5 * mse, abs=1e-6)
    assert logs["cls_loss"] == pytest.approx(ce, abs=1e-6)
    assert logs["reg_loss"] == pytest.approx(mse, abs=1e-6)
    assert logs["cls_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert logs["reg_mae"] == pytest.approx(mae, abs=1e-6)
    assert meter.read("val_")["val_reg_loss"] == pytest.approx(mse, abs=1e-6)


def test_total_is_the_weighted_sum_of_components():
    loss = StructuredLoss({"a": nn.L1Loss(), "b": nn.MSELoss()}, {"b": 0.25})
    preds = {"a": torch.tensor([1.0, 3.0]), "b": torch.tensor([2.0, 2.0]), "extra": "ignored"}
    target = {"a": torch.tensor([0.0, 0.0]), "b": torch.tensor([0.0, 4.0])}
    assert {k: v.item() for k, v in loss.components(preds, target).items()} == {"a": 2.0, "b": 4.0}
    assert loss(preds, target).item() == 3.0
    assert loss.weights == {"a": 1.0, "b": 0.25} and loss.keys == ("a", "b")


def test_zero_weight_keeps_the_column_but_not_the_total():
    loss = StructuredLoss({"a": nn.L1Loss(), "b": nn.L1Loss()}, {"a": 0})
    one = {"a": torch.tensor([5.0]), "b": torch.tensor([1.0])}
    assert loss(one, {"a": torch.zeros(1), "b": torch.zeros(1)}).item() == 1.0


def test_tuple_outputs_are_named_by_position():
    loss = StructuredLoss([nn.CrossEntropyLoss(), nn.L1Loss()], weights=[2.0, 1.0])
    preds = (torch.tensor([[0.0, 0.0]]), torch.tensor([1.0]), torch.zeros(1))  # a third, unused output
    target = [torch.tensor([1]), torch.tensor([4.0])]
    assert loss(preds, target).item() == pytest.approx(2 * math.log(2) + 3.0)
    metrics = loss_component_metrics(loss) + resolve_output_metrics({1: "mae", "output_0": "acc"}, loss.keys)
    assert [m.name for m in metrics] == ["output_0_loss", "output_1_loss", "output_1_mae", "output_0_acc"]
    by_list = resolve_output_metrics([None, ["mae", "mse"]], loss.keys)
    assert [m.name for m in by_list] == ["output_1_mae", "output_1_mse"]
    meter = Meter(metrics, CPU)
    meter.update(loss(preds, target), preds, target, 1)
    assert meter.read()["output_1_mae"] == 3.0 and meter.read()["output_0_loss"] == pytest.approx(math.log(2))


def test_weights_by_position_name_for_a_list_of_losses():
    loss = StructuredLoss([nn.L1Loss(), nn.L1Loss()], {"output_1": 0.5})
    assert loss.weights == {0: 1.0, 1: 0.5}


@pytest.mark.parametrize(
    ("losses", "weights", "match"),
    [
        ({"cls": nn.L1Loss()}, {"reg": 1.0}, r"loss_weights names output 'reg'.*\['cls'\]"),
        ({"cls": nn.L1Loss()}, {"cls": -1.0}, r"loss_weights\['cls'\] is -1.0"),
        ({"cls": nn.L1Loss()}, {"cls": float("nan")}, r"loss_weights\['cls'\] is nan"),
        ({"cls": nn.L1Loss()}, {"cls": float("inf")}, r"loss_weights\['cls'\] is inf"),
        ({"cls": nn.L1Loss()}, {"cls": True}, r"loss_weights\['cls'\] is True"),
        ({"cls": nn.L1Loss()}, [1.0], r"loss_weights is a dict"),
        ([nn.L1Loss()], [1.0, 2.0], r"2 entries for 1 losses"),
        ({"cls": nn.L1Loss(), "reg": 3}, None, r"loss\['reg'\] is 3, not a callable"),
        ({"cls": nn.L1Loss}, None, r"loss\['cls'\]=L1Loss is the class"),
        ({}, None, r"empty"),
        ([], None, r"empty"),
        ({0: nn.L1Loss()}, None, r"must be strings; got \[0\]"),
        (nn.L1Loss(), None, r"a dict \{output: loss\} or a list"),
    ],
)
def test_construction_errors_name_the_key(losses, weights, match):
    with pytest.raises(ConfigError, match=match):
        StructuredLoss(losses, weights)


def test_missing_keys_name_the_key_and_what_is_there():
    loss = StructuredLoss({"cls": nn.L1Loss(), "reg": nn.L1Loss()})
    good = {"cls": torch.zeros(2), "reg": torch.zeros(2)}
    with pytest.raises(ConfigError, match=r"model output has no key 'reg'.*keys \['cls'\]"):
        loss({"cls": torch.zeros(2)}, good)
    with pytest.raises(DataError, match=r"target has no key 'cls'.*keys \['reg'\]"):
        loss(good, {"reg": torch.zeros(2)})
    with pytest.raises(ConfigError, match=r"model output has no key 'cls'.*a Tensor"):
        loss(torch.zeros(2), good)
    with pytest.raises(ConfigError, match=r"no position 1 \('output_1'.*a tuple of 1"):
        StructuredLoss([nn.L1Loss(), nn.L1Loss()])((torch.zeros(2),), (torch.zeros(2), torch.zeros(2)))
    with pytest.raises(DataError, match=r"target has no key 'reg'"):
        OutputMetric(MAE(), "reg").update(good, {"cls": torch.zeros(2)})
    with pytest.raises(ConfigError, match=r"model output has no key 'reg'"):
        LossComponent(nn.L1Loss(), "reg").update({"cls": torch.zeros(2)}, good)


def test_a_loss_without_mean_reduction_is_refused():
    loss = StructuredLoss({"a": nn.L1Loss(reduction="none")})
    with pytest.raises(ConfigError, match=r"loss of output 'a' returned \(2,\), not a 0-dim"):
        loss({"a": torch.zeros(2)}, {"a": torch.ones(2)})


def test_as_structured_loss():
    assert as_structured_loss(nn.MSELoss()) is None
    built = as_structured_loss({"a": nn.MSELoss()}, {"a": 2.0})
    assert isinstance(built, StructuredLoss) and built.weights == {"a": 2.0}
    assert as_structured_loss(built) is built
    with pytest.raises(ConfigError, match="loss_weights needs several losses"):
        as_structured_loss(nn.MSELoss(), {"a": 1.0})
    with pytest.raises(ConfigError, match=r"StructuredLoss\(losses, weights\)"):
        as_structured_loss(built, {"a": 1.0})


def test_output_metric_keys_must_be_loss_keys():
    with pytest.raises(ConfigError, match=r"metrics names output 'acc'.*\['cls', 'reg'\]"):
        resolve_output_metrics({"acc": Accuracy()}, ("cls", "reg"))
    with pytest.raises(ConfigError, match=r"metrics is a dict \{output: \[metrics\]\}.*\['cls'\]"):
        resolve_output_metrics(["accuracy"], ("cls",))
    with pytest.raises(ConfigError, match=r"or a list of 2 entries"):
        resolve_output_metrics(["mae"], (0, 1))
    with pytest.raises(ConfigError, match=r"\['a_x_loss'\] repeat or clash with loss columns"):
        resolve_output_metrics({"a": {"x_loss": lambda p, t: 0.0}}, ("a", "a_x"))
    with pytest.raises(ConfigError, match=r"\['a_b_mae'\] repeat"):
        resolve_output_metrics({"a": {"b_mae": MAE()}, "a_b": "mae"}, ("a", "a_b"))
    assert resolve_output_metrics(None, ("a",)) == []


def test_one_metric_object_reused_for_two_outputs_stays_independent():
    shared = MAE()
    metrics = resolve_output_metrics({"a": shared, "b": shared}, ("a", "b"))
    a, b = metrics
    a.update({"a": torch.tensor([1.0])}, {"a": torch.tensor([0.0])})
    b.update({"b": torch.tensor([5.0])}, {"b": torch.tensor([0.0])})
    assert (a.compute().item(), b.compute().item()) == (1.0, 5.0)
    assert shared.counts()["count"] == 0


def test_clone_is_independent_and_delegates_flags():
    metric = OutputMetric(Accuracy(), "cls")
    component = LossComponent(nn.L1Loss(), "reg")
    batch = {"cls": torch.tensor([[1.0, 0.0]]), "reg": torch.tensor([2.0])}
    target = {"cls": torch.tensor([0]), "reg": torch.tensor([0.0])}
    for original in (metric, component):
        copy = original.clone()
        copy.update(batch, target)
        assert original.counts() != copy.counts() and copy.compute().item() in (1.0, 2.0)
        assert math.isnan(original.compute().item())
    assert component.clone().loss_fn is component.loss_fn  # shared, not copied
    assert (metric.update_in_place, metric.higher_is_better, metric.host_sync) == (True, True, False)
    assert (component.update_in_place, component.higher_is_better) == (True, False)
    host = OutputMetric(FunctionMetric(lambda p, t: 1.0, "f"), "reg")
    assert (host.host_sync, host.update_in_place, host.name) == (True, False, "reg_f")
    assert direction("val_reg_loss", [component]) == "min" and direction("cls_accuracy", [metric]) == "max"


def test_state_vector_round_trip_sums_two_processes():
    loss = StructuredLoss({"cls": nn.CrossEntropyLoss(), "reg": nn.MSELoss()})
    preds, target = _data(1, 6)
    parts = [Meter(_keras_metrics(loss), CPU) for _ in range(2)]
    whole = Meter(_keras_metrics(loss), CPU)
    for meter, (lo, hi) in zip(parts, ((0, 2), (2, 6)), strict=True):
        p, t = _cut(preds, lo, hi), _cut(target, lo, hi)
        meter.update(loss(p, t), p, t, hi - lo)
    whole.update(loss(preds, target), preds, target, 6)
    summed = [
        a.with_state_vector(a.state_vector() + b.state_vector())
        for a, b in zip(parts[0].metrics, parts[1].metrics, strict=True)
    ]
    expected = whole.read()
    assert all(isinstance(s, type(m)) for s, m in zip(summed, parts[0].metrics, strict=True))
    assert {m.name: m.compute().item() for m in summed} == pytest.approx(
        {k: v for k, v in expected.items() if k != "loss"}, abs=1e-6
    )
    assert parts[0].metrics[2].counts()["total"] == 2  # the copies did not touch the parts


def test_state_dict_and_counts_delegate():
    metric = OutputMetric(Accuracy(), "cls")
    metric.update({"cls": torch.tensor([[1.0, 0.0], [0.0, 1.0]])}, {"cls": torch.tensor([0, 0])})
    restored = OutputMetric(Accuracy(), "cls")
    restored.load_state_dict(metric.state_dict())
    assert restored.compute().item() == 0.5 and restored.counts()["total"] == 2
    restored.set_counts({"total": 4})
    assert restored.compute().item() == 0.25
    restored.reset()
    assert restored.counts()["total"] == 0


def test_synchronize_delegates_for_gathered_metrics():
    metric = OutputMetric(AUC(), "s")
    metric.update({"s": torch.tensor([0.1, 0.9])}, {"s": torch.tensor([0, 1])})
    assert metric.state_vector() is None
    other = metric.synchronize(lambda state: [state, state])
    assert isinstance(other, OutputMetric) and other.name == "s_auc"
    assert other.state_dict()["scores"].tolist() == pytest.approx([0.1, 0.9, 0.1, 0.9])


def test_sample_weights_pass_through_to_the_wrapped_metric():
    metric = OutputMetric(MAE(), "r")
    preds, target = {"r": torch.tensor([1.0, 4.0])}, {"r": torch.zeros(2)}
    metric.update(preds, target)  # unweighted: counts as weights of 1
    metric.update(preds, target, torch.tensor([3.0, 1.0]))
    assert metric.compute().item() == pytest.approx((1 + 4 + 3 * 1 + 1 * 4) / (2 + 4))
    with pytest.raises(ConfigError, match="sample weights with several losses are not supported"):
        LossComponent(nn.L1Loss(), "r").update(preds, target, torch.ones(2))


def test_half_precision_outputs_are_measured_in_float32():
    component = LossComponent(nn.MSELoss(), "r")
    component.update({"r": torch.tensor([1.0, 3.0], dtype=torch.bfloat16)}, {"r": torch.zeros(2)})
    assert component.compute().dtype == torch.float64 and component.compute().item() == 5.0


def test_each_output_accuracy_follows_its_own_loss():
    loss = StructuredLoss(
        {
            "logit": nn.BCEWithLogitsLoss(),
            "prob": nn.BCELoss(),
            "multi": nn.CrossEntropyLoss(),
            "set": nn.BCELoss(),
        }
    )
    spec = {"logit": "accuracy", "prob": "accuracy", "multi": "accuracy", "set": Accuracy(from_logits=True)}
    metrics = resolve_output_metrics(spec, loss.keys)
    configure_output_accuracy(metrics, loss)
    assert [m.metric.from_logits for m in metrics] == [True, False, None, True]


def test_concat_keeps_dict_and_tuple_outputs_for_predict():
    chunks = [
        {"cls": torch.zeros(2, 3), "reg": torch.ones(2)},
        {"cls": torch.ones(1, 3), "reg": torch.zeros(1)},
    ]
    out = concat(chunks)
    assert (
        list(out) == ["cls", "reg"] and out["cls"].shape == (3, 3) and out["reg"].tolist() == [1.0, 1.0, 0.0]
    )
    pairs = concat([(torch.zeros(2, 1), torch.ones(2)), (torch.ones(3, 1), torch.zeros(3))])
    assert isinstance(pairs, tuple) and pairs[0].shape == (5, 1) and pairs[1].tolist() == [1, 1, 0, 0, 0]
