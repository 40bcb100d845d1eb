import sys

import pytest
import torch
from torch import nn

from ember.checkpoint import export, load_exported
from ember.errors import CheckpointError, ConfigError

FORMATS = [".pt2", ".onnx"]


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2))


class TwoInputs(nn.Module):
    """Two batched inputs and a table whose first dimension is not the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor, z: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(z) + table.sum()


class FixedBatch(nn.Module):
    """Hard-codes the batch size of 4 in a reshape."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x).reshape(4, 2)


def runner(path, suffix):
    """Call an exported file like the net: the .pt2 module, or an onnxruntime session."""
    if suffix == ".pt2":
        return load_exported(path)
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path))
    names = [i.name for i in session.get_inputs()]

    def run(*inputs):
        feed = {n: t.numpy() for n, t in zip(names, inputs, strict=True)}
        return torch.from_numpy(session.run(None, feed)[0])

    return run


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("example_batch", [4, 1])
def test_one_file_serves_every_batch_size(tmp_path, suffix, example_batch):
    net = small_net().train()
    net(torch.randn(16, 3))  # running statistics that are not the defaults
    path = export(net, torch.randn(example_batch, 3), tmp_path / f"model{suffix}")
    assert path == tmp_path / f"model{suffix}" and net.training  # training mode is given back
    run = runner(path, suffix)
    net.eval()
    for batch in (7, 4, 1):
        x = torch.randn(batch, 3)
        out = run(x)
        assert out.shape == (batch, 2)
        torch.testing.assert_close(out, net(x))


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_batched_input_is_dynamic_and_other_tensors_keep_their_size(tmp_path, suffix):
    net = TwoInputs().eval()
    table = torch.arange(6.0)
    path = export(net, (torch.randn(4, 3), torch.randn(4, 5), table), tmp_path / f"two{suffix}")
    run = runner(path, suffix)
    for batch in (7, 2):
        x, z = torch.randn(batch, 3), torch.randn(batch, 5)
        torch.testing.assert_close(run(x, z, table), net(x, z, table))


class DictInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.lin(batch["x"]) * batch["mask"]


@pytest.mark.parametrize("suffix", FORMATS)
def test_tensors_nested_in_a_dict_are_dynamic_too(tmp_path, suffix):
    net = DictInput().eval()
    example = ({"x": torch.randn(3, 3), "mask": torch.ones(3, 2)},)
    path = export(net, example, tmp_path / f"d{suffix}")
    batch = {"x": torch.randn(6, 3), "mask": torch.randint(0, 2, (6, 2)).float()}
    inputs = (batch,) if suffix == ".pt2" else (batch["x"], batch["mask"])  # ONNX: the flattened leaves
    torch.testing.assert_close(runner(path, suffix)(*inputs), net(batch))


def test_an_input_without_a_batch_dimension_needs_dynamic_batch_false(tmp_path):
    net = nn.Linear(1, 1)
    with pytest.raises(ConfigError, match="dynamic_batch=True needs a tensor input with a batch dimension"):
        export(net, torch.tensor(2.0), tmp_path / "m.pt2")
    path = export(net, torch.ones(1), tmp_path / "m.pt2", dynamic_batch=False)
    torch.testing.assert_close(load_exported(path)(torch.ones(1)), net(torch.ones(1)))


def test_an_empty_example_batch_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="example batch is empty"):
        export(small_net(), torch.randn(0, 3), tmp_path / "m.pt2")


def test_onnx_needs_a_torch_with_the_export_based_exporter(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "__version__", torch.torch_version.TorchVersion("2.5.1"))
    with pytest.raises(ConfigError, match=r"needs torch>=2\.6 \(this is torch 2\.5\.1\)"):
        export(small_net(), torch.randn(4, 3), tmp_path / "m.onnx")


