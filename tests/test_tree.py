from collections import namedtuple

import torch

from ember._tree import concat, first_tensor, to_device, tree_map


def test_tree_map_keeps_structure_and_applies_to_tensors():
    Pair = namedtuple("Pair", "a b")
    obj = {"x": [torch.ones(2), (torch.zeros(1), 3)], "p": Pair(torch.ones(1), "s")}
    out = tree_map(lambda t: t + 1, obj)
    assert out["x"][0].tolist() == [2.0, 2.0]
    assert out["x"][1][0].tolist() == [1.0] and out["x"][1][1] == 3
    assert isinstance(out["p"], Pair) and out["p"].a.tolist() == [2.0] and out["p"].b == "s"


def test_to_device_returns_same_tensor_when_already_there():
    t = torch.ones(3)
    assert to_device(t, torch.device("cpu")) is t
    moved = to_device([t, {"k": t}], torch.device("cpu"))
    assert moved[1]["k"] is t


def test_first_tensor_depth_first():
    a, b = torch.ones(1), torch.zeros(2)
    assert first_tensor(([None, 1], {"z": a}, b)) is a
    assert first_tensor([1, "x"]) is None


def test_concat_nested_outputs():
    chunks = [(torch.ones(2, 3), {"h": torch.zeros(2)}), (torch.ones(1, 3), {"h": torch.ones(1)})]
    out = concat(chunks)
    assert out[0].shape == (3, 3)
    assert out[1]["h"].tolist() == [0.0, 0.0, 1.0]
