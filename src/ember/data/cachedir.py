"""Where ember keeps caches it builds from user data: ``cache_dir`` when given, else the user's cache
folder (``$XDG_CACHE_HOME`` or ``~/.cache``) under ``ember/<kind>``; never beside the data, which is
often read-only or shared. Knows the standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_folder"]


def cache_folder(kind: str, cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``<user cache>/ember/<kind>``."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ember" / kind
