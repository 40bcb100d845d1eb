import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ember.checkpoint import load_states, save_states
from ember.checkpoint.tree import decode_tree, encode_tree
from ember.errors import CheckpointError

DTYPES = [
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.uint8,
    torch.bool,
]


@st.composite
def tensors(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(st.lists(st.integers(0, 4), max_size=3))
    numel = int(np.prod(shape)) if shape else 1
    values = torch.tensor(draw(st.lists(st.integers(-100, 100), min_size=numel, max_size=numel)))
    tensor = values.reshape(shape).to(dtype)
    kind = draw(st.sampled_from(["plain", "transposed", "view"]))
    if kind == "transposed" and tensor.dim() >= 2:
        tensor = tensor.transpose(0, 1)  # non-contiguous
    elif kind == "view" and tensor.numel() > 1:
        tensor = tensor.reshape(-1)[1:]  # shares storage with an offset
    return tensor


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text("abc", min_size=1, max_size=3), tensors(), max_size=5))
def test_state_dicts_round_trip_bitwise(tmp_path_factory, state):
    base = torch.arange(12.0)
    state = {**state, "shared_a": base, "shared_b": base[2:6]}  # two names, one storage
    path = save_states(tmp_path_factory.mktemp("t") / "ck", {"s": state})
    loaded = load_states(path)[0]["s"]
    assert list(loaded) == list(state)
    for key, tensor in state.items():
        got = loaded[key]
        assert got.dtype == tensor.dtype and got.shape == tensor.shape
        assert torch.equal(got, tensor)  # integer-valued: equal values are equal bits


def test_nested_structures_round_trip():
    state = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2)}},
        "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0], "foreach": None}],
        "inf": float("inf"),
        "array": np.arange(3, dtype=np.uint32),
        "flag": True,
    }
    skeleton, found = encode_tree(state)
    back = decode_tree(skeleton, found)
    assert back["state"][0]["step"].item() == 3.0 and back["param_groups"][0]["betas"] == (0.9, 0.999)
    assert back["inf"] == float("inf") and back["array"].dtype == np.uint32 and back["flag"] is True


def test_unsupported_values_name_their_place():
    with pytest.raises(CheckpointError, match=r"cannot store builtin_function_or_method at a\.fn"):
        encode_tree({"a": {"fn": print}})
