import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from ember.errors import ShapeError
from ember.metrics import AUC, Accuracy


def test_multiclass_accuracy_over_batches_is_exact():
    m = Accuracy()
    m.update(torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), torch.tensor([0, 0, 0]))  # 2 of 3
    m.update(torch.tensor([[0.1, 0.9]]), torch.tensor([1]))  # 1 of 1
    assert m.compute().item() == pytest.approx(3 / 4)


def test_multiclass_accuracy_with_one_hot_targets():
    m = Accuracy()
    m.update(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    assert m.compute().item() == 0.5


def test_binary_probabilities_and_logits_use_the_right_threshold():
    preds = torch.tensor([[0.3], [0.7], [0.6]])
    target = torch.tensor([[0.0], [1.0], [0.0]])
    probs = Accuracy(from_logits=False)
    probs.update(preds, target)
    assert probs.compute().item() == pytest.approx(2 / 3)
    logits = Accuracy(from_logits=True)
    logits.update(preds, target)  # every logit > 0 -> all predicted positive
    assert logits.compute().item() == pytest.approx(1 / 3)


def test_binary_auto_mode_reads_out_of_range_outputs_as_logits():
    m = Accuracy()
    m.update(torch.tensor([-2.0, 0.3, 1.5]), torch.tensor([0, 1, 1]))
    assert m.compute().item() == 1.0
    m.reset()
    m.update(torch.tensor([0.2, 0.3, 0.9]), torch.tensor([0, 1, 1]))  # in [0,1]: probabilities
    assert m.compute().item() == pytest.approx(2 / 3)


def test_accuracy_shape_mismatch_names_shapes():
    with pytest.raises(ShapeError, match=r"\(4, 1\).*\(3,\)"):
        Accuracy().update(torch.zeros(4, 1), torch.zeros(3))


def test_accuracy_before_update_is_nan():
    assert torch.isnan(Accuracy().compute())


def test_state_dict_round_trip():
    m = Accuracy()
    m.update(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    other = Accuracy()
    other.load_state_dict(m.state_dict())
    other.update(torch.tensor([[1.0, 0.0]]), torch.tensor([1]))
    assert other.compute().item() == 0.5


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2, max_size=60))
def test_auc_matches_sklearn_with_ties(pairs):
    scores = np.array([s for s, _ in pairs], dtype=float)
    labels = np.array([int(b) for _, b in pairs])
    if labels.min() == labels.max():
        return
    m = AUC()
    half = len(pairs) // 2
    m.update(torch.tensor(scores[:half]), torch.tensor(labels[:half]))
    m.update(torch.tensor(scores[half:]), torch.tensor(labels[half:]))
    assert m.compute().item() == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auc_state_round_trip_and_two_column_scores():
    m = AUC()
    m.update(torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 2.0]]), torch.tensor([1, 0, 0]))
    restored = AUC()
    restored.load_state_dict(m.state_dict())
    assert restored.compute().item() == pytest.approx(0.5)
