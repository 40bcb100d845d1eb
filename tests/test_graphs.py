"""StepGraph on CPU, with a stand-in graph whose replay runs the captured step function again.

The stand-in reads the same static buffers, meter cursor and generator a real CUDA graph would, so
these tests check the plumbing (static copies, lazy DeviceLoader batches, per-batch augmentation
seeds, meter slots and counts, eager batches of other shapes, schedulers, fallback) against eager
training, bitwise. The real capture runs in tests/gpu on a CUDA machine.
"""

from typing import ClassVar

import pytest
import torch
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.callbacks import ModelCheckpoint
from ember.data import DeviceLoader, random_flip
from ember.graphs import GraphMeter, LazyBatch, StepGraph
from ember.graphs.capture import _same_device
from ember.metrics import Accuracy, Meter
from tests.host_ops import HostOps


class EagerGraph:
    """Replays by calling the captured function again and writing its outputs into the first ones."""

    executes_on_capture = True
    made: ClassVar[list["EagerGraph"]] = []

    def __init__(self, generators):
        self.generators = list(generators)
        self.replays = 0
        EagerGraph.made.append(self)

    def capture(self, fn):
        self.fn = fn
        self.outputs = fn()
        return self.outputs

    def replay(self):
        self.replays += 1
        new = pytree.tree_leaves(self.fn())
        with torch.no_grad():
            for static, value in zip(pytree.tree_leaves(self.outputs), new, strict=True):
                static.copy_(value)


class FailingGraph(EagerGraph):
    def capture(self, fn):
        raise RuntimeError("operation not permitted when stream is capturing")


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1)
    )


