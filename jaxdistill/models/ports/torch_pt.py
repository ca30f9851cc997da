"""Read a PyTorch ``.pt`` file (``torch.save``'s zip format or its legacy format) into numpy, without PyTorch.

The zip archive (torch >= 1.6) holds ``<name>/data.pkl``, a pickle whose tensors are calls of
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` on persistent storage
ids ``("storage", torch.<Dtype>Storage, key, location, numel)``, and each storage's raw bytes
as ``<name>/data/<key>`` (byte order in ``<name>/byteorder``, little-endian if absent).

The legacy format (torch < 1.6, or ``_use_new_zipfile_serialization=False``; pytorch-fid's
Inception weights are older than 1.6) is five pickles and the storages in one stream: the magic
number ``0x1950a86a20f9469cfc6c``, the protocol version 1001, ``sys_info`` (``little_endian``),
the object (persistent ids ``("storage", type, key, location, numel, view)``, where ``view`` is
``None`` or ``(view key, offset, size)`` into the storage), the sorted storage keys; then for each
key an int64 element count and the storage's bytes. Its object pickle is read twice: once to learn
each storage's dtype (tensors become ``None``), once with the storages read.

A pickle can run any callable it names, so the unpickler resolves only the names below: the
tensor and parameter rebuilders, the storage types, ``collections.OrderedDict`` and
``argparse.Namespace`` (DiT's training checkpoints store their arguments; it becomes a
``types.SimpleNamespace``). Any other global is refused with :class:`CheckpointFileError`.
bfloat16 storages are widened to float32 (numpy has no bfloat16).
"""
from __future__ import annotations

import collections
import io
import pickle
import types
import zipfile
import zlib
from typing import Any, Callable

import numpy as np

from jaxdistill.core.errors import CheckpointFileError
from jaxdistill.core.paths import as_path

STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16, "BFloat16Storage": np.uint16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class StorageType:
    """Stand-in for a ``torch.<Dtype>Storage`` class named in the pickle."""

    def __init__(self, name: str):
        self.name = name


def rebuild_tensor(storage: np.ndarray, offset: int, size: tuple, stride: tuple, *unused) -> np.ndarray:
    """``storage[offset + sum(i_k stride_k)]`` over the index grid ``size``, bounds-checked, copied."""
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or min(size + stride + (offset,), default=0) < 0:
        raise ValueError(f"invalid tensor layout size={size} stride={stride} offset={offset}")
    if 0 in size:
        return np.zeros(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise ValueError(f"tensor of size {size} at offset {offset} reads past its storage of {storage.size} elements")
    view = np.lib.stride_tricks.as_strided(storage[offset:], size, tuple(s * storage.itemsize for s in stride), writeable=False)
    return np.array(view)


def rebuild_parameter(data: np.ndarray, *unused) -> np.ndarray:
    return data


# The globals a pickle of tensors needs: the rebuilders and the storage types.
TENSOR_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
    **{("torch", name): StorageType(name) for name in STORAGE_DTYPES},
}
_ALLOWED = {**TENSOR_GLOBALS, ("argparse", "Namespace"): types.SimpleNamespace}


def storage_array(storage: StorageType, raw: bytes, numel: int, byteorder: str = "little", key: str = "") -> np.ndarray:
    """The ``numel`` elements of a storage of type ``storage`` (named ``key`` in errors) from its
    raw bytes, in native byte order; bfloat16 is widened to float32."""
    dtype = np.dtype(STORAGE_DTYPES[storage.name]).newbyteorder("<" if byteorder == "little" else ">")
    if len(raw) < numel * dtype.itemsize:
        raise ValueError(f"storage {key or '(unnamed)'} has {len(raw)} bytes, fewer than its {numel} elements need")
    array = np.frombuffer(raw, dtype, count=numel).astype(dtype.newbyteorder("="))
    return (array.astype(np.uint32) << 16).view(np.float32) if storage.name == "BFloat16Storage" else array


class _Unpickler(pickle.Unpickler):
    """Resolves only :data:`_ALLOWED` globals; a persistent storage id goes to ``storage(pid)``.
    With ``scan=True`` tensors are not rebuilt (the legacy format's first pass)."""

    def __init__(self, file, storage: Callable[[tuple], Any], scan: bool = False):
        super().__init__(file)
        self.storage, self.scan = storage, scan

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a checkpoint reader does not load (only tensors, storages and dicts)")
        if self.scan and name in ("_rebuild_tensor_v2", "_rebuild_parameter"):
            return lambda *args: None
        return _ALLOWED[(module, name)]

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage" and isinstance(pid[1], StorageType)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        return self.storage(pid)


