"""Paths the library reads and writes: local files or remote URIs (``gs://bucket/run``, ``s3://``).

Every path a user gives goes through ``etils.epath`` (the path library Orbax uses): workdirs,
checkpoint folders, metrics, plots, snapshots, converted teachers, the checkpoints ``jaxdistill
convert`` and ``phema`` read, data files and FID statistics; so a TPU-pod run can read from and
write to a bucket. Local paths behave as before: they are made absolute, and files are replaced
atomically (written beside the target, then renamed over it). epath serves ``gs://`` through
``tf.io.gfile`` when TensorFlow is installed, else through fsspec's ``gcsfs`` (the ``gcs`` extra).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from typing import IO, Callable, Optional, Union

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


def same_path(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file (local paths compared made absolute)."""
    return as_path(a) == as_path(b)


def files_in(folder: PathLike, matches: Callable[[str], bool]) -> list[str]:
    """The files directly in ``folder`` whose names ``matches``, sorted (URIs stay URIs)."""
    return sorted(os.fspath(p) for p in as_path(folder).iterdir() if matches(p.name) and p.is_file())


def glob_files(pattern: PathLike) -> list[str]:
    """The files matching ``pattern`` (``*``, ``?``, ``[...]`` in any part but the scheme), sorted.
    The part before the first wildcard is the folder searched, so ``gs://b/d/*.npz`` lists ``gs://b/d``."""
    parts = os.fspath(pattern).split("/")
    first = next(i for i, part in enumerate(parts) if any(ch in part for ch in "*?["))
    folder = "/".join(parts[:first]) or ("/" if parts[0] == "" else ".")
    return sorted(os.fspath(p) for p in as_path(folder).glob("/".join(parts[first:])) if p.is_file())


def cache_root() -> str:
    """The local cache folder: ``$JAXDISTILL_CACHE``, else ``~/.cache/jaxdistill``."""
    return os.environ.get("JAXDISTILL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "jaxdistill")


def local_copy(path: PathLike, cache: Optional[PathLike] = None) -> str:
    """``path`` itself if local; a remote file copied whole, once, to ``<cache>/remote/`` (default
    :func:`cache_root`) and that copy's path, for readers that need a local file (``np.memmap``).
    The copy's name holds a digest of the URI, size and modification time, so a file rewritten
    remotely is fetched again; it is written atomically, so concurrent processes never read half a copy.
    A FileNotFoundError names the URI if the remote file is missing."""
    if not is_remote(path):
        return os.fspath(path)
    source = as_path(path)
    if not source.is_file():
        raise FileNotFoundError(f"no file {os.fspath(path)!r}")
    stat = source.stat()
    key = hashlib.sha256(f"{os.fspath(path)}\0{stat.length}\0{stat.mtime}".encode()).hexdigest()[:16]
    target = os.path.join(os.fspath(cache or cache_root()), "remote", f"{key}-{source.name}")
    if not (os.path.isfile(target) and os.path.getsize(target) == stat.length):

        def copy(f: IO[bytes]) -> None:
            with source.open("rb") as remote:
                shutil.copyfileobj(remote, f, 1 << 24)

        write_atomic(target, copy)
    return target