IMAGES = torch.randint(0, 256, (70, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
LABELS = (torch.arange(70) % 2).float().unsqueeze(1)


def _model(graph=None, scheduler=None, interval="epoch", cls=ember.Model):
    net = _net()
    model = cls(net).compile(
        loss=nn.BCEWithLogitsLoss(),
        metrics=["accuracy", "auc", "mae"],
        device="cpu",
        scheduler=scheduler,
        scheduler_interval=interval,
    )
    if graph is not None:
        model._graphs = StepGraph(model, warmup=2, make_graph=graph)
    return model


def _loader():
    return DeviceLoader(IMAGES, LABELS, batch_size=16, shuffle=True, seed=3, augment=random_flip())


def _same_training(a, b):
    ha, hb = a.history.drop(columns=["seconds", "compile_seconds"], errors="ignore"), b.history
    hb = hb.drop(columns=["seconds", "compile_seconds"], errors="ignore")
    assert ha.equals(hb), (ha, hb)
    for (name, x), y in zip(a.net.state_dict().items(), b.net.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    for x, y in zip(a.optimizer.state.values(), b.optimizer.state.values(), strict=True):
        assert torch.equal(x["exp_avg"], y["exp_avg"])


def test_graphed_device_loader_training_equals_eager_bitwise():
    EagerGraph.made.clear()
    eager = _model()
    eager.fit(_loader(), epochs=2, verbose=0)
    graphed = _model(EagerGraph)
    with pytest.warns(UserWarning, match=r"differs from the captured \[16 samples\].*run\s+eagerly"):
        history = graphed.fit(_loader(), epochs=2, verbose=0)
    _same_training(eager, graphed)
    (graph,) = EagerGraph.made
    assert len(graph.generators) == 1  # the augmentation generator, reseeded per batch
    # 2 epochs x 4 full batches: 2 warm-up, 1 capture (runs the step), 5 replays; 2 partial batches eager
    assert graph.replays == 5 and graphed._graphs.eager_batches == 2
    columns = ["epoch", "loss", "accuracy", "auc", "mae", "compile_seconds", "lr", "seconds"]
    assert list(history.columns) == columns
    assert history["compile_seconds"].iloc[0] > 0 and history["compile_seconds"].iloc[1] == 0


def test_graphed_plain_batches_copy_into_static_buffers():
    EagerGraph.made.clear()
    data = TensorDataset(IMAGES.float() / 255, LABELS)

    def loader():
        return DataLoader(data, batch_size=14, shuffle=True, generator=torch.Generator().manual_seed(0))

    eager = _model()
    eager.fit(loader(), epochs=2, verbose=0)
    graphed = _model(EagerGraph)
    graphed.fit(loader(), epochs=2, verbose=0)  # 70 = 5 x 14: every batch has the captured shape
    _same_training(eager, graphed)
    assert EagerGraph.made[0].replays == 7 and graphed._graphs.eager_batches == 0


class _OwnStep(ember.Model):
    """A user's train_step: a loss of its own (label smoothing), written with the helpers."""

    def train_step(self, batch):
        x, y = self.unpack(batch)
        with self.autocast():
            out = self.forward(x)
            loss = nn.functional.binary_cross_entropy_with_logits(out, y * 0.9 + 0.05)
        self.optimize(loss)
        return ember.StepOutput(loss, out, y, len(y))


def _eager_and_graphed(cls, epochs):
    """The same fit of a ``cls`` model eagerly and on the stand-in graph; both, checked equal."""
    EagerGraph.made.clear()
    eager = _model(cls=cls)
    eager.fit(_loader(), epochs=epochs, verbose=0)
    graphed = _model(EagerGraph, cls=cls)
    with pytest.warns(UserWarning, match="differs from the captured"):
        graphed.fit(_loader(), epochs=epochs, verbose=0)
    _same_training(eager, graphed)
    return eager, graphed


def test_an_overridden_train_step_is_captured_not_run_eagerly():
    eager, graphed = _eager_and_graphed(_OwnStep, epochs=2)
    (graph,) = EagerGraph.made
    assert graph.replays == 5 and graphed._graphs.reason is None
    assert eager.history["loss"].iloc[0] != _model().fit(_loader(), verbose=0)["loss"].iloc[0]  # its own loss


def test_per_step_scheduler_changes_the_captured_learning_rate():
    def step_lr(optimizer):
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)

    eager = _model(scheduler=step_lr, interval="step")
    eager.fit(_loader(), epochs=2, verbose=0)
    graphed = _model(EagerGraph, scheduler=step_lr, interval="step")
    with pytest.warns(UserWarning):
        graphed.fit(_loader(), epochs=2, verbose=0)
    _same_training(eager, graphed)
    assert graphed.history["lr"].tolist() == [1e-3 * 0.5**2, 1e-3 * 0.5**5]
    assert isinstance(graphed.optimizer.param_groups[0]["lr"], float)  # released after fit


def test_momentum_cycles_keep_steps_eager():
    def one_cycle(optimizer):
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=20)

    model = _model(EagerGraph, scheduler=one_cycle, interval="step")
    with pytest.warns(UserWarning, match="cycle_momentum"):
        model.fit(_loader(), epochs=1, verbose=0)
    assert model._graphs.reason is not None


def test_a_step_that_cannot_be_captured_falls_back_to_eager_steps():
    eager = _model()
    eager.fit(_loader(), epochs=2, verbose=0)
    graphed = _model(FailingGraph)
    with pytest.warns(UserWarning, match="could not be captured .*not permitted when stream is capturing"):
        graphed.fit(_loader(), epochs=2, verbose=0)
    _same_training(eager, graphed)


def _checkpoints(folder, every):
    return ModelCheckpoint(folder, every_n_steps=every, keep_last=None)


def test_resume_in_the_middle_of_a_graphed_epoch_is_exact(tmp_path):
    whole = _model(EagerGraph)
    with pytest.warns(UserWarning):
        whole.fit(_loader(), epochs=2, verbose=0, callbacks=[_checkpoints(tmp_path, 7)])
    resumed = _model(EagerGraph)
    with pytest.warns(UserWarning):
        resumed.fit(_loader(), epochs=2, verbose=0, resume=tmp_path / "epoch0002-step000000007")
    _same_training(whole, resumed)


def test_checkpoints_written_while_graphed_hold_float_learning_rates(tmp_path):
    model = _model(EagerGraph)
    with pytest.warns(UserWarning):
        model.fit(_loader(), epochs=1, verbose=0, callbacks=[_checkpoints(tmp_path, 4)])
    states, _ = ember.checkpoint.objects.load_states(tmp_path / "epoch0001-step000000004")
    assert states["optimizer"]["param_groups"][0]["lr"] == 1e-3
    plain = ember.Model(_net()).compile(loss=nn.BCEWithLogitsLoss(), device="cpu")
    plain.load(tmp_path / "epoch0001-step000000004")
    plain.fit((IMAGES.float() / 255, LABELS), epochs=1, verbose=0)  # an eager optimizer takes it
    assert plain.optimizer.param_groups[0]["lr"] == 1e-3


def test_cuda_graphs_without_cuda_warns_and_trains_eagerly():
    with pytest.warns(UserWarning, match="cuda_graphs=True needs a CUDA device"):
        model = ember.Model(_net()).compile(loss=nn.BCEWithLogitsLoss(), device="cpu", cuda_graphs=True)
    assert model._graphs is None
    history = model.fit((IMAGES.float() / 255, LABELS), epochs=1, verbose=0)
    assert "compile_seconds" not in history.columns


def test_cuda_and_cuda_0_are_the_same_device():
    assert _same_device(torch.device("cuda:0"), torch.device("cuda"))
    assert not _same_device(torch.device("cuda:1"), torch.device("cuda:0"))
    assert not _same_device(torch.device("cpu"), torch.device("cuda"))


class EmbeddingFailure(EagerGraph):
    def capture(self, fn):
        raise RuntimeError("unique_by_key: failed to synchronize: cudaErrorStreamCaptureUnsupported")


def test_a_failed_capture_names_the_known_fix():
    model = _model(EmbeddingFailure)
    with pytest.warns(
        UserWarning, match=r"nn.Embedding's backward .* weight.index_select\(0, ids\) captures"
    ):
        model.fit(_loader(), epochs=1, verbose=0)
    assert "unique_by_key" in model._graphs.reason


class WatchedGraph(EagerGraph):
    """Replays under a dispatch mode that records host-reading ops."""

    seen: ClassVar[list[str]] = []

    def replay(self):
        with HostOps() as watch:
            super().replay()
        WatchedGraph.seen.extend(watch.ops)


def test_the_captured_step_runs_no_op_that_reads_the_host():
    """SGD here: on CPU, Adam without ``capturable`` (a CUDA option) reads its step count."""
    WatchedGraph.seen.clear()
    net = _net()
    model = ember.Model(net).compile(
        loss=nn.BCEWithLogitsLoss(),
        metrics=["accuracy", "mae"],
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9),
        grad_clip=1.0,
        device="cpu",
    )
    model._graphs = StepGraph(model, warmup=2, make_graph=WatchedGraph)
    with pytest.warns(UserWarning):
        model.fit(_loader(), epochs=2, verbose=0)
    assert EagerGraph.made[-1].replays == 5 and WatchedGraph.seen == []


