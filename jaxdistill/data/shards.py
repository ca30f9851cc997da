"""Sources read lazily, record by index, from shard files on disk: ``array_record`` files of
msgpack records and memory-mapped latent shards.

Both return ``{"x": float32 [*event_shape], "label": int32}`` records (``label = NULL_LABEL`` for
unlabeled data) and a vectorised ``get_batch(indices)``; only the requested records are read,
so under ``jaxdistill.data.pipeline`` each process touches only its own slice
``source[process_index::process_count]``.

* **array_record** (``ArrayRecordSource``): each record is a msgpack map (written by
  ``flax.serialization.msgpack_serialize``) of ``x`` (a ``uint8`` image ``[H, W, C]``, scaled to
  ``[-1, 1]`` by ``x / 127.5 - 1``, or a float array, taken as it is) and optionally ``label`` (an
  int); msgpack rather than ``.npz`` records, whose ``np.load`` costs far more per record (docs/data.md).
  ``write_array_record`` writes them; grain's ``ArrayRecordDataSource`` reads them.
* **latents** (``LatentSource``): ``.npz`` shards holding ``x`` float ``[N, *event_shape]`` and
  optionally ``label`` int ``[N]`` (written uncompressed, ``np.savez``), or ``.npy`` shards holding
  ``x`` alone (unlabeled). ``x`` is memory-mapped; each record is ``latent_scale * x +
  latent_shift`` with per-channel (last axis) or scalar scale and shift, e.g. SD-VAE's ``0.18215``.

Shards are the files of ``path`` (a file, a glob, or a directory), in sorted order; ``path`` may
be a URI (``gs://bucket/...``, :mod:`jaxdistill.core.paths`). Remote array_record shards are read
record by record by array_record's own GCS reader, so each process fetches only its slice; a remote
latent shard cannot be memory-mapped, so it is copied whole, once per machine, into the local cache
(:func:`~jaxdistill.core.paths.local_copy`) and memory-mapped there.
"""
from __future__ import annotations

import os
import zipfile
from typing import Any, Optional, Sequence

import numpy as np
from flax import serialization
from grain.sources import ArrayRecordDataSource

from jaxdistill.core.errors import ConfigError
from jaxdistill.core.paths import as_path, cache_root, files_in, glob_files, is_remote, local_copy
from jaxdistill.core.types import NULL_LABEL

Record = dict[str, np.ndarray]
ARRAY_RECORD_SUFFIX = ".array_record"
LATENT_SUFFIXES = (".npz", ".npy")


def uint8_to_unit(x: np.ndarray) -> np.ndarray:
    """``uint8 [0, 255] -> float32 [-1, 1]``: ``x / 127.5 - 1``."""
    return np.asarray(x, np.float32) / 127.5 - 1.0


def shard_files(path: str, what: str, matches) -> list[str]:
    """The sorted shard files of ``path``: the file itself, the files a glob matches, or the files
    of a directory whose names ``matches``; ``what`` names the expected files in errors."""
    if any(ch in path for ch in "*?["):
        files = glob_files(path)
    elif as_path(path).is_dir():
        files = files_in(path, matches)
    elif as_path(path).is_file():
        files = [path]
    else:
        raise ConfigError(f"data.path {path!r} does not exist (expected {what})")
    if not files:
        raise ConfigError(f"data.path {path!r}: no {what} found")
    return files


