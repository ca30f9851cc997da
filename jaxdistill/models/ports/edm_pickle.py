"""Read NVlabs/edm and NVlabs/edm2 network pickles (``edm-cifar10-32x32-cond-vp.pkl``,
``network-snapshot-*.pkl``, ``edm2-img512-xs-2147483-0.135.pkl``) into inert records and numpy
arrays, without PyTorch and without running any pickled code.

EDM's ``training_loop.py`` writes ``pickle.dump({"ema": net, "loss_fn", "augment_pipe",
"dataset_kwargs"})``, EDM2's ``pickle.dump(EasyDict(encoder, dataset_kwargs, loss_fn, ema))``. Its networks are ``torch_utils.persistence`` classes: each object pickles as
``_reconstruct_persistent_obj(meta)``, ``meta = {type, version, module_src, class_name, state}``
with ``state`` the object's ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, the
constructor arguments ``_init_kwargs``); unpickling it for real would ``exec(module_src)``. Here
it becomes a :class:`PersistentObject` holding ``class_name`` and ``state``; ``module_src`` is
never read. A ``torch.nn.ModuleDict`` becomes a :class:`TorchModule` holding its state. A tensor
pickles as ``_rebuild_tensor_v2(storage, offset, size, stride, ...)`` whose storage is
``torch.storage._load_from_bytes(blob)``, ``blob`` a legacy-format ``torch.save`` of that storage
(pickles of the magic number, protocol version and system info, the storage's persistent id
``("storage", torch.<Dtype>Storage, key, location, numel, view)``, the list of keys, then per key
an int64 element count and the raw little-endian bytes), read by :func:`load_storage`.

Only those names resolve, plus ``collections.OrderedDict``, numeric numpy scalars (EDM keeps
``np.sqrt(0.5)`` as a block's ``skip_scale``), numeric numpy arrays as :class:`PickledArray`
records (EDM2's latent encoder keeps its ``scale`` and ``bias`` as arrays), ``builtins.set`` and
``dnnlib``'s ``EasyDict`` (as a dict). Any other global is refused with :class:`CheckpointFileError`.
"""
from __future__ import annotations

import dataclasses
import io
import pickle
from typing import Any, Mapping

import numpy as np

from jaxdistill.core.errors import CheckpointFileError
from jaxdistill.core.paths import as_path
from jaxdistill.models.ports.torch_pt import TENSOR_GLOBALS, StorageType, storage_array

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
_LEGACY_VERSION = 1001


@dataclasses.dataclass
class PersistentObject:
    """A ``torch_utils.persistence`` object: its class name and pickled ``__dict__``."""

    class_name: str
    state: dict


class TorchModule:
    """A ``torch.nn`` container (``ModuleDict``, ``ModuleList``, ``Sequential``): its pickled ``__dict__``."""

    def __setstate__(self, state: dict) -> None:
        self.state = state


class PickledArray:
    """A numpy array pickled with ``ndarray.__reduce__`` (``_reconstruct(ndarray, (0,), b"b")``, then
    ``__setstate__((version, shape, dtype, fortran, raw bytes))``): numeric dtypes only, the values in ``array``."""

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], np.dtype) and state[2].kind in "biufc" and isinstance(state[4], bytes)):
            raise pickle.UnpicklingError("a numpy array that is not a plain numeric array")
        _, shape, dtype, fortran, data = state
        self.array = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C").copy()


def _array_shell(subtype: Any, shape: Any, dtype: Any) -> PickledArray:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"a numpy array of type {subtype!r}")
    return PickledArray()


def _persistent(meta: Any) -> PersistentObject:
    if not (isinstance(meta, Mapping) and meta.get("type") == "class" and isinstance(meta.get("class_name"), str) and isinstance(meta.get("state"), Mapping)):
        raise pickle.UnpicklingError("a torch_utils.persistence object without a class name and state")
    return PersistentObject(meta["class_name"], dict(meta["state"]))