def test_the_host_op_detector_sees_a_host_read():
    x = torch.randn(3)
    with HostOps() as watch:
        float(x.sum())
        torch.nonzero(x > 0)
    assert watch.ops == ["aten._local_scalar_dense.default", "aten.nonzero.default"]


def _graphed(graph_meter, loss, preds, target):
    """What a CUDA-graph step does: device half (captured), then the host half with the counts."""
    graph_meter.prepare()
    before = graph_meter.counts()
    graph_meter.device_update(torch.tensor(loss), preds, target)
    after = graph_meter.counts()
    graph_meter.set_counts(before)
    counts = [{k: a[k] - b[k] for k in a} for a, b in zip(after, before, strict=True)]
    graph_meter.record_replay(preds, target, len(target), counts)


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
    graph_meter = GraphMeter(graphed)
    _graphed(graph_meter, *batches[0])
    graphed.update(torch.tensor(batches[1][0]), *batches[1][1:], 2)  # an eager batch in between
    _graphed(graph_meter, *batches[2])  # the buffer (capacity 2) grows; the cursor follows
    assert graphed.read() == eager.read()
    assert graphed.read()["accuracy"] == pytest.approx(7 / 9)
    graphed.reset()  # a new epoch: the cursor goes back to the first slot
    _graphed(graph_meter, *batches[1])
    assert graphed.read() == {"loss": 1.5, "accuracy": 1.0, "auc": 1.0}


