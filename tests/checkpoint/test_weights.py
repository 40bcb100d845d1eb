import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from torch import nn

import ember
from ember.checkpoint import LoadReport, read_state_dict, write_state_dict
from ember.errors import CheckpointError, ConfigError


class Evil:
    """Unpickling this would create the sentinel file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_round_trip_with_tied_weights_and_buffers(tmp_path):
    net = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5, bias=False), nn.BatchNorm1d(5))
    net[1].weight = net[0].weight  # tied: one storage under two names
    net[2].running_mean.fill_(0.5)
    path = ember.save_weights(net, tmp_path / "w.safetensors")
    fresh = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5, bias=False), nn.BatchNorm1d(5))
    fresh[1].weight = fresh[0].weight
    report = ember.load_weights(fresh, path)
    assert report.ok and report.loaded == sorted(net.state_dict())
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in net.state_dict().items())


def test_damaged_or_missing_files_name_the_file(tmp_path):
    path = ember.save_weights(nn.Linear(2, 2), tmp_path / "w.safetensors")
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="w.safetensors is not a valid safetensors file"):
        ember.load_weights(nn.Linear(2, 2), path)
    with pytest.raises(CheckpointError, match="missing: no such file"):
        ember.load_weights(nn.Linear(2, 2), tmp_path / "missing")


def test_strict_lists_all_three_groups_and_non_strict_loads_what_fits():
    source = {
        "a.weight": torch.ones(4, 3),
        "a.bias": torch.ones(4),
        "b.weight": torch.ones(2, 9),
        "extra": torch.ones(1),
    }
    net = nn.Sequential()
    net.add_module("a", nn.Linear(3, 4))
    net.add_module("b", nn.Linear(4, 2))
    with pytest.raises(CheckpointError) as info:
        ember.load_weights(net, source)
    message = str(info.value)
    assert "missing      b.bias" in message and "unexpected   extra" in message
    assert "mismatched   b.weight  file [2, 9] vs model [2, 4]" in message
    report = ember.load_weights(net, source, strict=False)
    assert report.loaded == ["a.bias", "a.weight"] and report.missing == ["b.bias"]
    assert report.mismatched == {"b.weight": ((2, 9), (2, 4))} and report.unexpected == ["extra"]
    assert torch.equal(net.a.weight, torch.ones(4, 3)) and not torch.equal(net.b.weight, torch.ones(2, 4))
    assert "1 missing, 1 unexpected, 1 mismatched" in str(report) and isinstance(report, LoadReport)


def test_rename_by_regex_and_by_function():
    source = {"features.0.weight": torch.ones(4, 3), "features.0.bias": torch.zeros(4)}
    net = nn.Sequential()
    net.add_module("encoder", nn.Linear(3, 4))
    report = ember.load_weights(net, source, rename={r"^features\.0\.": "encoder."})
    assert report.ok and report.renamed == {
        "features.0.weight": "encoder.weight",
        "features.0.bias": "encoder.bias",
    }
    ember.load_weights(
        net,
        {"W": torch.full((4, 3), 2.0), "B": torch.zeros(4)},
        rename=lambda k: {"W": "encoder.weight", "B": "encoder.bias"}[k],
    )
    assert net.encoder.weight[0, 0].item() == 2.0


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "net."])
def test_known_prefixes_are_handled_both_ways(prefix):
    plain = nn.Linear(2, 2)
    wrapped_state = {prefix + k: v for k, v in plain.state_dict().items()}
    assert ember.load_weights(nn.Linear(2, 2), wrapped_state).ok
    holder = nn.Module()
    holder.add_module(prefix.rstrip("."), nn.Linear(2, 2))
    assert ember.load_weights(holder, plain.state_dict()).ok


def test_pt_state_dicts_are_read_safely(tmp_path):
    net = nn.Linear(3, 2)
    torch.save(net.state_dict(), tmp_path / "model_parameter.pt")
    assert ember.load_weights(nn.Linear(3, 2), tmp_path / "model_parameter.pt").ok
    torch.save({"epoch": 3, "model_state_dict": net.state_dict(), "loss": 0.1}, tmp_path / "ck.tar")
    assert torch.equal(read_state_dict(tmp_path / "ck.tar")["weight"], net.weight)
    torch.save({"a": net.state_dict(), "b": net.state_dict()}, tmp_path / "two.pt")
    with pytest.raises(CheckpointError, match="pass key"):
        read_state_dict(tmp_path / "two.pt")
    assert torch.equal(read_state_dict(tmp_path / "two.pt", key="b")["bias"], net.bias)


@pytest.mark.parametrize("force_env", [False, True])
def test_malicious_pickles_are_refused_and_run_no_code(tmp_path, monkeypatch, force_env):
    if force_env:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    sentinel = tmp_path / "pwned"
    torch.save(Evil(sentinel), tmp_path / "evil.pt")
    nested = {"state": {0: {"exp_avg": Evil(sentinel)}}, "param_groups": [{"lr": 0.1, "params": [0]}]}
    torch.save({"model": nn.Linear(2, 2).state_dict(), "optimizer": nested}, tmp_path / "nested.pt")
    for name in ("evil.pt", "nested.pt"):
        with pytest.raises(CheckpointError, match="trust_pickle=True"):
            ember.load_weights(nn.Linear(2, 2), tmp_path / name)
        assert not sentinel.exists()
    if force_env:
        assert __import__("os").environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"  # left as it was


def test_whole_model_pickles_need_trust(tmp_path):
    torch.save(nn.Linear(2, 2), tmp_path / "whole.pt")
    with pytest.raises(CheckpointError, match="trust_pickle=True"):
        read_state_dict(tmp_path / "whole.pt")
    with pytest.raises(CheckpointError, match="holds a Linear, not a state dict"):
        read_state_dict(tmp_path / "whole.pt", trust_pickle=True)


def test_checkpoint_folders_are_weights_sources(tmp_path):
    net = nn.Linear(3, 2)
    ember.save_checkpoint(tmp_path / "ck", {"model": net})
    fresh = nn.Linear(3, 2)
    assert ember.load_weights(fresh, tmp_path / "ck").ok and torch.equal(fresh.weight, net.weight)
    (tmp_path / "plain").mkdir()
    with pytest.raises(CheckpointError, match="not an ember checkpoint"):
        read_state_dict(tmp_path / "plain")


def test_views_are_saved_as_their_values(tmp_path):
    base = torch.arange(12.0).view(3, 4)
    write_state_dict({"col": base[:, 1], "all": base}, tmp_path / "v.safetensors")
    loaded = read_state_dict(tmp_path / "v.safetensors")
    assert loaded["col"].tolist() == [1.0, 5.0, 9.0] and loaded["all"].shape == (3, 4)


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = ember.save_weights(nn.Linear(2, 2), tmp_path / "w.safetensors")
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        ember.save_weights(nn.Linear(2, 2), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


# Files are recognised by their first bytes, whatever their name.


@pytest.mark.parametrize("name", ["w.pt", "w.pth", "w.bin", "w.ckpt", "w.tar", "w.safetensors", "w"])
def test_saved_weights_load_back_whatever_the_suffix(tmp_path, name):
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    net[1].running_var.fill_(2.0)
    path = ember.save_weights(net, tmp_path / name)
    assert path.name == name and load_file(path).keys() == net.state_dict().keys()  # safetensors bytes
    fresh = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    report = ember.load_weights(fresh, path)
    assert report.ok and report.loaded == sorted(net.state_dict())
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in net.state_dict().items())


@pytest.mark.parametrize("name", ["m.pt", "m.safetensors", "m.bin", "m"])
@pytest.mark.parametrize("zipped", [True, False])
def test_torch_save_files_are_read_with_weights_only_whatever_the_suffix(tmp_path, name, zipped):
    net = nn.Linear(3, 2)
    torch.save(net.state_dict(), tmp_path / name, _use_new_zipfile_serialization=zipped)
    assert (tmp_path / name).read_bytes()[:2] == (b"PK" if zipped else b"\x80\x02")
    fresh = nn.Linear(3, 2)
    assert ember.load_weights(fresh, tmp_path / name).ok and torch.equal(fresh.weight, net.weight)


@pytest.mark.parametrize("name", ["evil.safetensors", "evil"])
def test_a_pickle_under_another_name_is_still_refused(tmp_path, name):
    sentinel = tmp_path / "pwned"
    torch.save(Evil(sentinel), tmp_path / name)
    with pytest.raises(CheckpointError, match="trust_pickle=True"):
        ember.load_weights(nn.Linear(2, 2), tmp_path / name)
    assert not sentinel.exists()


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"just some text, no weights", "it starts with b'just som'"),
        (b"{}", "it starts with b'{}'"),
        (b"", "it is empty"),
    ],
)
@pytest.mark.parametrize("name", ["g.pt", "g.safetensors", "g"])
def test_other_files_are_named_in_the_error(tmp_path, content, said, name):
    (tmp_path / name).write_bytes(content)
    message = rf"{name} is neither a safetensors file nor a torch.save file \({said}\)"
    with pytest.raises(CheckpointError, match=message):
        ember.load_weights(nn.Linear(2, 2), tmp_path / name)


# A rename is tried after the wrapper prefixes are stripped and on the raw keys; the better one wins.


def backbone_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def saved_as(net: nn.Module, prefix: str) -> dict:
    """The state dict a wrapped model would save: ``prefix`` + ``backbone.`` + the net's keys."""
    return {f"{prefix}backbone.{k}": v.clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize(
    ("prefix", "stripped"),
    [
        ("module.", "stripped 'module.'"),
        ("_orig_mod.", "stripped '_orig_mod.'"),
        ("net.", "stripped 'net.'"),
        ("module._orig_mod.", "stripped 'module.', then stripped '_orig_mod.'"),
    ],
)
@pytest.mark.parametrize(
    "rename",
    [
        {r"^backbone\.": ""},
        lambda k: k.removeprefix("backbone."),
        lambda k: {
            "backbone.0.weight": "0.weight",
            "backbone.0.bias": "0.bias",
            "backbone.2.weight": "2.weight",
            "backbone.2.bias": "2.bias",
        }[k],
    ],
    ids=["regex", "function", "function-of-stripped-keys-only"],
)
def test_rename_applies_after_wrapper_prefixes(prefix, stripped, rename):
    source = backbone_net()
    fresh = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    report = ember.load_weights(fresh, saved_as(source, prefix), rename=rename)
    assert report.ok and report.loaded == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert report.key_mapping == f"{stripped}, then renamed"
    assert report.renamed[f"{prefix}backbone.0.weight"] == "0.weight"
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in source.state_dict().items())