def test_onnx_inputs_declare_a_symbolic_batch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    export(small_net(), torch.randn(4, 3), tmp_path / "dyn.onnx")
    export(small_net(), torch.randn(4, 3), tmp_path / "fixed.onnx", dynamic_batch=False)
    dynamic = ort.InferenceSession(str(tmp_path / "dyn.onnx")).get_inputs()[0].shape
    fixed = ort.InferenceSession(str(tmp_path / "fixed.onnx")).get_inputs()[0].shape
    assert isinstance(dynamic[0], str) and dynamic[1] == 3
    assert fixed == [4, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dyn.onnx", "fixed.onnx"]  # one file each


def test_fixed_batch_pt2_accepts_only_the_example_batch(tmp_path):
    net = small_net().eval()
    run = load_exported(export(net, torch.randn(4, 3), tmp_path / "m.pt2", dynamic_batch=False))
    x = torch.randn(4, 3)
    torch.testing.assert_close(run(x), net(x))
    # torch's own guard: AssertionError in torch 2.x, naming the size it was exported for
    with pytest.raises((AssertionError, RuntimeError), match=r"\b4\b"):
        run(torch.randn(7, 3))


def test_fixed_batch_onnx_accepts_only_the_example_batch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net = small_net().eval()
    path = export(net, torch.randn(4, 3), tmp_path / "m.onnx", dynamic_batch=False)
    run = runner(path, ".onnx")
    x = torch.randn(4, 3)
    torch.testing.assert_close(run(x), net(x))
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument, match="Got: 7 Expected: 4"):
        run(torch.randn(7, 3))


def test_a_model_that_fixes_the_batch_needs_dynamic_batch_false(tmp_path):
    with pytest.raises(CheckpointError, match=r"could not trace FixedBatch.*dynamic_batch=False"):
        export(FixedBatch(), torch.randn(4, 3), tmp_path / "m.pt2")
    run = load_exported(export(FixedBatch(), torch.randn(4, 3), tmp_path / "m.pt2", dynamic_batch=False))
    assert run(torch.randn(4, 3)).shape == (4, 2)


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("model.pt", "has the suffix '.pt'"),
        ("model.zip", "has the suffix '.zip'"),
        ("model.onnx.bak", "has the suffix '.bak'"),
        ("model.pt2x", "has the suffix '.pt2x'"),
        ("model", "has no suffix"),
    ],
)
def test_other_suffixes_are_refused_and_nothing_is_written(tmp_path, name, said):
    with pytest.raises(ConfigError, match=rf"{name} {said}; use '\.pt2' .* or '\.onnx'"):
        export(small_net(), torch.randn(4, 3), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_suffixes_are_matched_without_case(tmp_path):
    net = small_net().eval()
    x = torch.randn(3, 3)
    torch.testing.assert_close(load_exported(export(net, x, tmp_path / "M.PT2"))(x), net(x))


@pytest.mark.parametrize("module", ["onnx", "onnxscript"])
def test_onnx_without_its_packages_names_the_extra(tmp_path, monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ConfigError, match=rf"needs {module}.*pip install 'ember\[onnx\]'"):
        export(small_net(), torch.randn(4, 3), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_export_without_the_model_class(tmp_path):
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(5, 3)
    loaded = load_exported(export(net, x, tmp_path / "model.pt2"))
    torch.testing.assert_close(loaded(x), net(x))
    with pytest.raises(CheckpointError, match="no exported model at .*missing.pt2"):
        load_exported(tmp_path / "missing.pt2")


def test_load_exported_points_onnx_files_to_onnxruntime(tmp_path):
    pytest.importorskip("onnxscript")
    path = export(small_net(), torch.randn(4, 3), tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match=r"m\.onnx.*onnxruntime\.InferenceSession"):
        load_exported(path)


def test_load_exported_names_a_file_that_is_no_program(tmp_path):
    (tmp_path / "junk.pt2").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match=r"cannot load the exported model .*junk\.pt2"):
        load_exported(tmp_path / "junk.pt2")


def test_a_failed_onnx_export_leaves_nothing_under_the_target_name(tmp_path, monkeypatch):
    def half_written(program, args, path, **options):
        with open(path, "wb") as handle:
            handle.write(b"partial")
        raise RuntimeError("the converter crashed")

    monkeypatch.setattr(torch.onnx, "export", half_written)
    with pytest.raises(CheckpointError, match="the converter crashed"):
        export(nn.Linear(3, 2), torch.ones(4, 3), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