def test_loading_a_running_epoch_keeps_the_loss_buffer():
    meter = Meter([Accuracy()], torch.device("cpu"), capacity=8)
    buffer = GraphMeter(meter).prepare()
    other = Meter([Accuracy()], torch.device("cpu"))
    other.update(torch.tensor(2.0), torch.tensor([[1.0, 0.0]]), torch.tensor([0]), 1)
    meter.load_state_dict(other.state_dict())
    graph_meter = GraphMeter(meter)
    assert graph_meter.prepare() is buffer  # a captured graph stays valid
    _graphed(graph_meter, 4.0, torch.tensor([[0.0, 1.0]]), torch.tensor([0]))
    assert meter.read() == {"loss": 3.0, "accuracy": 0.5}


@pytest.mark.parametrize("shuffle", [True, False])
def test_lazy_batches_materialize_to_the_same_batches(shuffle):
    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)

    def loader():
        return DeviceLoader(
            images, torch.arange(10), batch_size=4, shuffle=shuffle, seed=5, augment=random_flip()
        )

    eager, lazy = loader(), loader()
    lazy.deferred = LazyBatch
    for epoch in range(2):
        eager.set_epoch(epoch)
        lazy.set_epoch(epoch)
        pending = list(lazy)
        assert [p.b for p in pending] == [0, 1, 2] and [len(p.index) for p in pending] == [4, 4, 2]
        for (x, y), (lx, ly) in zip(eager, [p.materialize() for p in pending], strict=True):
            assert torch.equal(x, lx) and torch.equal(y, ly)


def test_lazy_batches_scale_images_and_leave_uint8_labels_alone():
    images = torch.full((6, 1, 2, 2), 255, dtype=torch.uint8)
    loader = DeviceLoader(images, torch.arange(6, dtype=torch.uint8), batch_size=3, shuffle=True, seed=1)
    loader.deferred = LazyBatch
    batches = [p.materialize() for p in loader]
    assert all(x.dtype == torch.float32 and x.max().item() == 1.0 for x, _ in batches)
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == [0, 1, 2, 3, 4, 5]
    assert all(y.dtype == torch.uint8 for _, y in batches)


def test_the_capture_runs_without_cached_autocast_casts_and_restores_them():
    seen = []

    class Watching(_OwnStep):
        def train_step(self, batch):
            seen.append(self.runtime.autocast_cache)
            return super().train_step(batch)

    EagerGraph.made.clear()
    model = _model(EagerGraph, cls=Watching)
    with pytest.warns(UserWarning, match="differs from the captured"):
        model.fit(_loader(), epochs=1, verbose=0)
    assert seen[:3] == [True, True, False]  # 2 warm-up steps, then the capture
    assert model.runtime.autocast_cache is True


class _TokenCount(_OwnStep):
    """A step whose count is not the target's length (e.g. tokens per batch)."""

    def train_step(self, batch):
        out = super().train_step(batch)
        return ember.StepOutput(out.loss, out.preds, out.target, 3 * out.size)


def test_a_replayed_step_counts_what_the_step_returns():
    eager, _ = _eager_and_graphed(_TokenCount, epochs=1)
    assert eager.history["loss"].notna().all()


def test_float16_scaling_with_an_unfused_optimizer_is_not_captured():
    net = _net()
    model = ember.Model(net).compile(
        nn.BCEWithLogitsLoss(), torch.optim.SGD(net.parameters(), lr=0.1), precision="16", device="cpu"
    )
    model._graphs = StepGraph(model, warmup=2, make_graph=EagerGraph)
    EagerGraph.made.clear()
    with pytest.warns(UserWarning, match="float16 gradient scaling reads the host in SGD's step"):
        model.fit(_loader(), epochs=1, verbose=0)
    assert EagerGraph.made == [] and len(model.history) == 1  # trained, eagerly
