"""The tutorial's IMDB text path done properly: clean, vocabulary, encode, one memory-mapped int32 array.

Cleaning and vocabulary follow the tutorial (lowercase, ``<br />`` and punctuation removed, ids 0 =
unknown and 1 = padding, the most frequent words next); encoding keeps the last ``max_len`` words and
pads on the left. Tokenising is vectorised (pandas factorize, numpy), and a dataset is stored as one
int32 ``.npy`` keyed by its source file's content hash and settings, not as one file per sample.
Knows numpy, pandas and torch; nothing about training.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ember.errors import DataError

__all__ = ["PAD", "UNK", "Vocabulary", "clean", "encode"]

UNK, PAD = 0, 1
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


def clean(text: str) -> str:
    """The tutorial's cleaning: lowercase, newlines and ``<br />`` to spaces, punctuation removed.

    Example:
        >>> clean("Great film!<br />Loved it.")
        'great film loved it'
    """
    lowered = text.lower().replace("\n", " ").replace("<br />", " ")
    return _PUNCTUATION.sub("", lowered)


def _words(texts: Iterable[str]) -> tuple[list[str], np.ndarray]:
    """All words of all cleaned texts in order, and each text's word count."""
    split = [clean(t).split() for t in texts]
    lengths = np.fromiter((len(s) for s in split), dtype=np.int64, count=len(split))
    return [w for s in split for w in s], lengths


class Vocabulary:
    """Word <-> id mapping: 0 ``<unk>``, 1 ``<pad>``, then words by descending frequency (ties by word).

    Example:
        >>> v = Vocabulary.build(["b a b", "c a b"], max_words=4)
        >>> v.words, len(v), v.encode("b c z")
        (['<unk>', '<pad>', 'b', 'a'], 4, [2, 0, 0])
    """

    def __init__(self, words: Sequence[str]) -> None:
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, texts: Iterable[str], max_words: int = 10000, min_freq: int = 1) -> Vocabulary:
        """The ``max_words`` - 2 most frequent words of ``texts`` (after ``clean``) plus the two specials."""
        words, _ = _words(texts)
        return cls.from_words(words, max_words, min_freq)

    @classmethod
    def from_words(cls, words: Sequence[str], max_words: int = 10000, min_freq: int = 1) -> Vocabulary:
        """Build from an already tokenised word list."""
        if max_words < 2:
            raise DataError(f"max_words must be >= 2 (the two special ids), got {max_words}")
        counts = pd.Series(words, dtype=object).value_counts(sort=False)
        frame = pd.DataFrame({"word": counts.index.astype(str), "count": counts.to_numpy()})
        frame = frame[frame["count"] >= min_freq].sort_values(["count", "word"], ascending=[False, True])
        return cls(["<unk>", "<pad>", *frame["word"].head(max_words - 2)])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        """Ids of the words of ``clean(text)``, unknown words -> 0."""
        return [self.index.get(w, UNK) for w in clean(text).split()]

    def decode(self, ids: Iterable[int], skip_pad: bool = True) -> str:
        """The words of ``ids`` joined by spaces (padding left out unless ``skip_pad=False``)."""
        return " ".join(self.words[i] for i in ids if not (skip_pad and i == PAD))

    def save(self, path: str | Path) -> None:
        """Write the word list as JSON."""
        Path(path).write_text(json.dumps({"words": self.words}, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`."""
        return cls(json.loads(Path(path).read_text())["words"])

    def digest(self) -> str:
        """A short hash of the word list (part of cache keys)."""
        return hashlib.sha256("\n".join(self.words).encode()).hexdigest()[:16]


def _ids(words: list[str], vocab: Vocabulary) -> np.ndarray:
    """Vectorised lookup: factorize the words once, map each distinct word once."""
    codes, uniques = pd.factorize(pd.Series(words, dtype=object))
    table = np.fromiter((vocab.index.get(w, UNK) for w in uniques), dtype=np.int32, count=len(uniques))
    return table[codes] if len(codes) else np.zeros(0, dtype=np.int32)


def pack(
    ids: np.ndarray, lengths: np.ndarray, max_len: int, pad: str = "left", truncate: str = "left"
) -> np.ndarray:
    """Cut a flat id array into rows of ``max_len`` (N x max_len int32), padding with 1.

    ``truncate="left"`` keeps the last ``max_len`` ids of a long text (the tutorial), ``"right"`` the
    first; ``pad="left"`` puts the padding before the ids (the tutorial), ``"right"`` after.
    """
    if pad not in ("left", "right") or truncate not in ("left", "right"):
        raise DataError(f"pad and truncate must be 'left' or 'right', got {pad!r}, {truncate!r}")
    n = len(lengths)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    kept = np.minimum(lengths, max_len)
    first = np.where(truncate == "left", ends - kept, starts)  # first kept id of each text
    out = np.full((n, max_len), PAD, dtype=np.int32)
    if kept.sum() == 0:
        return out
    row = np.repeat(np.arange(n), kept)
    offset = np.arange(int(kept.sum())) - np.repeat(np.cumsum(kept) - kept, kept)
    column = offset + (np.repeat(max_len - kept, kept) if pad == "left" else 0)
    out[row, column] = ids[np.repeat(first, kept) + offset]
    return out


def encode(
    texts: Sequence[str], vocab: Vocabulary, max_len: int = 200, pad: str = "left", truncate: str = "left"
) -> np.ndarray:
    """Texts -> int32 array (len(texts) x max_len) with the tutorial's semantics by default.

    Unknown words become 0; a long text keeps its last ``max_len`` words; a short one is padded on
    the left with 1.

    Example:
        >>> v = Vocabulary(["<unk>", "<pad>", "good", "film"])
        >>> encode(["good film", "a good good film"], v, max_len=3).tolist()
        [[1, 2, 3], [2, 2, 3]]
    """
    words, lengths = _words(texts)
    return pack(_ids(words, vocab), lengths, max_len, pad, truncate)
