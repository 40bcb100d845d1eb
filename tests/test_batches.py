from collections import OrderedDict
from types import SimpleNamespace

import pytest
import torch

from ember.batches import output_logits, output_loss, pick_target_key, split_mapping
from ember.errors import ConfigError, DataError


def _batch(**extra):
    return {"input_ids": torch.arange(6).view(2, 3), "attention_mask": torch.ones(2, 3), **extra}


def test_default_target_is_labels_then_label_then_none():
    assert pick_target_key(_batch(labels=0, label=1), None) == "labels"
    assert pick_target_key(_batch(label=1), None) == "label"
    assert pick_target_key(_batch(), None) is None
    assert pick_target_key(_batch(y=1), "y") == "y"


def test_split_mapping_cuts_off_the_target():
    labels = torch.tensor([1, 0])
    inputs, target = split_mapping(_batch(labels=labels), None, "cpu")
    assert list(inputs) == ["input_ids", "attention_mask"]
    assert target.tolist() == [1, 0]
    assert inputs["input_ids"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_split_mapping_without_a_target_gives_every_key_as_input():
    inputs, target = split_mapping(_batch(), None, torch.device("cpu"))
    assert target is None and list(inputs) == ["input_ids", "attention_mask"]


def test_an_explicit_target_key_is_used_even_when_labels_exist():
    inputs, target = split_mapping(_batch(labels=torch.zeros(2), score=torch.ones(2)), "score", "cpu")
    assert target.tolist() == [1.0, 1.0]
    assert list(inputs) == ["input_ids", "attention_mask", "labels"]


def test_an_absent_target_key_names_the_keys_present():
    with pytest.raises(DataError, match=r"no target key 'y'.*\['input_ids', 'attention_mask'\]"):
        split_mapping(_batch(), "y", "cpu")


def test_keep_target_leaves_labels_among_the_inputs():
    inputs, target = split_mapping(_batch(labels=torch.tensor([1, 0])), None, "cpu", keep_target=True)
    assert list(inputs) == ["input_ids", "attention_mask", "labels"]
    assert inputs["labels"] is target


def test_keep_target_passes_a_default_label_column_as_labels():
    inputs, target = split_mapping(_batch(label=torch.tensor([1, 0])), None, "cpu", keep_target=True)
    assert "label" not in inputs and inputs["labels"].tolist() == [1, 0] == target.tolist()
    inputs, _ = split_mapping(_batch(label=torch.tensor([1, 0])), "label", "cpu", keep_target=True)
    assert "label" in inputs and "labels" not in inputs  # an explicit key is passed as it is


def test_text_columns_are_named_with_the_fix():
    batch = _batch(text=["a good film", "a bad film"], labels=torch.tensor([1, 0]))
    with pytest.raises(DataError, match=r"'text': a list of str") as info:
        split_mapping(batch, None, "cpu")
    message = str(info.value)
    assert "dataset.remove_columns(['text'])" in message
    assert "set_format('torch', columns=['input_ids', 'attention_mask', 'labels'])" in message


def test_non_tensor_targets_and_numbers_are_rejected_too():
    with pytest.raises(DataError, match=r"'labels': a list of int"):
        split_mapping(_batch(labels=[1, 0]), None, "cpu")
    with pytest.raises(DataError, match=r"'scale': a float"):
        split_mapping(_batch(scale=0.5), None, "cpu")


def test_nested_tensors_are_accepted():
    batch = {
        "pair": (torch.ones(2, 3), torch.zeros(2, 3)),
        "extra": {"m": torch.ones(2)},
        "labels": torch.ones(2),
    }
    inputs, target = split_mapping(batch, None, "cpu")
    assert target.tolist() == [1.0, 1.0]
    assert list(inputs) == ["pair", "extra"] and inputs["extra"]["m"].tolist() == [1.0, 1.0]


def test_a_batch_of_only_the_target_is_an_error():
    with pytest.raises(DataError, match="only the target 'labels'"):
        split_mapping({"labels": torch.ones(2)}, None, "cpu")


def test_split_mapping_returns_a_plain_dict_for_other_mappings():
    batch = OrderedDict(x=torch.ones(2), labels=torch.ones(2))
    inputs, _ = split_mapping(batch, None, "cpu")
    assert type(inputs) is dict


def test_output_logits_reads_attribute_key_or_passes_through():
    logits = torch.randn(2, 3)
    assert output_logits(logits) is logits
    assert output_logits(SimpleNamespace(logits=logits, loss=None)) is logits
    assert output_logits({"logits": logits, "hidden": torch.zeros(1)}) is logits
    other = (logits, torch.zeros(1))
    assert output_logits(other) is other
    assert output_logits({"scores": logits}) == {"scores": logits}


def test_output_loss_reads_attribute_or_key():
    loss = torch.tensor(0.25)
    assert output_loss(SimpleNamespace(loss=loss, logits=None)) is loss
    assert output_loss({"loss": loss}) is loss


def test_a_missing_loss_names_the_output_and_the_fix():
    with pytest.raises(
        ConfigError, match=r"returned a dict with keys \['logits'\].*put `labels` in the batch"
    ):
        output_loss({"logits": torch.zeros(2, 2)})
    with pytest.raises(ConfigError, match=r"returned a SimpleNamespace"):
        output_loss(SimpleNamespace(loss=None, logits=torch.zeros(2)))
    with pytest.raises(ConfigError, match=r"returned a Tensor"):
        output_loss(torch.zeros(2))


def test_a_loss_that_is_not_a_scalar_is_named_by_shape():
    with pytest.raises(ConfigError, match=r"0-dim tensor.*got \(4,\)"):
        output_loss({"loss": torch.zeros(4)})
    with pytest.raises(ConfigError, match=r"got float"):
        output_loss({"loss": 0.5})


def test_transformers_model_outputs():
    outputs = pytest.importorskip("transformers.modeling_outputs", reason="transformers is not installed")
    logits, loss = torch.randn(2, 2), torch.tensor(0.7)
    with_loss = outputs.SequenceClassifierOutput(loss=loss, logits=logits)
    assert output_logits(with_loss) is logits and output_loss(with_loss) is loss
    without = outputs.SequenceClassifierOutput(logits=logits)
    with pytest.raises(ConfigError, match=r"SequenceClassifierOutput with keys \['logits'\]"):
        output_loss(without)
