"""scan_images: the image files of a ``root/<class>/...`` folder and what is wrong with each, checked
in parallel and cached, so building an image folder costs about a directory listing the second time.

``verify="header"`` (the default of ``image_folder``) opens each file and reads its header in
threads: an empty file, a file that is not an image, or one whose extension names another format (PNG
data in a ``.jpg``) is found here; a file whose pixel data is damaged further in (a truncated JPEG)
is found when it is read. ``"full"`` decodes every image, in processes, with a progress bar;
``"none"`` lists files only. The result of a header or full check is cached per file (size and
modification time) in ember's cache folder, keyed by the folder's absolute path and the mode: an
unchanged file is not opened again; a changed or added one is checked, a removed one drops out.
Knows PIL and the standard library.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
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
_CACHE_VERSION = 1


def header_problem(path: str) -> str | None:
    """What is wrong with ``path`` as seen from its header (None: nothing): its signature is read
    directly (``read_header``); PIL is asked only about a signature that is not a common one."""
    try:
        with open(path, "rb") as file:
            header = read_header(file)
            empty = file.tell() == 0
    except OSError as exc:
        return f"cannot open ({exc})"
    if empty:
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
    listed = {name: _files(prefix + name, extensions) for name in classes}
    if verify == "none":
        return [(path, name) for name, files in listed.items() for path, _, _ in files], []
    cache_file = cache_folder("scans", cache_dir) / f"{_key(prefix, verify)}.json"
    known = _read_cache(cache_file, prefix, verify)
    skip = len(prefix)
    everything = [file for files in listed.values() for file in files]
    fresh = [
        (path, size, mtime)
        for path, size, mtime in everything
        if not _same(known.get(path[skip:]), size, mtime)
    ]
    problems = _check([path for path, _, _ in fresh], verify)
    for (path, size, mtime), problem in zip(fresh, problems, strict=True):
        if problem is None or not problem.startswith("cannot open"):  # an open may work next time
            known[path[skip:]] = [size, mtime, problem]
        else:
            known[path[skip:]] = [-2, -2, problem]  # never matches a stat: checked again next build
    total = sum(len(files) for files in listed.values())
    if fresh or len(known) != total:  # something changed: rewrite the cache without removed files
        kept = {path[skip:] for files in listed.values() for path, _, _ in files}
        _write_cache(cache_file, prefix, verify, {rel: known[rel] for rel in kept})
    failed = _failed_when_read(failures_file(root, cache_dir))
    good, bad = [], []
    for name, files in listed.items():
        for path, size, mtime in files:
            problem = known[path[skip:]][2]
            if problem is None and failed.get(path, (None,))[1:] == (size, mtime):
                problem = f"failed when read: {failed[path][0]}"
            (good if problem is None else bad).append((path, name if problem is None else problem))
    return good, bad


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


def _same(entry: list | None, size: int, mtime: int) -> bool:
    return entry is not None and entry[0] == size and entry[1] == mtime


def _files(folder: str, extensions: tuple[str, ...]) -> list[tuple[str, int, int]]:
    """``(path, size, mtime_ns)`` of the files under ``folder`` with one of ``extensions``, in the
    order of ``sorted(os.walk(folder))`` (by folder, then by name): one stat per file."""
    listed: list[tuple[str, int, int]] = []
    append, stat, sep = listed.append, os.stat, os.sep
    for directory, _, names in sorted(os.walk(folder, followlinks=True)):
        names.sort()
        for name in names:
            if name.lower().endswith(extensions):
                path = directory + sep + name
                try:
                    info = stat(path)
                except OSError:  # a dangling link, a file removed meanwhile: the check names it
                    append((path, -1, -1))
                    continue
                append((path, info.st_size, info.st_mtime_ns))
    return listed


def _check(paths: list[str], verify: str) -> Iterable[str | None]:
    """Each file's problem: header reads in threads (I/O bound), decodes in processes."""
    if not paths:
        return []
    if verify == "header":  # chunks: one task per 256 files, not per file
        chunks = [paths[start : start + 256] for start in range(0, len(paths), 256)]
        with ThreadPoolExecutor(min(32, 4 * (os.cpu_count() or 1))) as pool:
            return [problem for chunk in pool.map(_headers, chunks) for problem in chunk]
    from tqdm import tqdm

    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        results = pool.map(decode_problem, paths, chunksize=64)
        return list(tqdm(results, total=len(paths), desc="verifying images", unit="image", disable=None))


def _headers(paths: list[str]) -> list[str | None]:
    return [header_problem(path) for path in paths]


def _key(root: str, verify: str) -> str:
    return hashlib.sha256(f"{root}\0{verify}".encode()).hexdigest()[:32]


def _read_cache(file: Path, root: str, verify: str) -> dict[str, list]:
    """``{path under root: [size, mtime_ns, problem]}`` from an earlier scan ({} when there is
    none or it is unreadable: the files are then checked again)."""
    try:
        saved = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    expected = {"version": _CACHE_VERSION, "root": root, "verify": verify}
    if any(saved.get(key) != value for key, value in expected.items()):
        return {}
    return saved.get("files", {})


def _write_cache(file: Path, root: str, verify: str, files: dict[str, list]) -> None:
    """Write the scan atomically; a cache that cannot be written only costs the next build time."""
    document = {"version": _CACHE_VERSION, "root": root, "verify": verify, "files": files}
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        temporary = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(document))
        os.replace(temporary, file)
    except OSError:
        pass
