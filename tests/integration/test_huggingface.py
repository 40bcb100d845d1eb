"""A tiny transformers model (built from a config, nothing downloaded) trained by ember on a Hugging
Face ``datasets.Dataset`` of the tutorial's tokenised IMDB reviews: dict batches, ``compile(loss=None)``
(the model's own loss), ``.logits`` outputs feeding metrics and losses, and a DataLoader over it."""

import itertools
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from ember import Model
from ember.errors import ConfigError, DataError
from tests.conftest import shared_data

transformers = pytest.importorskip("transformers", reason="the transformers package is not installed")
datasets = pytest.importorskip("datasets", reason="the datasets package is not installed")

COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
PAD = 1  # the padding id of the tutorial's IMDB vocabulary


def imdb_rows(n: int) -> tuple[list[list[int]], list[int]]:
    """The first ``n`` reviews of the tutorial's tokenised IMDB training file: ids and labels."""
    path: Path = shared_data("imdb", "train_token.tsv")
    ids, labels = [], []
    with path.open() as f:
        for line in itertools.islice(f, n):
            label, tokens = line.rstrip("\n").split("\t")
            labels.append(int(label))
            ids.append([int(t) for t in tokens.split()])
    return ids, labels


def imdb_dataset(n: int = 512, label_key: str = "labels", **extra: list) -> "datasets.Dataset":
    """A ``datasets.Dataset`` of ``input_ids``, ``attention_mask`` and the label column."""
    ids, labels = imdb_rows(n)
    masks = [[int(t != PAD) for t in row] for row in ids]
    return datasets.Dataset.from_dict({"input_ids": ids, "attention_mask": masks, label_key: labels, **extra})


def tiny_bert(seed: int = 0) -> nn.Module:
    """A one-layer BERT classifier with random weights (no download)."""
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=10000,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
        num_labels=2,
        pad_token_id=PAD,
    )
    return transformers.BertForSequenceClassification(config)


def own_loss_model(net: nn.Module, lr: float = 1e-3) -> Model:
    """``net`` compiled to train on the loss it computes itself."""
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr)
    return Model(net).compile(loss=None, metrics=["accuracy"], optimizer=optimizer, device="cpu")


def hand_evaluation(net: nn.Module, ds: "datasets.Dataset", loss_fn=None) -> tuple[float, float]:
    """Mean loss and accuracy over ``ds`` in batches of 32, written out by hand (eval mode,
    no gradients): the model's own loss, or ``loss_fn(logits, labels)``."""
    net.eval()
    data = ds.with_format("torch")
    total, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(data), 32):
            batch = data[start : start + 32]
            labels = batch["labels"]
            if loss_fn is None:
                out = net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)
                loss = out.loss
            else:
                out = net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
                loss = loss_fn(out.logits, labels)
            total += float(loss) * len(labels)
            correct += int((out.logits.argmax(dim=1) == labels).sum())
    return total / len(data), correct / len(data)


def test_fit_on_a_hugging_face_dataset_with_the_models_own_loss():
    ds = imdb_dataset(512)
    train, val = ds.select(range(384)), ds.select(range(384, 512))
    model = own_loss_model(tiny_bert())
    history = model.fit(train, batch_size=32, epochs=1, verbose=0, validation_data=val)
    assert list(history.columns) == COLUMNS
    assert history["epoch"].tolist() == [1]
    assert math.isfinite(history["loss"].iloc[0]) and 0.4 < history["loss"].iloc[0] < 1.0
    correct = history["val_accuracy"].iloc[0] * 128  # a whole number of the 128 reviews
    assert correct == pytest.approx(round(correct))
    result = model.evaluate(val)
    assert result["loss"] == pytest.approx(history["val_loss"].iloc[0], abs=1e-6)
    assert result["accuracy"] == pytest.approx(history["val_accuracy"].iloc[0], abs=1e-9)


def test_the_loss_falls_epoch_after_epoch_on_a_small_subset():
    model = own_loss_model(tiny_bert(), lr=3e-3)
    history = model.fit(imdb_dataset(32), batch_size=8, epochs=5, shuffle=False, verbose=0)
    losses = history["loss"].tolist()
    assert all(math.isfinite(x) for x in losses)
    assert all(later < earlier for earlier, later in itertools.pairwise(losses))
    assert losses[-1] < 0.9 * losses[0]  # about 0.69 (chance for 2 classes) down to 0.57