def _numpy_scalar(dtype: np.dtype, data: bytes) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" or not isinstance(data, bytes):
        raise pickle.UnpicklingError(f"a numpy scalar of dtype {dtype!r}, not a number")
    return np.frombuffer(data, dtype, count=1)[0]


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"it names {module}.{name} where only plain data may be")


class _StorageUnpickler(_NoGlobals):
    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and (module, name) in TENSOR_GLOBALS and isinstance(TENSOR_GLOBALS[(module, name)], StorageType):
            return TENSOR_GLOBALS[(module, name)]
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> tuple:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage" and isinstance(pid[1], StorageType) and pid[5] is None):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        return pid


def load_storage(blob: bytes) -> np.ndarray:
    """The storage in ``blob``, a legacy-format ``torch.save`` of one storage (module docstring)."""
    if not isinstance(blob, bytes):
        raise pickle.UnpicklingError("a storage that is not a byte string")
    f = io.BytesIO(blob)
    if _NoGlobals(f).load() != _LEGACY_MAGIC or _NoGlobals(f).load() != _LEGACY_VERSION:
        raise pickle.UnpicklingError("a storage that is not a legacy torch.save stream")
    _NoGlobals(f).load()  # system info; storages are written little-endian whatever it says
    pid = _StorageUnpickler(f).load()
    storage, key, numel = pid[1], pid[2], int(pid[4])
    if _NoGlobals(f).load() != [key]:
        raise pickle.UnpicklingError("a storage stream holding other storages than its own")
    count = int.from_bytes(f.read(8), "little")
    if count != numel:
        raise ValueError(f"a storage of {numel} elements says it holds {count}")
    return storage_array(storage, f.read(), numel)


_ALLOWED = {
    **TENSOR_GLOBALS,
    ("torch.storage", "_load_from_bytes"): load_storage,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent,
    **{("torch.nn.modules.container", name): TorchModule for name in ("ModuleDict", "ModuleList", "Sequential")},
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy._core.multiarray", "_reconstruct"): _array_shell,
    ("numpy.core.multiarray", "_reconstruct"): _array_shell,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("dnnlib.util", "EasyDict"): dict,
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which an EDM network reader does not load (only tensors, modules' state and plain data)")
        return _ALLOWED[(module, name)]


def read_edm_pickle(path: str, kind: str = "EDM") -> Any:
    """The object EDM (or EDM2: ``kind``, named in errors) pickled to ``path``, persistent objects as
    records and tensors as numpy arrays.

    Raises :class:`CheckpointFileError` naming ``path`` for a missing file, a zip archive (a
    PyTorch ``.pt``), a truncated or corrupt pickle, or one naming a global outside the allowed set.
    """
    try:
        with as_path(path).open("rb") as f:
            if f.read(4) == b"PK\x03\x04":
                raise CheckpointFileError(f"{path!r} is a zip archive (a PyTorch .pt file?), not an {kind} network pickle (.pkl)")
            f.seek(0)
            return _Unpickler(f).load()
    except CheckpointFileError:
        raise
    except FileNotFoundError:
        raise CheckpointFileError(f"no checkpoint file {path!r}") from None
    except IsADirectoryError:
        raise CheckpointFileError(f"{path!r} is a folder, not an {kind} network pickle") from None
    except pickle.UnpicklingError as err:
        if "truncated" in str(err):
            raise CheckpointFileError(f"{path!r} is a truncated {kind} network pickle: {err}") from None
        if str(err).startswith("invalid load key"):
            raise CheckpointFileError(f"{path!r} is not a pickle, so not an {kind} network pickle (.pkl): {err}") from None
        raise CheckpointFileError(f"{path!r}: refused to unpickle as an {kind} network pickle: {err}") from None
    except EOFError:
        raise CheckpointFileError(f"{path!r} is a truncated {kind} network pickle (it ends before the pickle does)") from None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OSError, UnicodeDecodeError, MemoryError, OverflowError) as err:
        raise CheckpointFileError(f"{path!r} is a corrupt {kind} network pickle: {type(err).__name__}: {err}") from None
