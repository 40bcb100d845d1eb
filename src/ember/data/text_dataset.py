"""TextClassificationDataset: ``label<TAB>text`` files as one memory-mapped int32 id array, cached.

The first load tokenises the file (or reads pre-tokenised ids) and writes ``<name>.<key>.npy`` plus a
small JSON (labels, vocabulary) into a cache folder (``cache_dir``, default ``~/.cache/ember/text``);
``key`` hashes the file's bytes and the settings,
so a changed file or setting rebuilds the cache. Malformed lines are reported with file and line
number. Knows numpy, torch and ember.data.text.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ember.data.cachedir import cache_folder
from ember.data.loading import GatherDataset
from ember.data.text import Vocabulary, ids_of, pack, tokenize
from ember.errors import DataError

__all__ = ["TextClassificationDataset"]

_BAD_LINES = ("error", "warn", "skip")


def _read_lines(path: Path, content: str, on_bad_lines: str) -> tuple[list[int], list[str], int]:
    """Labels and texts of the ``label<TAB>text`` lines of ``content`` (read from ``path``)."""
    if on_bad_lines not in _BAD_LINES:
        raise DataError(f"on_bad_lines must be one of {_BAD_LINES}, got {on_bad_lines!r}")
    if "\r" in content:  # the same lines as a text-mode read
        content = content.replace("\r\n", "\n").replace("\r", "\n")
    lines = content.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    labels, texts, bad = [], [], 0
    for number, line in enumerate(lines, 1):
        label, tab, text = line.partition("\t")
        problem = None if tab else "no tab between label and text"
        if problem is None and not label.strip().lstrip("-").isdigit():
            problem = f"label {label!r} is not an integer"
        if problem is not None:
            if on_bad_lines == "error":
                raise DataError(f"{path}:{number}: {problem}")
            if on_bad_lines == "warn":
                warnings.warn(f"{path}:{number}: {problem}; line skipped", stacklevel=4)
            bad += 1
            continue
        labels.append(int(label))
        texts.append(text)
    if not labels:
        raise DataError(f"{path} has no usable lines")
    return labels, texts, bad


def _token_rows(source: Path, texts: list[str], max_len: int) -> np.ndarray:
    """Rows of pre-tokenised ids (space-separated integers), packed to ``max_len``."""
    rows = []
    for number, text in enumerate(texts, 1):
        try:
            rows.append(np.array(text.split(), dtype=np.int32))
        except ValueError as exc:
            raise DataError(f"{source}: sample {number}: ids must be integers ({exc})") from exc
    lengths = np.array([len(r) for r in rows])
    flat = np.concatenate(rows) if rows else np.zeros(0, np.int32)
    return pack(flat, lengths, max_len)


def _key(raw: bytes, settings: dict) -> str:
    digest = hashlib.sha256(raw)
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:20]


class TextClassificationDataset(Dataset):
    """Fixed-length id rows and integer labels.

    ``dataset[i]`` is ``(ids: LongTensor[max_len], label)`` with the label a float tensor of shape
    ``[1]`` (``label_dtype=torch.float32``, for BCE losses, as in the tutorial) or a long scalar
    (``label_dtype=torch.long``). ``ids`` is the whole memory-mapped int32 array; ``skipped_lines``
    counts lines left out by ``on_bad_lines``.
    """

    def __init__(
        self,
        ids: np.ndarray,
        labels: np.ndarray,
        vocab: Vocabulary | None = None,
        label_dtype: torch.dtype = torch.float32,
        skipped_lines: int = 0,
    ) -> None:
        self.ids = ids
        self.labels = labels
        self.vocab = vocab
        self.label_dtype = label_dtype
        self.skipped_lines = skipped_lines

    def __len__(self) -> int:
        return len(self.ids)

    def _label(self, values: np.ndarray | int) -> torch.Tensor:
        label = torch.as_tensor(values, dtype=self.label_dtype)
        return label.unsqueeze(-1) if self.label_dtype.is_floating_point else label

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.ids[i].astype(np.int64)), self._label(int(self.labels[i]))

    def gather_view(self) -> GatherDataset:
        """The same samples as whole tensors, for one-gather batches (``ember.data.loader``)."""
        ids = torch.from_numpy(np.asarray(self.ids, dtype=np.int64))
        return GatherDataset([ids, self._label(self.labels)])

    @classmethod
    def from_tsv(
        cls,
        path: str | Path,
        vocab: Vocabulary | None = None,
        max_words: int = 10000,
        max_len: int = 200,
        on_bad_lines: str = "error",
        cache_dir: str | Path | None = None,
        label_dtype: torch.dtype = torch.float32,
        tokenized: bool = False,
    ) -> TextClassificationDataset:
        """Read ``label<TAB>text`` lines, building a vocabulary (``max_words``) unless one is given;
        ``tokenized=True`` reads ``label<TAB>id id id ...`` lines instead (no vocabulary)."""
        source = Path(path)
        settings = {
            "kind": "tokens" if tokenized else "text",
            "max_len": max_len,
            "max_words": max_words,
            "vocab": vocab.digest() if vocab and not tokenized else None,
            "on_bad_lines": on_bad_lines,
        }

        def build(content: str) -> tuple[np.ndarray, list[int], list[str], int]:
            labels, texts, bad = _read_lines(source, content, on_bad_lines)
            if tokenized:
                return _token_rows(source, texts, max_len), labels, [], bad
            tokens = tokenize(texts)
            built = vocab or Vocabulary.from_tokens(tokens, max_words=max_words)
            return pack(ids_of(tokens, built), tokens.lengths, max_len), labels, built.words, bad

        return cls._cached(source, settings, build, cache_dir, label_dtype)

    @classmethod
    def from_token_tsv(
        cls, path: str | Path, max_len: int = 200, **options: Any
    ) -> TextClassificationDataset:
        """Read already tokenised ``label<TAB>id id id ...`` lines (e.g. ../shared/data/imdb); the
        options are those of :meth:`from_tsv` (``on_bad_lines``, ``cache_dir``, ``label_dtype``)."""
        return cls.from_tsv(path, max_len=max_len, tokenized=True, **options)

    @classmethod
    def _cached(
        cls, source: Path, settings: dict, build, cache_dir, label_dtype
    ) -> TextClassificationDataset:
        if not source.is_file():
            raise DataError(f"text file {source} does not exist")
        folder = cache_folder("text", cache_dir)
        raw = source.read_bytes()
        stem = f"{source.stem}.{_key(raw, settings)}"
        array_path, meta_path = folder / f"{stem}.npy", folder / f"{stem}.json"
        if not (array_path.exists() and meta_path.exists()):
            ids, labels, words, bad = build(raw.decode("utf-8"))
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{stem}.npy.tmp"
            with open(tmp, "wb") as handle:
                np.save(handle, ids)
            os.replace(tmp, array_path)
            meta_path.write_text(
                json.dumps(
                    {
                        "labels": labels,
                        "words": words,
                        "skipped_lines": bad,
                        "settings": settings,
                        "source": str(source),
                    }
                )
            )
        meta = json.loads(meta_path.read_text())
        vocab = Vocabulary(meta["words"]) if meta["words"] else None
        return cls(
            np.load(array_path, mmap_mode="r"),
            np.asarray(meta["labels"], dtype=np.int64),
            vocab,
            label_dtype,
            meta["skipped_lines"],
        )
