"""The tutorial's IMDB text pipeline vs ember's, on a generated IMDB-shaped corpus, side by side.

Corpus: 25,000 reviews of ~230 words drawn from a Zipf vocabulary of 40,000 words, with capitals,
punctuation and ``<br />``, fixed seed (~30 MB). (a) the tutorial: word counts in a dict and pandas,
line-by-line tokenising into a token file, one file per sample, a Dataset reading one file per
``__getitem__``. (b) ember: ``TextClassificationDataset.from_tsv`` (vocabulary, encoding, one
memory-mapped int32 ``.npy``) and ``ember.data.loader`` (``DeviceLoader`` shown for reference).
Preprocessing and reading are each timed three times, interleaved (medians); reading uses batch
20 in one process. Prints the
preprocessing ratio (target: ember >= 5x faster and <= 1.5 s) and the ratio for reading one
shuffled epoch (target: >= 50x).
Usage: ``python benchmarks/text_pipeline.py [--reviews N]``.
"""

from __future__ import annotations

import argparse
import os
import re
import string
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from _common import median, timed, write_result
from ember.data import DeviceLoader, TextClassificationDataset, loader

MAX_WORDS, MAX_LEN, BATCH = 10000, 200, 20


def make_corpus(path: Path, reviews: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    letters = np.array(list(string.ascii_lowercase))
    vocab = ["".join(rng.choice(letters, size=rng.integers(2, 9))) for _ in range(40000)]
    ranks = np.minimum(rng.zipf(1.2, size=reviews * 260), len(vocab)) - 1
    lengths = rng.integers(100, 360, size=reviews)
    marks = np.array(["", "", "", "", ",", ".", "!", "?", "'s"])
    lines, at = [], 0
    for i in range(reviews):
        words = [vocab[r] for r in ranks[at : at + lengths[i]]]
        at += lengths[i]
        for j in rng.integers(0, len(words), size=len(words) // 8):
            words[j] = words[j].capitalize() + marks[rng.integers(0, len(marks))]
        text = " ".join(words)
        if i % 3 == 0:
            cut = len(text) // 2
            text = text[:cut] + "<br /><br />" + text[cut:]
        lines.append(f"{i % 2}\t{text}\n")
    path.write_text("".join(lines), encoding="utf-8")


# -- (a) the tutorial's code, as written there -------------------------------------------------------
def clean_text(text):
    lowercase = text.lower().replace("\n", " ")
    stripped_html = re.sub("<br />", " ", lowercase)
    cleaned_punctuation = re.sub("[%s]" % re.escape(string.punctuation), "", stripped_html)  # noqa: UP031
    return cleaned_punctuation


def tutorial_preprocess(train: Path, token: Path, samples: Path) -> None:
    word_count_dict = {}
    with open(train, encoding="utf-8") as f:
        for line in f:
            label, text = line.split("\t")
            for word in clean_text(text).split(" "):
                word_count_dict[word] = word_count_dict.get(word, 0) + 1
    df_word_dict = pd.DataFrame(pd.Series(word_count_dict, name="count"))
    df_word_dict = df_word_dict.sort_values(by="count", ascending=False)
    df_word_dict = df_word_dict[0 : MAX_WORDS - 2]
    df_word_dict["word_id"] = range(2, MAX_WORDS)
    word_id_dict = df_word_dict["word_id"].to_dict()

    def pad(data_list, pad_length):
        padded_list = data_list.copy()
        if len(data_list) > pad_length:
            padded_list = data_list[-pad_length:]
        if len(data_list) < pad_length:
            padded_list = [1] * (pad_length - len(data_list)) + data_list
        return padded_list

    with open(train, encoding="utf-8") as fin, open(token, "w", encoding="utf-8") as fout:
        for line in fin:
            label, text = line.split("\t")
            word_token_list = [word_id_dict.get(word, 0) for word in clean_text(text).split(" ")]
            fout.write(label + "\t" + " ".join(str(x) for x in pad(word_token_list, MAX_LEN)) + "\n")
    samples.mkdir()
    with open(token, encoding="utf-8") as fin:
        for i, line in enumerate(fin):
            with open(samples / f"{i}.txt", "w", encoding="utf-8") as fout:
                fout.write(line)


class ImdbDataset(Dataset):
    def __init__(self, samples_dir):
        self.samples_dir = str(samples_dir) + "/"
        self.samples_paths = os.listdir(samples_dir)

    def __len__(self):
        return len(self.samples_paths)

    def __getitem__(self, index):
        with open(self.samples_dir + self.samples_paths[index], encoding="utf-8") as f:
            label, tokens = f.readline().split("\t")
            label = torch.tensor([float(label)], dtype=torch.float)
            feature = torch.tensor([int(x) for x in tokens.split(" ")], dtype=torch.long)
            return feature, label


def read_epoch(batches) -> int:
    return sum(len(labels) for _, labels in batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reviews", type=int, default=25000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        train = root / "train.tsv"
        make_corpus(train, args.reviews)
        megabytes = train.stat().st_size / 2**20
        preps: dict[str, list[float]] = {"tutorial": [], "ember": []}
        for r in range(3):  # interleaved, median of three; fresh output folders each time
            preps["tutorial"].append(
                timed(lambda r=r: tutorial_preprocess(train, root / f"token{r}.tsv", root / f"samples{r}"))
            )
            preps["ember"].append(
                timed(
                    lambda r=r: TextClassificationDataset.from_tsv(
                        train, max_words=MAX_WORDS, max_len=MAX_LEN, cache_dir=root / f"cache{r}"
                    )
                )
            )
        tutorial_prep, ember_prep = median(preps["tutorial"]), median(preps["ember"])
        dataset = TextClassificationDataset.from_tsv(train, max_len=MAX_LEN, cache_dir=root / "cache0")
        tutorial_ds = ImdbDataset(root / "samples0")
        torch.manual_seed(0)
        reads: dict[str, list[float]] = {"tutorial": [], "ember": [], "device": []}
        view = dataset.gather_view()
        for _ in range(3):  # interleaved, median of three
            reads["tutorial"].append(
                timed(lambda: read_epoch(DataLoader(tutorial_ds, batch_size=BATCH, shuffle=True)))
            )
            reads["ember"].append(
                timed(lambda: read_epoch(loader(dataset, batch_size=BATCH, shuffle=True, seed=0)))
            )
            reads["device"].append(
                timed(lambda: read_epoch(DeviceLoader(*view.tensors, batch_size=BATCH, shuffle=True, seed=0)))
            )
        tutorial_read, ember_read, device_read = (median(reads[k]) for k in ("tutorial", "ember", "device"))
    prep_ratio, read_ratio = tutorial_prep / ember_prep, tutorial_read / ember_read
    print(f"corpus: {args.reviews} reviews, {megabytes:.1f} MB")
    print(
        f"preprocess  tutorial {tutorial_prep:7.2f} s   ember {ember_prep:6.2f} s   {prep_ratio:6.1f}x "
        "(target >= 5x, ember <= 1.5 s)"
    )
    print(
        f"read epoch  tutorial {tutorial_read:7.2f} s   ember {ember_read:6.3f} s   {read_ratio:6.1f}x "
        "(target >= 50x)"
        f"   [DeviceLoader {device_read:.3f} s, {tutorial_read / device_read:.0f}x]"
    )
    write_result(
        "text_pipeline",
        {
            "reviews": args.reviews,
            "megabytes": megabytes,
            "tutorial_preprocess_s": tutorial_prep,
            "ember_preprocess_s": ember_prep,
            "preprocess_speedup": prep_ratio,
            "tutorial_epoch_s": tutorial_read,
            "ember_epoch_s": ember_read,
            "epoch_speedup": read_ratio,
            "device_loader_epoch_s": device_read,
        },
    )


if __name__ == "__main__":
    main()
