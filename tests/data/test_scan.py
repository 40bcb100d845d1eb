"""scan_images' header check: the same verdicts whether the headers are read in one thread (files
in the page cache) or in threads (reading waits on the storage)."""

import json

import pytest
from PIL import Image

from ember.data import scan

EXTENSIONS = (".png", ".jpg")


def _folder(root, files):
    for index in range(files):
        folder = root / ("a" if index % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (5 + index % 7, 4)).save(folder / f"{index:04d}.png")
    (root / "a" / "0001.png").write_bytes(b"")
    (root / "b" / "0002.png").write_bytes(b"plain text")
    (root / "b" / "0004.png").rename(root / "b" / "0004.jpg")


@pytest.mark.parametrize("blocking_seconds", [1.0, 0.0], ids=["one thread", "threads"])
def test_headers_read_in_one_thread_or_in_threads_give_the_same_verdicts(
    tmp_path, monkeypatch, blocking_seconds
):
    monkeypatch.setattr(scan, "_BLOCKING_SECONDS", blocking_seconds)
    _folder(tmp_path / "imgs", 600)  # three tasks of 256 files: the first here, the others in threads
    good, bad = scan.scan_images(tmp_path / "imgs", ["a", "b"], EXTENSIONS, cache_dir=tmp_path / "cache")
    assert len(good) == 597
    assert [(path.rsplit("/", 2)[1:], problem.split(" (")[0]) for path, problem in bad] == [
        (["a", "0001.png"], "empty file"),
        (["b", "0002.png"], "not an image"),
        (["b", "0004.jpg"], "PNG data in a .jpg file"),
    ]
    assert [path for path, _ in good][:2] == [
        str(tmp_path / "imgs" / "a" / name) for name in ("0003.png", "0005.png")
    ]


def test_nested_folders_are_listed_in_torchvisions_order(tmp_path):
    from torchvision.datasets.folder import make_dataset

    root = tmp_path / "imgs"
    for relative in ("a/x/1.png", "a/x-z/2.png", "a/x/y/3.png", "a/0.png", "a/x.png/4.png", "b/5.png"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(root / relative)
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "b" / "gone.png").symlink_to(tmp_path / "missing.png")  # listed; the check names it
    listed, bad = scan.scan_images(root, ["a", "b"], EXTENSIONS, verify="none")
    expected = make_dataset(str(root), {"a": 0, "b": 1}, extensions=EXTENSIONS)
    assert bad == []
    assert [path for path, _ in listed] == [path for path, _ in expected]
    assert [path.split("imgs/")[1] for path, _ in listed] == [  # folders sorted as strings: - . /
        "a/0.png",
        "a/x/1.png",
        "a/x-z/2.png",
        "a/x.png/4.png",
        "a/x/y/3.png",
        "b/5.png",
        "b/gone.png",
    ]


@pytest.mark.parametrize(
    "damage",
    [
        lambda doc: "{not json",
        lambda doc: json.dumps({**doc, "sizes": doc["sizes"][:-1]}),  # columns of unequal length
        lambda doc: json.dumps({**doc, "problems": []}),
        lambda doc: json.dumps({**doc, "version": 1}),  # an older format
    ],
    ids=["not json", "unequal columns", "problems not a mapping", "older version"],
)
def test_a_damaged_or_older_cache_is_ignored_and_rewritten(tmp_path, monkeypatch, damage):
    _folder(tmp_path / "imgs", 20)
    cache = tmp_path / "cache"
    first = scan.scan_images(tmp_path / "imgs", ["a", "b"], EXTENSIONS, cache_dir=cache)
    (cache_file,) = cache.glob("*.json")
    cache_file.write_text(damage(json.loads(cache_file.read_text())))
    opened = _counting_opens(monkeypatch)
    assert scan.scan_images(tmp_path / "imgs", ["a", "b"], EXTENSIONS, cache_dir=cache) == first
    assert len(opened) == 20  # every file checked again
    opened.clear()
    assert scan.scan_images(tmp_path / "imgs", ["a", "b"], EXTENSIONS, cache_dir=cache) == first
    assert opened == []  # and the cache written anew


def _counting_opens(monkeypatch, answer=None):
    """Record the paths whose header is read; ``answer(path)`` may replace the verdict."""
    opened = []
    real = scan.header_problem

    def header_problem(path):
        opened.append(path)
        replaced = answer(path) if answer is not None else None
        return replaced if replaced is not None else real(path)

    monkeypatch.setattr(scan, "header_problem", header_problem)
    return opened


def test_a_cached_verdict_stands_when_another_file_changes(tmp_path, monkeypatch):
    root = tmp_path / "imgs"
    _folder(root, 20)
    cache = tmp_path / "cache"
    _, bad = scan.scan_images(root, ["a", "b"], EXTENSIONS, cache_dir=cache)
    opened = _counting_opens(monkeypatch)
    Image.new("RGB", (3, 3)).save(root / "a" / "new.png")  # the folder changed: a rescan
    good, again = scan.scan_images(root, ["a", "b"], EXTENSIONS, cache_dir=cache)
    assert opened == [str(root / "a" / "new.png")]  # the bad files were not opened again
    assert again == bad and len(bad) == 3 and len(good) == 18


def test_a_file_that_could_not_be_opened_or_read_is_checked_again(tmp_path, monkeypatch):
    root = tmp_path / "imgs"
    _folder(root, 20)
    flaky = {
        str(root / "a" / "0003.png"): "cannot open (denied)",
        str(root / "b" / "0006.png"): "cannot read (EIO)",
    }
    opened = _counting_opens(monkeypatch, answer=flaky.get)
    _, bad = scan.scan_images(root, ["a", "b"], EXTENSIONS, cache_dir=tmp_path / "cache")
    assert sorted(path for path, problem in bad if problem in flaky.values()) == sorted(flaky)
    flaky.clear()  # the storage answers again; the files did not change
    opened.clear()
    good, bad = scan.scan_images(root, ["a", "b"], EXTENSIONS, cache_dir=tmp_path / "cache")
    assert sorted(opened) == sorted([str(root / "a" / "0003.png"), str(root / "b" / "0006.png")])
    assert len(good) == 17 and len(bad) == 3
