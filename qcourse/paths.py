"""Where qcourse reads its shipped data and writes its cache.

Shipped, read-only: ``data/`` at the repository root (the embedded model lives in
``data/qcourse-tiny``). Written: one cache folder, ``$QCOURSE_CACHE`` if set, else
``$XDG_CACHE_HOME/qcourse``, else ``~/.cache/qcourse``. Nothing else is written anywhere.
"""
from __future__ import annotations

import os
import pathlib

PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
DATA_DIR = REPO_DIR / "data"
TINY_DIR = DATA_DIR / "qcourse-tiny"


def cache_dir() -> pathlib.Path:
    """The cache folder (created on first use)."""
    env = os.environ.get("QCOURSE_CACHE")
    if env:
        path = pathlib.Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        path = (pathlib.Path(xdg) if xdg else pathlib.Path.home() / ".cache") / "qcourse"
    path.mkdir(parents=True, exist_ok=True)
    return path
