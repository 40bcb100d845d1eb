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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ember.errors import DataError

__all__ = ["PAD", "UNK", "Tokens", "Vocabulary", "clean", "encode", "ids_of", "pack", "tokenize"]

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


_DELETE = string.punctuation.encode()
_UNICODE_SPACES = dict.fromkeys(
    [0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000], " "
)  # every non-ASCII character for which str.isspace() is true


@dataclass
class Tokens:
    """A tokenised corpus: word codes in order, the distinct words, and each text's word count."""

    codes: np.ndarray  # int64, one per word, indexes ``uniques``
    uniques: list[str]
    lengths: np.ndarray  # int64, words per text

    def counts(self) -> np.ndarray:
        """How often each distinct word occurs."""
        return np.bincount(self.codes, minlength=len(self.uniques))


def _clean_corpus(texts: Sequence[str]) -> bytes:
    """All texts cleaned as by :func:`clean` and joined by the byte 0x01, as UTF-8 bytes."""
    if any("\x00" in t or "\x01" in t for t in texts):  # 0 pads packed words, 1 separates texts
        texts = [t.replace("\x00", " ").replace("\x01", " ") for t in texts]
    corpus = "\x01".join(texts)
    if not corpus.isascii():  # str.lower is needed; str.split() also splits on non-ASCII spaces
        data = corpus.lower().translate(_UNICODE_SPACES).encode("utf-8").translate(_LOWER_ASCII)
    elif any(variant in corpus for variant in ("<B", "<bR", "<br\n")):
        data = corpus.encode("ascii").translate(_LOWER_ASCII)  # "<BR />", "<br\n/>" need it first
    else:  # no such variant: one translate after the replace lowercases and deletes punctuation
        return corpus.encode("ascii").replace(b"<br />", b" ").translate(_LOWER_ASCII, _DELETE)
    return data.replace(b"<br />", b" ").translate(None, _DELETE)  # deleting ASCII keeps UTF-8 intact


_LOWER_ASCII = bytes.maketrans(
    string.ascii_uppercase.encode() + b"\n", string.ascii_lowercase.encode() + b" "
)
_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[1, 9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True  # str.split()'s ASCII spaces, and 0x01
_KEEP_LOW = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], dtype=np.uint64)


def _word_bounds(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start and end offsets of the words of ``buf`` (runs of non-space bytes), and the offsets of
    the 0x01 separators between texts."""
    controls = np.flatnonzero(buf < 32)  # few: separators, tabs, the odd control character
    space = np.empty(len(buf) + 2, dtype=bool)
    space[0] = space[-1] = True
    if _WHITESPACE[buf[controls]].all():  # then "space" is simply "<= 32", without a table lookup
        np.less_equal(buf, 32, out=space[1:-1])
    else:
        space[1:-1] = _WHITESPACE[buf]
    edges = np.flatnonzero(space[1:] != space[:-1])  # alternately a word's start and its end
    return edges[0::2], edges[1::2], controls[buf[controls] == 1]


def _word_codes(data: bytes, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, list[bytes]]:
    """Number the words: words of up to 8 bytes are packed exactly into uint64 keys and numbered
    with an integer hash table; longer ones go through Python bytes objects."""
    lengths = ends - starts
    # the 8 bytes at every offset, read as one little-endian integer (an unaligned view, no copy)
    at_offset = np.ndarray((len(data),), dtype="<u8", buffer=data + b"\x00" * 8, strides=(1,))
    short = lengths <= 8
    keys = at_offset[starts[short]]
    keys &= _KEEP_LOW[lengths[short]]
    short_codes, short_keys = pd.factorize(keys)
    long_words = np.array(
        [data[a:b] for a, b in zip(starts[~short], ends[~short], strict=True)], dtype=object
    )
    long_codes, long_uniques = pd.factorize(long_words) if len(long_words) else (np.zeros(0, np.int64), [])
    codes = np.empty(len(starts), dtype=np.int64)
    codes[short] = short_codes
    codes[~short] = long_codes + len(short_keys)
    uniques = [int(k).to_bytes(8, "little").rstrip(b"\x00") for k in short_keys] + list(long_uniques)
    return codes, uniques


def tokenize(texts: Sequence[str]) -> Tokens:
    """``clean`` every text and split it on whitespace, for the whole corpus at once.

    The texts are joined by a separator byte and cleaned in a few passes over one buffer; words
    are found with numpy and numbered exactly (short words packed into integers, so most of the
    hashing happens on integers, not Python objects). Equal to ``[clean(t).split() for t in texts]``.
    """
    if not texts:
        return Tokens(np.zeros(0, np.int64), [], np.zeros(0, np.int64))
    data = _clean_corpus(texts)
    buf = np.frombuffer(data, dtype=np.uint8)
    starts, ends, separators = _word_bounds(buf)
    words_before = np.searchsorted(starts, separators)  # words before each separator
    lengths = np.diff(np.concatenate([[0], words_before, [len(starts)]])).astype(np.int64)
    codes, uniques = _word_codes(data, starts, ends)
    return Tokens(codes, [u.decode("utf-8") for u in uniques], lengths)


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
    def build(cls, texts: Sequence[str], max_words: int = 10000, min_freq: int = 1) -> Vocabulary:
        """The ``max_words`` - 2 most frequent words of ``texts`` (after ``clean``) plus the two specials."""
        return cls.from_tokens(tokenize(texts), max_words, min_freq)

    @classmethod
    def from_tokens(cls, tokens: Tokens, max_words: int = 10000, min_freq: int = 1) -> Vocabulary:
        """Build from a tokenised corpus (see :func:`tokenize`)."""
        if max_words < 2:
            raise DataError(f"max_words must be >= 2 (the two special ids), got {max_words}")
        frame = pd.DataFrame({"word": tokens.uniques, "count": tokens.counts()})
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


def ids_of(tokens: Tokens, vocab: Vocabulary) -> np.ndarray:
    """Every word's vocabulary id (unknown -> 0), looking each distinct word up once."""
    table = np.fromiter(
        (vocab.index.get(w, UNK) for w in tokens.uniques), dtype=np.int32, count=len(tokens.uniques)
    )
    return table[tokens.codes] if len(tokens.codes) else np.zeros(0, dtype=np.int32)


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
    tokens = tokenize(texts)
    return pack(ids_of(tokens, vocab), tokens.lengths, max_len, pad, truncate)
