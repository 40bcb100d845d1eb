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
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ember.data.cachedir import cache_folder
from ember.errors import DataError

__all__ = ["VERIFY_MODES", "ScannedFile", "decode_problem", "header_problem", "scan_images"]

VERIFY_MODES = ("header", "full", "none")
_CACHE_VERSION = 1


@dataclass(frozen=True)
class ScannedFile:
    """One image file: its path, class folder, and ``problem`` (None when it passed the check)."""

    path: str
    class_name: str
    problem: str | None = None


def header_problem(path: str) -> str | None:
    """What is wrong with ``path`` as seen from its header (None: nothing)."""
    from PIL import Image

    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as image:
            found = image.format
    except Exception as exc:  # PIL raises assorted errors on data that is not an image
        return f"not an image ({type(exc).__name__}: {exc})"
    suffix = Path(path).suffix.lower()
    expected = Image.registered_extensions().get(suffix)
    if expected is not None and found is not None and expected != found:
        return f"{found} data in a {suffix} file (the extension names {expected})"
    return None


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
    is_image: Callable[[str], bool],
    verify: str = "header",
    cache_dir: str | Path | None = None,
) -> list[ScannedFile]:
    """The files under ``root/<class>`` for each of ``classes`` that ``is_image`` accepts (sorted
    as torchvision's ImageFolder sorts them), each checked as ``verify`` says (see the module)."""
    if verify not in VERIFY_MODES:
        raise DataError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
    root = Path(os.path.abspath(root))
    listed = [(path, name) for name in classes for path in _files(root / name, is_image)]
    if verify == "none":
        return [ScannedFile(path, name) for path, name in listed]
    cache_file = cache_folder("scans", cache_dir) / f"{_key(root, verify)}.json"
    known = _read_cache(cache_file, root, verify)
    stats = {path: _stat(path) for path, _ in listed}
    fresh = [path for path, _ in listed if known.get(path, [None])[:2] != list(stats[path])]
    problems = {path: entry[2] for path, entry in known.items()}
    problems.update(zip(fresh, _check(fresh, verify), strict=True))
    _write_cache(cache_file, root, verify, {path: [*stats[path], problems[path]] for path, _ in listed})
    return [ScannedFile(path, name, problems[path]) for path, name in listed]


def _files(folder: Path, is_image: Callable[[str], bool]) -> list[str]:
    found = []
    for directory, _, names in sorted(os.walk(folder, followlinks=True)):
        found.extend(os.path.join(directory, name) for name in sorted(names))
    return [path for path in found if is_image(path)]


def _stat(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def _check(paths: list[str], verify: str) -> Iterable[str | None]:
    """Each file's problem: header reads in threads (I/O bound), decodes in processes."""
    if not paths:
        return []
    if verify == "header":
        with ThreadPoolExecutor(min(32, 4 * (os.cpu_count() or 1))) as pool:
            return list(pool.map(header_problem, paths))
    from tqdm import tqdm

    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        results = pool.map(decode_problem, paths, chunksize=64)
        return list(tqdm(results, total=len(paths), desc="verifying images", unit="image", disable=None))


def _key(root: Path, verify: str) -> str:
    return hashlib.sha256(f"{root}\0{verify}".encode()).hexdigest()[:32]


def _read_cache(file: Path, root: Path, verify: str) -> dict[str, list]:
    """``{path: [size, mtime_ns, problem]}`` from an earlier scan ({} when there is none or it is
    unreadable: the files are then checked again)."""
    try:
        saved = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    expected = {"version": _CACHE_VERSION, "root": str(root), "verify": verify}
    if any(saved.get(key) != value for key, value in expected.items()):
        return {}
    return {os.path.join(root, rel): entry for rel, entry in saved.get("files", {}).items()}


def _write_cache(file: Path, root: Path, verify: str, entries: dict[str, list]) -> None:
    """Write the scan atomically; a cache that cannot be written only costs the next build time."""
    files = {os.path.relpath(path, root): entry for path, entry in entries.items()}
    document = {"version": _CACHE_VERSION, "root": str(root), "verify": verify, "files": files}
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        temporary = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(document))
        os.replace(temporary, file)
    except OSError:
        pass
