import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ember.data import TextClassificationDataset, Vocabulary, clean, encode, loader
from ember.data.text import PAD, UNK, tokenize
from ember.errors import DataError
from tests.conftest import shared_data


def test_clean_matches_the_tutorial():
    assert clean("It's GREAT!<br />A must-see.\nReally") == "its great a mustsee really"


@pytest.mark.parametrize("text", ["a<BR />b", "a<bR />b", "a<br\n/>b", "a<br />b", "é<BR />b", "é<br\n/>b"])
def test_tokenize_handles_every_br_variant_like_clean(text):
    tokens = tokenize([text, "x"])
    assert [tokens.uniques[c] for c in tokens.codes] == [*clean(text).split(), "x"]


def test_vocabulary_order_specials_and_ties():
    v = Vocabulary.build(["b a b", "c a b d"], max_words=5)
    assert v.words == ["<unk>", "<pad>", "b", "a", "c"]  # b:3, a:2, then c/d tie -> c
    assert v.encode("b d x") == [2, UNK, UNK]
    assert v.decode([1, 1, 2, 3]) == "b a"
    assert len(Vocabulary.build(["a a b"], min_freq=2)) == 3


def test_vocabulary_save_load(tmp_path):
    v = Vocabulary.build(["é café", "café"])
    v.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json").words == v.words


def test_encode_keeps_the_last_words_and_pads_left():
    v = Vocabulary(["<unk>", "<pad>", "a", "b", "c"])
    out = encode(["a b c a", "c", ""], v, max_len=3)
    assert out.dtype == np.int32
    assert out.tolist() == [[3, 4, 2], [PAD, PAD, 4], [PAD, PAD, PAD]]
    right = encode(["a b c a", "c"], v, max_len=3, pad="right", truncate="right")
    assert right.tolist() == [[2, 3, 4], [4, PAD, PAD]]


WORDS = st.sampled_from(["the", "film", "good", "bad", "plot", "actor", "zebra"])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(WORDS, max_size=12), min_size=1, max_size=8), st.integers(1, 10))
def test_encode_properties(docs, max_len):
    texts = [" ".join(d) for d in docs]
    v = Vocabulary.build(texts[: max(1, len(texts) // 2)], max_words=5)
    out = encode(texts, v, max_len=max_len)
    assert out.shape == (len(texts), max_len)
    assert out.min() >= 0 and out.max() < len(v)
    for doc, row in zip(docs, out, strict=True):
        kept = doc[-max_len:]
        ids = row[max_len - len(kept) :].tolist()
        assert row[: max_len - len(kept)].tolist() == [PAD] * (max_len - len(kept))
        assert [v.words[i] if i != UNK else None for i in ids] == [w if w in v.index else None for w in kept]
        if all(w in v.index for w in kept):
            assert v.decode(row.tolist()) == " ".join(kept)  # round trip of known words


def _tsv(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_from_tsv_builds_caches_and_reuses(tmp_path):
    src = _tsv(tmp_path / "train.tsv", ["1\tGood film, good actor!", "0\tBad plot.<br />Bad film", "1\tgood"])
    ds = TextClassificationDataset.from_tsv(src, max_len=4, cache_dir=tmp_path / "cache")
    ids, label = ds[1]
    assert ids.dtype == torch.int64 and ids.shape == (4,)
    assert ds.vocab.decode(ids.tolist()) == "bad plot bad film"
    assert label.dtype == torch.float32 and label.tolist() == [0.0]
    assert isinstance(ds.ids, np.memmap) and len(list((tmp_path / "cache").glob("*.npy"))) == 1
    again = TextClassificationDataset.from_tsv(src, max_len=4, cache_dir=tmp_path / "cache")
    assert np.array_equal(again.ids, ds.ids) and len(list((tmp_path / "cache").glob("*.npy"))) == 1
    TextClassificationDataset.from_tsv(src, max_len=5, cache_dir=tmp_path / "cache")  # new setting
    _tsv(src, ["1\tother text"])  # new content
    changed = TextClassificationDataset.from_tsv(src, max_len=4, cache_dir=tmp_path / "cache")
    assert len(changed) == 1 and len(list((tmp_path / "cache").glob("*.npy"))) == 3
    test = TextClassificationDataset.from_tsv(
        _tsv(tmp_path / "test.tsv", ["0\tbad zebra"]),
        vocab=ds.vocab,
        max_len=4,
        cache_dir=tmp_path / "cache",
        label_dtype=torch.long,
    )
    assert test[0][0].tolist() == [PAD, PAD, ds.vocab.index["bad"], UNK] and test[0][1].dtype == torch.long


def test_bad_lines_name_file_and_line(tmp_path):
    src = _tsv(tmp_path / "bad.tsv", ["1\tfine", "no tab here", "x\tbad label", "0\tok"])
    with pytest.raises(DataError, match=r"bad.tsv:2: no tab between label and text"):
        TextClassificationDataset.from_tsv(src, cache_dir=tmp_path)
    with pytest.warns(UserWarning, match=r"bad.tsv:3: label 'x' is not an integer"):
        ds = TextClassificationDataset.from_tsv(src, on_bad_lines="warn", cache_dir=tmp_path / "w")
    assert len(ds) == 2 and ds.skipped_lines == 2
    assert len(TextClassificationDataset.from_tsv(src, on_bad_lines="skip", cache_dir=tmp_path / "s")) == 2
    with pytest.raises(DataError, match="does not exist"):
        TextClassificationDataset.from_tsv(tmp_path / "missing.tsv")


def test_imdb_token_files(tmp_path):
    path = shared_data("imdb", "train_token.tsv")
    ds = TextClassificationDataset.from_token_tsv(path, cache_dir=tmp_path)
    assert ds.ids.shape == (20000, 200) and set(np.unique(ds.labels)) == {0, 1}
    first = path.open().readline().rstrip("\n").split("\t")
    assert ds[0][0].tolist() == [int(t) for t in first[1].split(" ")]
    assert ds[0][1].tolist() == [float(first[0])]
    batch = next(iter(loader(ds, batch_size=50, shuffle=True, seed=0)))
    assert batch[0].shape == (50, 200) and batch[1].shape == (50, 1) and batch[0].max() < 10000


ODD_CHARACTERS = list("aBR é!.,<br />\n\t\x00\x01\x0b\x1c\xa0\u3000İ-'")
ODD_TEXT = st.text(alphabet=st.sampled_from(ODD_CHARACTERS), max_size=30)


@settings(max_examples=100, deadline=None)
@given(st.lists(ODD_TEXT, max_size=6))
def test_tokenize_equals_clean_then_split(texts):
    """Also with every unicode space: the vectorised path must split exactly like str.split()."""
    tokens = tokenize(texts)
    expected = [clean(t.replace("\x00", " ").replace("\x01", " ")).split() for t in texts]
    assert tokens.lengths.tolist() == [len(e) for e in expected]
    assert [tokens.uniques[c] for c in tokens.codes] == [w for e in expected for w in e]


def test_the_unicode_space_table_is_complete():
    import sys

    from ember.data.text import _UNICODE_SPACES

    spaces = [c for c in range(128, sys.maxunicode + 1) if chr(c).isspace()]
    assert sorted(_UNICODE_SPACES) == spaces
