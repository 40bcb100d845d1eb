"""scan_images: the image files of a ``root/<class>/...`` folder and what is wrong with each, checked
and cached, so building an image folder costs about a directory listing the second time.

``verify="header"`` (the default of ``image_folder``) opens each file and reads its header (in
threads when reading waits on the storage): an empty file, a file that is not an image, or one
whose extension names another format (PNG data in a ``.jpg``) is found here; a file whose pixel
data is damaged further in (a truncated JPEG) is found when it is read. ``"full"`` decodes every
image, in processes, with a progress bar; ``"none"`` lists files only. The result of a header or
full check is cached per file (size and modification time) in ember's cache folder, keyed by the
folder's absolute path and the mode, as columns: an unchanged folder is one comparison of lists,
an unchanged file is not opened again; a changed or added one is checked, a removed one drops out.
Knows PIL and the standard library.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from ember.data.cachedir import cache_folder
from ember.data.image_header import read_header
from ember.errors import DataError

__all__ = [
    "VERIFY_MODES",
    "decode_problem",
    "failures_file",
    "header_problem",
    "read_failures",
    "record_failure",
    "scan_images",
]

VERIFY_MODES = ("header", "full", "none")
_CHUNK = 256  # files per header-reading task
_BLOCKING_SECONDS = 25e-6  # a header read slower than this per file waits on the storage
_CACHE_VERSION = 2  # 2: the listing as columns


def header_problem(path: str) -> str | None:
    """What is wrong with ``path`` as seen from its header (None: nothing): its signature is read
    directly (``read_header``, through the file descriptor: a buffered file object costs more
    than the read); PIL is asked only about a signature that is not a common one."""
    try:
        file = _Descriptor(os.open(path, os.O_RDONLY))
    except OSError as exc:
        return f"cannot open ({exc})"
    try:
        header = read_header(file)
    except OSError as exc:
        return f"cannot read ({exc})"
    finally:
        os.close(file.fd)
    if file.position == 0:
        return "empty file (0 bytes)"
    if header is not None and header.truncated:
        return f"truncated {header.format} (the file ends inside its header)"
    found = header.format if header is not None else _identify(path)
    if found.startswith("not an image"):
        return found
    suffix = os.path.splitext(path)[1].lower()
    expected = _EXTENSION_FORMATS.get(suffix)
    if expected is not None and expected != found:
        return f"{found} data in a {suffix} file (the extension names {expected})"
    return None


class _Descriptor:
    """``read`` on an open file descriptor, counting the bytes read."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.position = 0

    def read(self, size: int) -> bytes:
        data = os.read(self.fd, size)
        self.position += len(data)
        return data


_EXTENSION_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".ppm": "PPM", ".pgm": "PPM"}
_EXTENSION_FORMATS |= {".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP", ".gif": "GIF"}


def _identify(path: str) -> str:
    """PIL's name for the format of ``path``, or ``not an image (...)``."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return str(image.format)
    except Exception as exc:  # PIL raises assorted errors on data that is not an image
        return f"not an image ({type(exc).__name__}: {exc})"


def decode_problem(path: str) -> str | None:
    """What is wrong with ``path`` once fully decoded (None: it decodes)."""
    from PIL import Image

    problem = header_problem(path)
    if problem is not None:
        return problem
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as exc:  # truncated or corrupt pixel data
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None


def scan_images(
    root: str | Path,
    classes: list[str],
    extensions: tuple[str, ...],
    verify: str = "header",
    cache_dir: str | Path | None = None,
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(good, bad)``: ``(path, class name)`` of the files under ``root/<class>`` for each of
    ``classes`` whose names end with one of ``extensions`` (in the order of torchvision's sorted
    walk) that passed the ``verify`` check, and ``(path, problem)`` of those that did not."""
    if verify not in VERIFY_MODES:
        raise DataError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
    prefix = os.path.abspath(root) + os.sep
    listing = _Files()
    counts = {name: listing.add(prefix, name, extensions) for name in classes}
    if verify == "none":
        return _sorted_out(prefix, counts, listing, {})
    cache_file = cache_folder("scans", cache_dir) / f"{_key(prefix, verify)}.json"
    cached = _read_cache(cache_file, prefix, verify)
    if cached.columns() == listing.columns():  # nothing changed: one comparison of three lists
        listing.problems = cached.problems
    else:
        _rescan(prefix, listing, cached, verify)
        _write_cache(cache_file, prefix, verify, listing)
    return _sorted_out(prefix, counts, listing, _failed_when_read(failures_file(root, cache_dir)))