@settings(max_examples=30, deadline=None)
@given(
    wrappers=st.lists(st.sampled_from(["module.", "_orig_mod.", "net."]), max_size=3),
    model_wrapper=st.sampled_from(["", "module", "_orig_mod", "net"]),
)
def test_any_wrapper_chain_in_the_file_or_the_model_loads_with_one_rename(wrappers, model_wrapper):
    source = backbone_net()
    state = saved_as(source, "".join(wrappers))
    fresh = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    if model_wrapper:
        holder = nn.Module()
        holder.add_module(model_wrapper, fresh)
    report = ember.load_weights(holder if model_wrapper else fresh, state, rename={r"^backbone\.": ""})
    assert report.ok and len(report.loaded) == 4
    assert torch.equal(fresh[2].weight, source[2].weight)


def test_a_rename_written_for_the_raw_keys_still_works():
    source = backbone_net()
    fresh = nn.Sequential()
    fresh.add_module("encoder", backbone_net())
    report = ember.load_weights(
        fresh, saved_as(source, "module."), rename={r"^module\.backbone\.": "encoder."}
    )
    assert report.ok and report.key_mapping == "renamed"
    assert torch.equal(fresh.encoder[0].weight, source[0].weight)


def test_prefixes_are_stripped_before_and_added_after_a_rename():
    holder = nn.Module()
    holder.add_module("_orig_mod", nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    report = ember.load_weights(holder, saved_as(backbone_net(), "module."), rename={r"^backbone\.": ""})
    assert report.ok and report.key_mapping == "stripped 'module.', then renamed, then added '_orig_mod.'"


def test_nested_wrapper_prefixes_are_stripped_without_a_rename():
    source = backbone_net()
    state = {f"module._orig_mod.{k}": v for k, v in source.state_dict().items()}
    report = ember.load_weights(backbone_net(), state)
    assert report.ok and report.key_mapping == "stripped 'module.', then stripped '_orig_mod.'"


def test_plain_keys_report_no_mapping():
    report = ember.load_weights(nn.Linear(2, 2), nn.Linear(2, 2).state_dict())
    assert report.key_mapping == "as in the file" and report.renamed == {}


def test_a_rename_that_merges_keys_is_refused():
    state = {"a.weight": torch.ones(2, 2), "b.weight": torch.zeros(2, 2)}
    with pytest.raises(ConfigError, match=r"rename maps both 'a.weight' and 'b.weight' to 'weight'"):
        ember.load_weights(nn.Linear(2, 2, bias=False), state, rename={r"^[ab]\.": ""})


# The report: counts and the keys that did not load; the full list as a DataFrame.


def mixed_case() -> tuple[nn.Module, dict]:
    net = nn.Sequential()
    net.add_module("a", nn.Linear(3, 4))
    net.add_module("b", nn.Linear(4, 2))
    source = {
        "module.a.weight": torch.ones(4, 3),
        "module.a.bias": torch.ones(4),
        "module.b.weight": torch.ones(2, 9),
        "module.extra": torch.ones(1),
    }
    return net, source


def test_report_text_lists_only_what_did_not_load():
    net, source = mixed_case()
    report = ember.load_weights(net, source, strict=False)
    assert str(report) == (
        "LoadReport: 2 loaded, 1 missing, 1 unexpected, 1 mismatched\n"
        "keys: stripped 'module.'\n"
        "missing      b.bias  model [2]\n"
        "unexpected   extra  file [1]\n"
        "mismatched   b.weight  file [2, 9] vs model [2, 4]"
    )
    with pytest.raises(CheckpointError) as info:
        ember.load_weights(net, source)
    assert str(info.value) == f"weights in the state dict do not fit Sequential:\n{report}"


def test_report_text_of_a_full_match_is_two_lines():
    net = backbone_net()
    assert str(ember.load_weights(net, net.state_dict())) == (
        "LoadReport: 4 loaded, 0 missing, 0 unexpected, 0 mismatched\nkeys: as in the file"
    )


def test_report_dataframe_lists_every_key():
    net, source = mixed_case()
    frame = ember.load_weights(net, source, strict=False).to_dataframe()
    assert list(frame.columns) == ["key", "status", "file_key", "file_shape", "model_shape"]
    assert frame.to_dict("records") == [
        {
            "key": "a.bias",
            "status": "loaded",
            "file_key": "module.a.bias",
            "file_shape": (4,),
            "model_shape": (4,),
        },
        {
            "key": "a.weight",
            "status": "loaded",
            "file_key": "module.a.weight",
            "file_shape": (4, 3),
            "model_shape": (4, 3),
        },
        {"key": "b.bias", "status": "missing", "file_key": None, "file_shape": None, "model_shape": (2,)},
        {
            "key": "extra",
            "status": "unexpected",
            "file_key": "module.extra",
            "file_shape": (1,),
            "model_shape": None,
        },
        {
            "key": "b.weight",
            "status": "mismatched",
            "file_key": "module.b.weight",
            "file_shape": (2, 9),
            "model_shape": (2, 4),
        },
    ]


def test_safetensors_files_whose_header_length_starts_like_a_pickle_round_trip(tmp_path):
    lengths = set()
    for width in range(1, 65):  # header lengths cover every residue mod 256 that safetensors pads to
        net = torch.nn.Sequential(torch.nn.Linear(1, width))
        path = ember.save_weights(net, tmp_path / f"w{width}.safetensors")
        lengths.add(path.read_bytes()[0])
        fresh = torch.nn.Sequential(torch.nn.Linear(1, width))
        assert ember.load_weights(fresh, path).ok
        assert torch.equal(fresh[0].weight, net[0].weight)
    assert 0x80 in lengths  # the first byte of the header length once equals pickle's opcode
