import pytest
import torch

from ember.metrics import Accuracy, Meter


def test_epoch_loss_is_weighted_by_batch_size():
    meter = Meter([], torch.device("cpu"), capacity=1)  # grows past its capacity
    meter.update(torch.tensor(1.0), None, None, 3)
    meter.update(torch.tensor(3.0), None, None, 1)
    assert meter.read() == {"loss": pytest.approx(1.5)}  # mean of batch means would be 2.0
    assert meter.batches == 2 and meter.samples == 4


def test_read_prefix_and_metric_order():
    meter = Meter([Accuracy()], torch.device("cpu"))
    meter.update(torch.tensor(0.5), torch.tensor([[1.0, 0.0]]), torch.tensor([0]), 1)
    assert meter.read("val_") == {"val_loss": 0.5, "val_accuracy": 1.0}


def test_first_nonfinite_finds_the_batch():
    meter = Meter([], torch.device("cpu"))
    for value in (1.0, 2.0, float("nan"), 1.0, float("inf")):
        meter.update(torch.tensor(value), None, None, 2)
    assert meter.first_nonfinite() == 2
    meter.reset()
    meter.update(torch.tensor(1.0), None, None, 2)
    assert meter.first_nonfinite() is None


def test_state_round_trip_continues_the_epoch():
    meter = Meter([Accuracy()], torch.device("cpu"))
    meter.update(torch.tensor(2.0), torch.tensor([[1.0, 0.0]]), torch.tensor([1]), 1)
    restored = Meter([Accuracy()], torch.device("cpu"))
    restored.load_state_dict(meter.state_dict())
    restored.update(torch.tensor(4.0), torch.tensor([[1.0, 0.0]] * 3), torch.tensor([0, 0, 0]), 3)
    assert restored.read() == {"loss": pytest.approx(3.5), "accuracy": pytest.approx(0.75)}


def test_global_read_sums_every_process_once():
    """Two 'processes' simulated by summing their state vectors: equal to one meter over all batches."""
    from ember.metrics import AUC, MAE

    def meter_over(batches):
        meter = Meter([Accuracy(), AUC(), MAE(name="mae")], torch.device("cpu"))
        for loss, preds, target in batches:
            meter.update(torch.tensor(loss), preds, target, len(target))
        return meter

    batches = [
        (0.5, torch.tensor([[0.2], [0.9]]), torch.tensor([[0.0], [1.0]])),
        (1.5, torch.tensor([[0.7], [0.1], [0.6]]), torch.tensor([[0.0], [1.0], [1.0]])),
    ]
    whole = meter_over(batches).read()
    first, second = meter_over(batches[:1]), meter_over(batches[1:])
    recorded = []
    second._global(lambda v: recorded.append(v) or v, lambda obj: [obj])  # what the second one sends
    auc_of_second = {k: v.cpu() for k, v in second.metrics[1].state_dict().items()}
    merged = first.read(reduce=lambda v: v + recorded[0], gather=lambda obj: [obj, auc_of_second])
    assert merged == pytest.approx(whole)