class _Files:
    """A listing as three columns (paths under the root, sizes, modification times) and the
    problems of the files a check rejected: what the scan cache holds."""

    def __init__(self, columns: tuple[list, list, list] = ([], [], []), problems: dict | None = None) -> None:
        self.paths: list[str] = list(columns[0])
        self.sizes: list[int] = list(columns[1])
        self.mtimes: list[int] = list(columns[2])
        self.problems: dict[str, str] = problems or {}

    def columns(self) -> tuple[list[str], list[int], list[int]]:
        return self.paths, self.sizes, self.mtimes

    def add(self, prefix: str, folder: str, extensions: tuple[str, ...]) -> int:
        """Append the files under ``prefix + folder`` with one of ``extensions``, in the order of
        ``sorted(os.walk(..., followlinks=True))`` (by folder, then by name), one stat each;
        returns their count. A file that cannot be stat'ed (a dangling link, removed meanwhile)
        gets size and time -1: the check then names it."""
        before = len(self.paths)
        folders = [prefix + folder]  # a heap: a subfolder's path sorts after its parent's
        while folders:
            directory = heapq.heappop(folders)
            images: list[str] = []
            try:
                with os.scandir(directory) as listed:
                    for entry in listed:  # the entry's type is known without a stat (links aside)
                        if entry.is_dir():
                            heapq.heappush(folders, entry.path)
                        elif entry.name.lower().endswith(extensions):
                            images.append(entry.name)
            except OSError:  # as os.walk: an unreadable folder is left out
                continue
            images.sort()
            self._add_files(directory, images, len(prefix))
        return len(self.paths) - before

    def _add_files(self, directory: str, names: list[str], skip: int) -> None:
        """Append the files ``names`` (sorted) of ``directory`` with their sizes and times."""
        add_path, add_size, add_mtime = self.paths.append, self.sizes.append, self.mtimes.append
        stat, sep, relative = os.stat, os.sep, directory[skip:] + os.sep
        for name in names:
            try:
                info = stat(directory + sep + name)
            except OSError:
                size = mtime = -1
            else:
                size, mtime = info.st_size, info.st_mtime_ns
            add_path(relative + name)
            add_size(size)
            add_mtime(mtime)


def _rescan(prefix: str, listing: _Files, cached: _Files, verify: str) -> None:
    """Set ``listing.problems``: the cached verdict of a file whose size and modification time are
    unchanged, a new check of every other one. A file that could not be opened is checked again
    next time, as is one whose read failed (an I/O error may pass): its time becomes -2, which no
    stat gives."""
    known = dict(zip(cached.paths, zip(cached.sizes, cached.mtimes, strict=True), strict=True))
    columns = zip(*listing.columns(), strict=True)
    fresh = [i for i, (path, size, mtime) in enumerate(columns) if known.get(path) != (size, mtime)]
    checked = _check([prefix + listing.paths[i] for i in fresh], verify)
    found = dict(zip((listing.paths[i] for i in fresh), checked, strict=True))
    for i, problem in zip(fresh, checked, strict=True):
        if problem is not None and problem.startswith(("cannot open", "cannot read")):
            listing.mtimes[i] = -2
    problems = {}
    for path in listing.paths:
        problem = found[path] if path in found else cached.problems.get(path)
        if problem is not None:
            problems[path] = problem
    listing.problems = problems


