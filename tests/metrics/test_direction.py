import pytest
import torchmetrics

from ember.metrics import MAE, Accuracy, FunctionMetric, Metric, TorchMetricsMetric, direction


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("loss", "min"),
        ("val_loss", "min"),
        ("mae", "min"),
        ("val_mse", "min"),
        ("rmse", "min"),
        ("mean_squared_error", "min"),
        ("top1_error", "min"),
        ("dice_loss", "min"),  # the last word decides: a loss
        ("perplexity", "min"),
        ("accuracy", "max"),
        ("val_acc", "max"),
        ("auc", "max"),
        ("val_auroc", "max"),
        ("precision", "max"),
        ("recall", "max"),
        ("f1", "max"),
        ("val_f1_score", "max"),
        ("multiclass_accuracy", "max"),
        ("top5_accuracy", "max"),
        ("iou", "max"),
        ("r2", "max"),
        ("lr", None),
        ("seconds", None),
        ("score", None),
        ("val_my_metric", None),
        ("accuracy_error_rate", None),  # words of both kinds and a neutral last word: unknown
    ],
)
def test_direction_by_name(key, expected):
    assert direction(key) == expected


class _Score(Metric):
    higher_is_better = True


class _Penalty(Metric):
    higher_is_better = False


def test_a_declared_direction_wins_over_the_name():
    assert direction("val_score", [_Score("score")]) == "max"
    assert direction("score", [_Penalty("score")]) == "min"
    assert direction("accuracy", [_Penalty("accuracy")]) == "min"  # the object knows best
    assert direction("val_score", [_Score("other")]) is None  # only the metric of that name counts


def test_builtin_metrics_declare_their_direction():
    assert Accuracy().higher_is_better is True
    assert MAE().higher_is_better is False
    assert direction("quality", [Accuracy(name="quality")]) == "max"
    assert direction("val_quality", [MAE(name="quality")]) == "min"
    assert FunctionMetric(lambda p, t: 0.0, "quality").higher_is_better is None
    assert direction("quality", [FunctionMetric(lambda p, t: 0.0, "quality")]) is None


def test_torchmetrics_own_declaration_is_read():
    assert direction("quality", [TorchMetricsMetric(torchmetrics.MeanSquaredError(), "quality")]) == "min"
    assert direction("quality", [TorchMetricsMetric(torchmetrics.R2Score(), "quality")]) == "max"
    assert direction("quality", [TorchMetricsMetric(torchmetrics.PearsonCorrCoef(), "quality")]) is None
