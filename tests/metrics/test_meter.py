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


def _graphed(meter, loss, preds, target):
    """What a CUDA-graph step does: device half (captured), then the host half with the counts."""
    meter.prepare_graph_slot()
    before = meter.graph_counts()
    meter.graph_update(torch.tensor(loss), preds, target)
    after = meter.graph_counts()
    meter.set_graph_counts(before)
    counts = [{k: a[k] - b[k] for k in a} for a, b in zip(after, before, strict=True)]
    meter.update(torch.tensor(loss), preds, target, len(target), graphed=counts)


def test_graph_updates_read_like_eager_updates_in_any_mix():
    from ember.metrics import AUC

    batches = [
        (0.5, torch.tensor([0.9, 0.2, 0.7]), torch.tensor([1.0, 0.0, 0.0])),
        (1.5, torch.tensor([0.1, 0.8]), torch.tensor([0.0, 1.0])),
        (1.0, torch.tensor([0.6, 0.4, 0.3, 0.2]), torch.tensor([1.0, 1.0, 0.0, 0.0])),
    ]
    eager, graphed = (Meter([Accuracy(), AUC()], torch.device("cpu"), capacity=2) for _ in range(2))
    for meter in (eager, graphed):
        meter.reset()
    for loss, preds, target in batches:
        eager.update(torch.tensor(loss), preds, target, len(target))
    _graphed(graphed, *batches[0])
    graphed.update(torch.tensor(batches[1][0]), *batches[1][1:], 2)  # an eager batch in between
    _graphed(graphed, *batches[2])  # the buffer (capacity 2) grows; the cursor follows
    assert graphed.read() == eager.read()
    assert graphed.read()["accuracy"] == pytest.approx(7 / 9)
    graphed.reset()  # a new epoch: the cursor goes back to the first slot
    _graphed(graphed, *batches[1])
    assert graphed.read() == {"loss": 1.5, "accuracy": 1.0, "auc": 1.0}


def test_loading_a_running_epoch_keeps_the_loss_buffer():
    meter = Meter([Accuracy()], torch.device("cpu"), capacity=8)
    buffer = meter.prepare_graph_slot()
    other = Meter([Accuracy()], torch.device("cpu"))
    other.update(torch.tensor(2.0), torch.tensor([[1.0, 0.0]]), torch.tensor([0]), 1)
    meter.load_state_dict(other.state_dict())
    assert meter.prepare_graph_slot() is buffer  # a captured graph stays valid
    _graphed(meter, 4.0, torch.tensor([[0.0, 1.0]]), torch.tensor([0]))
    assert meter.read() == {"loss": 3.0, "accuracy": 0.5}