def _starts(lengths: Sequence[int]) -> np.ndarray:
    """``[0, n0, n0 + n1, ...]``: the first global index of each shard, and the total last."""
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def _locate(starts: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(shard, position in shard)`` of global record ``indices``; an IndexError outside ``[0, N)``."""
    indices = np.asarray(indices, np.int64).reshape(-1)
    if indices.size and (indices.min() < 0 or indices.max() >= starts[-1]):
        raise IndexError(f"record indices must lie in [0, {starts[-1]}); got {indices.min()}..{indices.max()}")
    shard = np.searchsorted(starts, indices, side="right") - 1
    return shard, indices - starts[shard]


# ---------------------------------------------------------------- array_record
def encode_record(x: np.ndarray, label: Optional[int] = None) -> bytes:
    """One array_record record: ``flax.serialization.msgpack_serialize({"x": x, "label": label})``
    (``label`` left out when ``None``)."""
    record = {"x": np.asarray(x)} if label is None else {"x": np.asarray(x), "label": int(label)}
    return serialization.msgpack_serialize(record)


def decode_record(data: bytes, where: str) -> Record:
    """The record ``{"x": float32, "label": int32}`` of ``encode_record``'s bytes; a ConfigError
    naming ``where`` (file and record) if they are not such a record."""
    expected = "msgpack of {'x': array, 'label': int (optional)} (write_array_record)"
    try:
        record = serialization.msgpack_restore(data)
    except Exception as err:  # msgpack and flax's array decoding raise several kinds on foreign bytes
        raise ConfigError(f"{where} is not in the record format ({type(err).__name__}); expected {expected}") from None
    if not isinstance(record, dict) or not isinstance(record.get("x", None), np.ndarray):
        found = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise ConfigError(f"{where} has no array 'x' (found {found}); expected {expected}")
    x, label = record["x"], record.get("label", NULL_LABEL)
    if not isinstance(label, (int, np.integer)):
        raise ConfigError(f"{where}: 'label' must be an integer, got {type(label).__name__}")
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise ConfigError(f"{where}: 'x' must be uint8 (an image) or float, got {x.dtype}")
    return {"x": uint8_to_unit(x) if x.dtype == np.uint8 else x.astype(np.float32), "label": np.int32(label)}


def write_array_record(path: str, xs: np.ndarray, labels: Optional[np.ndarray] = None, shard_size: int = 10_000) -> list[str]:
    """Write ``xs`` (``uint8`` images ``[N, H, W, C]`` or float arrays ``[N, ...]``) and optional
    integer ``labels [N]`` into the directory ``path`` as ``data-SSSSS-of-TTTTT.array_record``
    shards of at most ``shard_size`` records (``encode_record``; group size 1 for random access).
    Returns the files written, in order. ``path`` is local (array_record has no GCS writer): copy
    the shards to a bucket afterwards."""
    from array_record.python.array_record_module import ArrayRecordWriter  # grain's dependency except on Windows: imported when writing

    if is_remote(path):
        raise ValueError(f"write_array_record writes local files only, got the URI {path!r}: write the shards locally, then copy them to the bucket")

    xs = np.asarray(xs)
    if xs.ndim < 2 or len(xs) == 0:
        raise ValueError(f"xs must be a non-empty batch [N, ...] of records, got shape {xs.shape}")
    if labels is not None and np.shape(labels) != (len(xs),):
        raise ValueError(f"labels must have shape ({len(xs)},), got {np.shape(labels)}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    os.makedirs(path, exist_ok=True)
    count = -(-len(xs) // shard_size)
    files = []
    for s in range(count):
        name = os.path.join(path, f"data-{s:05d}-of-{count:05d}{ARRAY_RECORD_SUFFIX}")
        writer = ArrayRecordWriter(name, "group_size:1")
        for i in range(s * shard_size, min((s + 1) * shard_size, len(xs))):
            writer.write(encode_record(xs[i], None if labels is None else int(labels[i])))
        writer.close()
        files.append(name)
    return files


class ArrayRecordSource:
    """The ``encode_record`` records of the array_record shards of ``path`` (module docstring),
    read by grain's ``ArrayRecordDataSource``. The first record of every shard is checked at
    construction (every shard must hold records of one shape, all labeled or none); a record read
    later that breaks the format or the shape is a ConfigError naming its file and position."""

    def __init__(self, path: str):
        self.path = path
        self.files = shard_files(path, f"*{ARRAY_RECORD_SUFFIX} shards", lambda f: f.endswith(ARRAY_RECORD_SUFFIX))
        self.readers = []
        for f in self.files:
            try:
                self.readers.append(ArrayRecordDataSource(f))
            except Exception as err:  # the reader's own errors on a file that is no array_record
                raise ConfigError(f"{f} is not an array_record file ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
        self.starts = _starts([len(r) for r in self.readers])
        first = None
        for s, f in enumerate(self.files):
            if len(self.readers[s]) == 0:
                raise ConfigError(f"{f} holds no records")
            record = self._decode(s, [0])[0]
            kind = (record["x"].shape, bool(record["label"] != NULL_LABEL))
            if first is None:
                first = kind
            elif kind != first:
                raise ConfigError(
                    f"{f}: records of shape {kind[0]}{' with' if kind[1] else ' without'} labels; "
                    f"expected shape {first[0]}{' with' if first[1] else ' without'} labels like {self.files[0]}"
                )
        self.event_shape = first[0]

    def _decode(self, shard: int, positions: Sequence[int]) -> list[Record]:
        raw = self.readers[shard].__getitems__([int(p) for p in positions])
        return [decode_record(data, f"{self.files[shard]} record {p}") for data, p in zip(raw, positions)]

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, index: int) -> Record:
        (shard,), (position,) = _locate(self.starts, [index])
        return self._decode(int(shard), [int(position)])[0]

    def get_batch(self, indices: np.ndarray) -> Record:
        """Records ``indices`` stacked, read one batched call per shard."""
        shard, position = _locate(self.starts, indices)
        x = np.empty((len(shard), *self.event_shape), np.float32)
        labels = np.empty(len(shard), np.int32)
        for s in np.unique(shard):
            rows = np.flatnonzero(shard == s)
            for row, record in zip(rows, self._decode(int(s), position[rows])):
                if record["x"].shape != self.event_shape:
                    raise ConfigError(f"{self.files[s]} record {position[row]} has shape {record['x'].shape}; expected {self.event_shape}")
                x[row], labels[row] = record["x"], record["label"]
        return {"x": x, "label": labels}

    def config(self) -> dict[str, Any]:
        """The data config that rebuilds this source (``make_source``), recorded when it is passed as an object."""
        return {"name": "array_record", "path": self.path}

    def __repr__(self) -> str:
        return f"ArrayRecordSource(len={len(self)}, shards={len(self.files)}, event_shape={self.event_shape})"


# ---------------------------------------------------------------------- latents
def memmap_npz_member(path: str, local: str, zf: zipfile.ZipFile, member: str) -> np.ndarray:
    """Memory-map the array ``member`` of an uncompressed ``.npz`` (``path``, read at the local file
    ``local``): its ``.npy`` bytes lie unchanged in the zip file after the local file header (30
    bytes + name + extra field)."""
    info = zf.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:
        raise ConfigError(f"{path}: {member} is compressed (np.savez_compressed) and cannot be memory-mapped; write the shard with np.savez")
    with open(local, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
        name_len, extra_len = int.from_bytes(header[26:28], "little"), int.from_bytes(header[28:30], "little")
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ConfigError(f"{path}: {member} is in .npy format {version}; expected 1.0 or 2.0 (np.savez)")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if dtype.hasobject:
        raise ConfigError(f"{path}: {member} holds Python objects; expected a float array")
    return np.memmap(local, dtype=dtype, mode="r", shape=shape, order="F" if fortran else "C", offset=offset)


def open_latent_shard(path: str) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """``(x memory-mapped, labels or None)`` of one latent shard (``.npy``: ``x`` alone;
    ``.npz``: ``x`` and optionally ``label``); a remote shard is memory-mapped from its local copy."""
    try:
        local = local_copy(path)
    except OSError as err:
        raise ConfigError(f"{path}: could not copy the shard to the local cache {cache_root()!r} ({type(err).__name__}: {err})") from None
    try:
        if path.endswith(".npy"):
            return np.load(local, mmap_mode="r", allow_pickle=False), None
        with zipfile.ZipFile(local) as zf:
            names = zf.namelist()
            if "x.npy" not in names:
                raise ConfigError(f"{path} has no 'x' (arrays {sorted(n[:-4] for n in names)}); expected 'x' [N, ...] and optionally 'label' [N]")
            x = memmap_npz_member(path, local, zf, "x.npy")
        labels = None
        if "label.npy" in names:
            with np.load(local, allow_pickle=False) as npz:
                labels = npz["label"]
    except ConfigError:
        raise
    except Exception as err:  # np.load / zipfile on a file of another kind
        raise ConfigError(f"{path} is not a readable {os.path.splitext(path)[1]} shard ({type(err).__name__}); expected 'x' [N, ...] and optionally 'label' [N]") from None
    return x, labels


def _per_channel(value, name: str, channels: int, default: float) -> np.ndarray:
    """``value`` (None, a scalar or ``channels`` numbers) as float32 broadcasting over the last axis."""
    array = np.full((), default, np.float32) if value is None else np.asarray(value, np.float32)
    if array.ndim > 1 or array.size not in (1, channels):
        raise ConfigError(f"data.{name} must be a number or {channels} numbers (one per channel), got {value!r}")
    return array.reshape(()) if array.size == 1 else array


class LatentSource:
    """Records ``latent_scale * x[i] + latent_shift`` (float32) and ``label[i]`` of memory-mapped
    latent shards (module docstring): only the records asked for are read from disk. E.g. SD-VAE
    latents: ``latent_scale=0.18215``; EDM2's: ``latent_scale = 0.5 / raw_std`` and
    ``latent_shift = -raw_mean * latent_scale`` per channel (docs/data.md)."""

    def __init__(self, path: str, latent_scale=None, latent_shift=None):
        self.path = path
        self.files = shard_files(path, "*.npz / *.npy latent shards", lambda f: f.endswith(LATENT_SUFFIXES))
        shards = [open_latent_shard(f) for f in self.files]
        first_x, first_labels = shards[0]
        for f, (x, labels) in zip(self.files, shards):
            if not np.issubdtype(x.dtype, np.floating) or x.ndim < 2:
                raise ConfigError(f"{f}: 'x' is {x.dtype} {x.shape}; expected a float array [N, *event_shape]")
            if x.shape[1:] != first_x.shape[1:]:
                raise ConfigError(f"{f}: 'x' has records of shape {x.shape[1:]}; expected {first_x.shape[1:]} like {self.files[0]}")
            if (labels is None) != (first_labels is None):
                raise ConfigError(f"{f}: {'no' if labels is None else 'a'} 'label' array; expected {'none' if first_labels is None else 'one'} like {self.files[0]}")
            if labels is not None and (labels.shape != (len(x),) or not np.issubdtype(labels.dtype, np.integer)):
                raise ConfigError(f"{f}: 'label' is {labels.dtype} {labels.shape}; expected integers of shape ({len(x)},)")
        self.xs = [x for x, _ in shards]
        self.labels = [np.full(len(x), NULL_LABEL, np.int32) if labels is None else labels.astype(np.int32) for x, labels in shards]
        self.starts = _starts([len(x) for x in self.xs])
        self.event_shape = tuple(first_x.shape[1:])
        self.scale = _per_channel(latent_scale, "latent_scale", self.event_shape[-1], 1.0)
        self.shift = _per_channel(latent_shift, "latent_shift", self.event_shape[-1], 0.0)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, index: int) -> Record:
        batch = self.get_batch(np.array([index]))
        return {"x": batch["x"][0], "label": batch["label"][0]}

    def get_batch(self, indices: np.ndarray) -> Record:
        """Records ``indices`` stacked, gathered from each shard's memory map."""
        shard, position = _locate(self.starts, indices)
        x = np.empty((len(shard), *self.event_shape), np.float32)
        labels = np.empty(len(shard), np.int32)
        for s in np.unique(shard):
            rows = np.flatnonzero(shard == s)
            x[rows] = self.xs[s][position[rows]]
            labels[rows] = self.labels[s][position[rows]]
        return {"x": x * self.scale + self.shift, "label": labels}

    def config(self) -> dict[str, Any]:
        """The data config that rebuilds this source (``make_source``), recorded when it is passed as an object."""
        return {"name": "latents", "path": self.path, "latent_scale": self.scale.tolist(), "latent_shift": self.shift.tolist()}

    def __repr__(self) -> str:
        return f"LatentSource(len={len(self)}, shards={len(self.files)}, event_shape={self.event_shape})"