def _read_zip(archive: zipfile.ZipFile, path: str) -> Any:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise CheckpointFileError(f"{path!r} is a zip archive but not a PyTorch .pt file (no <name>/data.pkl)")
    prefix = pickles[0].split("/")[0]
    names = set(archive.namelist())
    byteorder = archive.read(f"{prefix}/byteorder").decode().strip() if f"{prefix}/byteorder" in names else "little"

    def storage(pid: tuple) -> np.ndarray:
        return storage_array(pid[1], archive.read(f"{prefix}/data/{pid[2]}"), int(pid[4]), byteorder, str(pid[2]))

    with archive.open(pickles[0]) as file:
        return _Unpickler(file, storage).load()


_LEGACY_MAGIC, _LEGACY_PROTOCOL = 0x1950A86A20F9469CFC6C, 1001


def _read_legacy(file: io.BufferedIOBase, path: str) -> Any:
    def no_storage(pid: tuple) -> None:
        raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} outside the object")

    try:
        header = [_Unpickler(file, no_storage).load() for _ in range(3)]
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, UnicodeDecodeError):
        header = []
    if len(header) != 3 or header[0] != _LEGACY_MAGIC or header[1] != _LEGACY_PROTOCOL or not isinstance(header[2], dict):
        raise CheckpointFileError(f"{path!r} is not a readable PyTorch .pt file (neither torch.save's zip archive nor its legacy format)")
    byteorder = "little" if header[2].get("little_endian", True) else "big"
    start = file.tell()
    kinds: dict[str, tuple[StorageType, int]] = {}

    def note(pid: tuple) -> None:
        kinds[str(pid[2])] = (pid[1], int(pid[4]))

    _Unpickler(file, note, scan=True).load()
    keys = _Unpickler(file, no_storage).load()
    if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(kinds):
        raise ValueError(f"the storage key list {str(keys)[:80]} does not match the object's storages")
    storages = {}
    for key in map(str, keys):
        storage_type, numel = kinds[key]
        count = int.from_bytes(file.read(8), "little")
        if count != numel:
            raise ValueError(f"storage {key} holds {count} elements, the object expects {numel}")
        itemsize = np.dtype(STORAGE_DTYPES[storage_type.name]).itemsize
        storages[key] = storage_array(storage_type, file.read(count * itemsize), count, byteorder, key)

    def storage(pid: tuple) -> np.ndarray:
        root = storages[str(pid[2])]
        view = pid[5] if len(pid) == 6 else None
        return root if view is None else root[int(view[1]) : int(view[1]) + int(view[2])]

    file.seek(start)
    return _Unpickler(file, storage).load()


def read_pt(path: str) -> Any:
    """The object ``torch.save`` wrote to ``path``, tensors as numpy arrays.

    Raises :class:`CheckpointFileError` naming ``path`` for a missing file, a file in neither the
    zip nor the legacy format (e.g. the pre-0.4 tar format), a truncated or corrupt file, or a
    pickle that names anything outside the allowed tensor/storage/dict types.
    """
    try:
        with as_path(path).open("rb") as file:
            if file.read(4) != b"PK\x03\x04":
                file.seek(0)
                return _read_legacy(file, path)
            file.seek(0)
            with zipfile.ZipFile(file) as archive:
                return _read_zip(archive, path)
    except CheckpointFileError:
        raise
    except FileNotFoundError:
        raise CheckpointFileError(f"no checkpoint file {path!r}") from None
    except IsADirectoryError:
        raise CheckpointFileError(f"{path!r} is a folder, not a .pt file") from None
    except zipfile.BadZipFile as err:
        raise CheckpointFileError(f"{path!r} is not a readable PyTorch .pt file (a zip archive from torch.save, torch >= 1.6): {err}") from None
    except pickle.UnpicklingError as err:
        raise CheckpointFileError(f"{path!r}: refused to unpickle: {err}") from None
    except (ValueError, TypeError, KeyError, EOFError, AttributeError, IndexError, OSError, zlib.error, UnicodeDecodeError) as err:
        raise CheckpointFileError(f"{path!r} is a corrupt PyTorch .pt file: {type(err).__name__}: {err}") from None
