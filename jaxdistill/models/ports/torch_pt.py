"""Read a PyTorch ``.pt`` file (``torch.save``'s zip format) into numpy, without PyTorch.

The archive holds ``<name>/data.pkl``, a pickle whose tensors are calls of
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` on persistent storage
ids ``("storage", torch.<Dtype>Storage, key, location, numel)``, and each storage's raw bytes
as ``<name>/data/<key>`` (byte order in ``<name>/byteorder``, little-endian if absent).

A pickle can run any callable it names, so the unpickler resolves only the names below: the
tensor and parameter rebuilders, the storage types, ``collections.OrderedDict`` and
``argparse.Namespace`` (DiT's training checkpoints store their arguments; it becomes a
``types.SimpleNamespace``). Any other global is refused with :class:`CheckpointFileError`.
bfloat16 storages are widened to float32 (numpy has no bfloat16).
"""
from __future__ import annotations

import collections
import pickle
import types
import zipfile
import zlib
from typing import Any

import numpy as np

from jaxdistill.core.errors import CheckpointFileError

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


def storage_array(storage: StorageType, raw: bytes, numel: int, byteorder: str = "little") -> np.ndarray:
    """The ``numel`` elements of a storage of type ``storage`` from its raw bytes, in native byte order."""
    dtype = np.dtype(STORAGE_DTYPES[storage.name]).newbyteorder("<" if byteorder == "little" else ">")
    if len(raw) < numel * dtype.itemsize:
        raise ValueError(f"a storage has {len(raw)} bytes, fewer than its {numel} elements need")
    array = np.frombuffer(raw, dtype, count=numel).astype(dtype.newbyteorder("="))
    return (array.astype(np.uint32) << 16).view(np.float32) if storage.name == "BFloat16Storage" else array


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(file)
        self.archive, self.prefix, self.byteorder = archive, prefix, byteorder

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a checkpoint reader does not load (only tensors, storages and dicts)")
        return _ALLOWED[(module, name)]

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], StorageType)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        return storage_array(pid[1], self.archive.read(f"{self.prefix}/data/{pid[2]}"), int(pid[4]), self.byteorder)


def read_pt(path: str) -> Any:
    """The object ``torch.save`` wrote to ``path``, tensors as numpy arrays.

    Raises :class:`CheckpointFileError` naming ``path`` for a missing file, a file that is not a
    zip-format ``.pt`` (including torch's legacy pre-1.6 format), a truncated or corrupt archive,
    or a pickle that names anything outside the allowed tensor/storage/dict types.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pickles) != 1:
                raise CheckpointFileError(f"{path!r} is a zip archive but not a PyTorch .pt file (no <name>/data.pkl)")
            prefix = pickles[0].split("/")[0]
            names = set(archive.namelist())
            byteorder = archive.read(f"{prefix}/byteorder").decode().strip() if f"{prefix}/byteorder" in names else "little"
            with archive.open(pickles[0]) as file:
                return _Unpickler(file, archive, prefix, byteorder).load()
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
