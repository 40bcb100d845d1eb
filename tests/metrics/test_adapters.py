import pytest
import torch
import torchmetrics

from ember.errors import ConfigError
from ember.metrics import Accuracy, FunctionMetric, TorchMetricsMetric, resolve_metrics


def test_names_resolve_to_builtins():
    metrics = resolve_metrics(["accuracy", "MAE", "rmse", "auc"])
    assert [m.name for m in metrics] == ["accuracy", "mae", "rmse", "auc"]


def test_dict_names_override():
    metrics = resolve_metrics({"acc": "accuracy", "my": Accuracy()})
    assert [m.name for m in metrics] == ["acc", "my"]


def test_unknown_name_lists_the_builtins():
    with pytest.raises(ConfigError, match="unknown metric 'f1'.*accuracy"):
        resolve_metrics(["f1"])


def test_duplicate_or_reserved_names_are_rejected():
    with pytest.raises(ConfigError, match="unique"):
        resolve_metrics([Accuracy(), "accuracy"])
    with pytest.raises(ConfigError, match="reserved"):
        resolve_metrics({"loss": "mae"})


def test_function_metric_is_sample_weighted_and_gets_cpu_tensors():
    seen = []

    def frac_positive(y_pred, y_true):
        seen.append((y_pred.device.type, y_pred.requires_grad))
        return float((y_pred > 0).float().mean())

    m = resolve_metrics([frac_positive])[0]
    assert isinstance(m, FunctionMetric) and m.name == "frac_positive" and m.host_sync
    m.update(torch.tensor([1.0, 1.0, 1.0], requires_grad=True), torch.zeros(3))  # 1.0 over 3
    m.update(torch.tensor([-1.0]), torch.zeros(1))  # 0.0 over 1
    assert m.compute().item() == pytest.approx(3 / 4)
    assert seen[0] == ("cpu", False)


def test_function_metric_must_return_a_number():
    m = resolve_metrics({"bad": lambda p, t: "x"})[0]
    with pytest.raises(ConfigError, match="'bad' returned str"):
        m.update(torch.zeros(1), torch.zeros(1))


def test_torchmetrics_objects_are_used_as_they_are():
    tm = torchmetrics.classification.MulticlassAccuracy(num_classes=3, average="micro")
    m = resolve_metrics([tm])[0]
    assert isinstance(m, TorchMetricsMetric) and m.name == "multiclass_accuracy"
    m.update(torch.tensor([[3.0, 0, 0], [0, 3.0, 0]]), torch.tensor([0, 2]))
    assert m.compute().item() == pytest.approx(0.5)
    m.reset()
    m.update(torch.tensor([[3.0, 0, 0]]), torch.tensor([0]))
    assert m.compute().item() == 1.0