def test_evaluate_equals_a_hand_loop_over_the_same_data():
    ds = imdb_dataset(200)  # the last batch holds 8: sample-weighted, not a mean of batch means
    model = own_loss_model(tiny_bert())
    model.fit(ds.select(range(96)), batch_size=32, epochs=1, verbose=0)
    result = model.evaluate(ds)
    loss, accuracy = hand_evaluation(model.net, ds)
    assert result["loss"] == pytest.approx(loss, abs=1e-5)
    assert result["accuracy"] == pytest.approx(accuracy, abs=1e-9)


def test_a_loss_function_reads_the_logits_of_the_output():
    ds = imdb_dataset(160)
    net = tiny_bert()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    model = Model(net).compile(
        loss=nn.CrossEntropyLoss(), target="labels", metrics=["accuracy"], optimizer=optimizer, device="cpu"
    )
    history = model.fit(ds, batch_size=32, epochs=1, verbose=0, validation_data=ds)
    assert list(history.columns) == COLUMNS
    loss, accuracy = hand_evaluation(model.net, ds, nn.CrossEntropyLoss())
    result = model.evaluate(ds)
    assert result["loss"] == pytest.approx(loss, abs=1e-5)
    assert result["accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert history["val_loss"].iloc[0] == pytest.approx(loss, abs=1e-5)


def test_the_same_run_twice_gives_identical_weights():
    def run() -> dict[str, torch.Tensor]:
        torch.manual_seed(7)  # ember's shuffle seed is drawn from the global RNG
        model = own_loss_model(tiny_bert())
        model.fit(imdb_dataset(128), batch_size=32, epochs=2, verbose=0)  # shuffled, dropout on
        return model.net.state_dict()

    first, second = run(), run()
    assert list(first) == list(second)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["classifier.weight"], tiny_bert().state_dict()["classifier.weight"])


def test_a_dataloader_over_the_hugging_face_dataset():
    ds = imdb_dataset(160).with_format("torch")

    def run() -> tuple[Model, dict[str, torch.Tensor]]:
        model = own_loss_model(tiny_bert())
        loader = DataLoader(ds, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(3))
        history = model.fit(loader, epochs=2, verbose=0)
        assert history["epoch"].tolist() == [1, 2] and all(math.isfinite(x) for x in history["loss"])
        return model, model.net.state_dict()

    model, weights = run()
    _, again = run()
    assert all(torch.equal(weights[k], again[k]) for k in weights)
    in_order = model.evaluate(DataLoader(ds, batch_size=32))
    assert in_order["loss"] == pytest.approx(model.evaluate(ds)["loss"], abs=1e-6)
    assert in_order["loss"] == pytest.approx(hand_evaluation(model.net, ds)[0], abs=1e-5)


def test_a_label_column_reaches_the_model_as_labels():
    ds = imdb_dataset(96, label_key="label")
    model = own_loss_model(tiny_bert())
    history = model.fit(ds, batch_size=32, epochs=1, verbose=0)
    assert list(history.columns) == ["epoch", "loss", "accuracy", "lr", "seconds"]
    loss, accuracy = hand_evaluation(model.net, ds.rename_column("label", "labels"))
    result = model.evaluate(ds)
    assert result["loss"] == pytest.approx(loss, abs=1e-5)
    assert result["accuracy"] == pytest.approx(accuracy, abs=1e-9)


def test_a_text_column_is_named_with_the_fix():
    ds = imdb_dataset(32, text=[f"review {i}" for i in range(32)])
    with pytest.raises(DataError, match=r"'text': a list of str.*remove_columns\(\['text'\]\)"):
        own_loss_model(tiny_bert()).fit(ds, batch_size=16, epochs=1, verbose=0)


def test_the_models_own_loss_needs_labels_in_the_batch():
    ds = imdb_dataset(32).remove_columns(["labels"])
    model = Model(tiny_bert()).compile(loss=None, device="cpu")
    with pytest.raises(ConfigError, match=r"SequenceClassifierOutput with keys \['logits'\].*`labels`"):
        model.fit(ds, batch_size=16, epochs=1, verbose=0)
