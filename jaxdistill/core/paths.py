"""Paths the library reads and writes: local files or remote URIs (``gs://bucket/run``, ``s3://``).

Every workdir, checkpoint folder, metrics file, plot, snapshot, converted teacher and FID
statistics file goes through ``etils.epath`` (the path library Orbax uses), so a TPU-pod run can
write straight to a bucket. Local paths behave as before: they are made absolute, and files are
replaced atomically (written beside the target, then renamed over it).
"""
from __future__ import annotations

import os
import uuid
from typing import IO, Callable, Union

from etils import epath

PathLike = Union[str, os.PathLike]


def as_path(path: PathLike) -> epath.Path:
    """``path`` as an ``epath.Path``: a URI (``scheme://...``) as given, a local path made absolute."""
    text = os.fspath(path)
    return epath.Path(text if "://" in text else os.path.abspath(text))


def is_remote(path: PathLike) -> bool:
    """Whether ``path`` names a URI (``gs://``, ``s3://``, ...) rather than a local file."""
    return "://" in os.fspath(path)


def write_atomic(path: PathLike, write: Callable[[IO[bytes]], None]) -> epath.Path:
    """Create ``path``'s folder, call ``write`` on a binary file beside ``path`` and rename it over
    ``path``: a failure leaves ``path`` as it was and no temporary file behind."""
    target = as_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with tmp.open("wb") as f:
            write(f)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def write_text_atomic(path: PathLike, text: str) -> epath.Path:
    """``write_atomic`` of UTF-8 ``text``."""
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")))