def _sorted_out(
    prefix: str, counts: dict[str, int], listing: _Files, failed: dict[str, tuple[str, int, int]]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(good, bad)`` in listing order: ``(path, class name)`` of the files without a problem and
    ``(path, problem)`` of the others, among them those that passed the check but failed when read
    since (and are unchanged)."""
    good: list[tuple[str, str]] = []
    bad: list[tuple[str, str]] = []
    start = 0
    for name, count in counts.items():
        end = start + count
        if not listing.problems and not failed:  # the common case: every file is good
            good += [(prefix + rel, name) for rel in listing.paths[start:end]]
            start = end
            continue
        for i in range(start, end):
            path = prefix + listing.paths[i]
            problem = _problem(listing, i, failed.get(path))
            (good if problem is None else bad).append((path, name if problem is None else problem))
        start = end
    return good, bad


def _problem(listing: _Files, i: int, failure: tuple[str, int, int] | None) -> str | None:
    """The problem of file ``i``: its check's, else the recorded read ``failure`` while the file
    is unchanged since (same size and modification time)."""
    problem = listing.problems.get(listing.paths[i])
    if problem is None and failure is not None and failure[1:] == (listing.sizes[i], listing.mtimes[i]):
        return f"failed when read: {failure[0]}"
    return problem


def failures_file(root: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where the images of ``root`` that failed when read are recorded (beside the scan cache)."""
    return cache_folder("scans", cache_dir) / f"{_key(os.path.abspath(root) + os.sep, 'failures')}.jsonl"


def record_failure(file: Path | None, path: str, reason: str) -> None:
    """Append ``path`` (with its size and modification time) to the failures ``file``: one short
    line per write, so processes appending at once do not interleave. Never raises."""
    if file is None:
        return
    try:
        info = os.stat(path)
        line = json.dumps({"path": path, "reason": reason, "size": info.st_size, "mtime": info.st_mtime_ns})
        file.parent.mkdir(parents=True, exist_ok=True)
        with open(file, "a") as handle:
            handle.write(line + "\n")
    except OSError:
        pass


def read_failures(file: Path | None) -> list[tuple[str, str]]:
    """``(path, reason)`` of the recorded failures, each path once (its latest record)."""
    return [(path, reason) for path, (reason, _, _) in _failed_when_read(file).items()]


def _failed_when_read(file: Path | None) -> dict[str, tuple[str, int, int]]:
    found: dict[str, tuple[str, int, int]] = {}
    try:
        lines = file.read_text().splitlines() if file is not None else []
    except OSError:
        return found
    for line in lines:
        try:
            entry = json.loads(line)
            found[entry["path"]] = (entry["reason"], entry["size"], entry["mtime"])  # the latest wins
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a crash
    return found


def _check(paths: list[str], verify: str) -> list[str | None]:
    """Each file's problem: headers read here, or in threads when reading blocks; decodes in processes."""
    if not paths:
        return []
    if verify == "header":
        return _check_headers(paths)
    from tqdm import tqdm

    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        results = pool.map(decode_problem, paths, chunksize=64)
        return list(tqdm(results, total=len(paths), desc="verifying images", unit="image", disable=None))


def _check_headers(paths: list[str]) -> list[str | None]:
    """Header problems of ``paths``. The first 256 files are read in this thread: when that took
    more than 25 us a file, reading waits on the storage (a cold disk, a network file system) and
    the rest goes to threads, one task per 256 files; else (files in the page cache) this thread is
    faster than threads contending for the interpreter."""
    start = time.perf_counter()
    problems = _headers(paths[:_CHUNK])
    if time.perf_counter() - start < _BLOCKING_SECONDS * len(problems):
        return problems + _headers(paths[_CHUNK:])
    chunks = [paths[first : first + _CHUNK] for first in range(_CHUNK, len(paths), _CHUNK)]
    with ThreadPoolExecutor(min(32, 4 * (os.cpu_count() or 1))) as pool:
        return problems + [problem for chunk in pool.map(_headers, chunks) for problem in chunk]


def _headers(paths: list[str]) -> list[str | None]:
    return [header_problem(path) for path in paths]


def _key(root: str, verify: str) -> str:
    return hashlib.sha256(f"{root}\0{verify}".encode()).hexdigest()[:32]


def _read_cache(file: Path, root: str, verify: str) -> _Files:
    """The listing and problems of an earlier scan (empty when there is none or it is unreadable
    or inconsistent: the files are then checked again)."""
    try:
        saved = json.loads(file.read_text())
        expected = {"version": _CACHE_VERSION, "root": root, "verify": verify}
        if any(saved.get(key) != value for key, value in expected.items()):
            return _Files()
        columns = (saved["paths"], saved["sizes"], saved["mtimes"])
        problems = saved["problems"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return _Files()
    lengths = {len(column) if isinstance(column, list) else -1 for column in columns}
    if len(lengths) != 1 or -1 in lengths or not isinstance(problems, dict):
        return _Files()
    return _Files(columns, problems)


def _write_cache(file: Path, root: str, verify: str, listing: _Files) -> None:
    """Write the scan atomically; a cache that cannot be written only costs the next build time."""
    document = {"version": _CACHE_VERSION, "root": root, "verify": verify}
    document |= {"paths": listing.paths, "sizes": listing.sizes, "mtimes": listing.mtimes}
    document["problems"] = listing.problems
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        temporary = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(document))
        os.replace(temporary, file)
    except OSError:
        pass
