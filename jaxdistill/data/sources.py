"""Random-access data sources (grain's ``RandomAccessDataSource`` protocol).

Every record is ``{"x": float32 [*event_shape], "label": int32 scalar}`` with
``label = NULL_LABEL`` (-1) for unlabeled data. In-memory sources derive from
``ArraySource`` and also offer ``get_batch(indices)``, a vectorised gather used by
``jaxdistill.data.pipeline``.

``make_source(config)`` builds a source from an ``ml_collections.ConfigDict``; see its
docstring for the fields of each ``config.name``.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np

from jaxdistill.core.paths import as_path, files_in
from jaxdistill.core.types import NULL_LABEL
from jaxdistill.data.shards import ArrayRecordSource, LatentSource, Record, uint8_to_unit
from jaxdistill.data.t2i_cache import T2ICacheSource
from jaxdistill.models import gaussian_mixture

OBJECT_SOURCE = "object"  # data config name of a source passed as an object that cannot describe itself
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


class ArraySource:
    """Records ``{"x": x[i], "label": labels[i]}`` backed by in-memory arrays."""

    def __init__(self, x: np.ndarray, labels: Optional[np.ndarray] = None):
        self.x = np.ascontiguousarray(x, np.float32)
        n = len(self.x)
        self.labels = np.full(n, NULL_LABEL, np.int32) if labels is None else np.asarray(labels, np.int32).reshape(n)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> Record:
        return {"x": self.x[index], "label": self.labels[index]}

    def get_batch(self, indices: np.ndarray) -> Record:
        """Vectorised ``{"x": x[indices], "label": labels[indices]}``."""
        return {"x": self.x[indices], "label": self.labels[indices]}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(len={len(self)}, event_shape={self.x.shape[1:]})"


class MixtureSource(ArraySource):
    """``size`` exact samples of a ``GaussianMixture`` (drawn at construction with
    ``jax.random.key(seed)``); label = the component's label, or -1 if unlabeled. A source built
    from a mixture object (not from a config) describes itself by ``config()``, the data config
    that rebuilds it, so a run trained on it can be read back."""

    def __init__(self, mixture: gaussian_mixture.GaussianMixture, size: int, seed: int = 0):
        x, k = mixture.sample(jax.random.key(seed), int(size))
        labels = None if mixture.labels is None else mixture.labels[np.asarray(k)]
        super().__init__(np.asarray(x), labels)
        self.mixture = mixture
        self.size, self.seed = int(size), int(seed)

    def config(self) -> dict[str, Any]:
        """The data config of this source: the mixture's arrays given inline."""
        m = self.mixture
        given = {"means": m.means.tolist(), "covariances": m.covariances.tolist(), "weights": m.weights.tolist()}
        if m.labels is not None:
            given["labels"] = m.labels.tolist()
        return {"name": "mixture", "mixture": "given", "event_shape": list(m.event_shape), **given, "size": self.size, "seed": self.seed}


# ----------------------------------------------------------------- 2-D toys
def _checkerboard(rs: np.random.Generator, n: int) -> np.ndarray:
    """Uniform on the 8 dark squares of a 4x4 board of side-2 squares on ``[-4, 4]^2``."""
    x1 = rs.uniform(-4.0, 4.0, n)
    col = np.floor(x1 / 2.0).astype(np.int64)
    row = 2 * rs.integers(0, 2, n) - 2 + (col % 2)  # row in {-2, 0} or {-1, 1} by column parity
    x2 = 2.0 * (row + rs.uniform(0.0, 1.0, n))
    return np.stack([x1, x2], axis=1)


def _rings(rs: np.random.Generator, n: int) -> np.ndarray:
    """Four concentric circles of radii 0.8, 1.6, 2.4, 3.2 (points ∝ radius), noise std 0.08."""
    radii = np.array([0.8, 1.6, 2.4, 3.2])
    r = radii[rs.choice(4, n, p=radii / radii.sum())]
    theta = rs.uniform(0.0, 2.0 * np.pi, n)
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1) + 0.08 * rs.standard_normal((n, 2))


def _moons(rs: np.random.Generator, n: int) -> np.ndarray:
    """Two interleaved half circles ``(cos a, sin a)`` / ``(1 - cos a, 1/2 - sin a)``,
    noise std 0.1, centred and scaled by 2 (about ``[-3, 3] x [-1.6, 1.6]``)."""
    a = rs.uniform(0.0, np.pi, n)
    lower = rs.integers(0, 2, n).astype(bool)
    x = np.where(lower, 1.0 - np.cos(a), np.cos(a))
    y = np.where(lower, 0.5 - np.sin(a), np.sin(a))
    pts = np.stack([x, y], axis=1) + 0.1 * rs.standard_normal((n, 2))
    return 2.0 * (pts - np.array([0.5, 0.25]))


def _swiss_roll(rs: np.random.Generator, n: int) -> np.ndarray:
    """``u (cos u, sin u) / 3.6`` with ``u ~ U(1.5 pi, 4.5 pi)``, noise std 0.1 (radius <= 4)."""
    u = rs.uniform(1.5 * np.pi, 4.5 * np.pi, n)
    return np.stack([u * np.cos(u), u * np.sin(u)], axis=1) / 3.6 + 0.1 * rs.standard_normal((n, 2))


def _eight_gaussians(rs: np.random.Generator, n: int) -> np.ndarray:
    """Eight equal modes on the circle of radius 3 (angles ``k pi / 4``), std 0.2."""
    angle = rs.integers(0, 8, n) * (np.pi / 4.0)
    return 3.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1) + 0.2 * rs.standard_normal((n, 2))


TOY2D: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "checkerboard": _checkerboard,
    "rings": _rings,
    "moons": _moons,
    "swiss_roll": _swiss_roll,
    "eight_gaussians": _eight_gaussians,
}


class Toy2DSource(ArraySource):
    """``size`` unlabeled points of a classic 2-D toy (``TOY2D`` names), roughly in ``[-4, 4]^2``."""

    def __init__(self, name: str, size: int, seed: int = 0):
        if name not in TOY2D:
            raise ValueError(f"unknown toy2d dataset {name!r}; valid: {sorted(TOY2D)}")
        super().__init__(TOY2D[name](np.random.default_rng(seed), int(size)))
        self.name = name


class DigitsSource(ArraySource):
    """scikit-learn's 1797 8x8 digits: ``x`` [8, 8, 1] in ``[-1, 1]`` (``pixel / 16 * 2 - 1``), labels 0..9."""

    def __init__(self):
        super().__init__(*gaussian_mixture.load_digits_array())


class NpzSource(ArraySource):
    """Arrays ``x_key`` (float, or uint8 mapped to ``[-1, 1]``) and ``label_key`` of an ``.npz``
    file; ``label_key=None`` means unlabeled."""

    def __init__(self, path: str, x_key: str = "x", label_key: Optional[str] = "label"):
        with as_path(path).open("rb") as f, np.load(f) as data:
            wanted = [k for k in (x_key, label_key) if k is not None]
            missing = [k for k in wanted if k not in data.files]
            if missing:
                raise KeyError(f"{path}: missing key(s) {missing}; keys present: {sorted(data.files)}")
            x = data[x_key]
            labels = None if label_key is None else data[label_key]
        super().__init__(uint8_to_unit(x) if x.dtype == np.uint8 else x, labels)


def load_image_folder(root: str, image_size: int | Sequence[int], channels: int = 3) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(x uint8 [N, H, W, C], labels int32 [N], classes)`` of the images under ``root/<class>/*``
    (sorted class folders -> labels 0..C-1), or directly in ``root`` (labels -1, no classes),
    read with PIL, resized to ``image_size`` (bilinear) and converted to ``channels`` (1: "L", 3: "RGB")."""
    from PIL import Image

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if not as_path(root).is_dir():
        raise FileNotFoundError(f"image folder {root!r} does not exist")
    classes = sorted(d.name for d in as_path(root).iterdir() if d.is_dir())
    dirs = [(as_path(root) / c, i) for i, c in enumerate(classes)] or [(as_path(root), NULL_LABEL)]
    files = [(path, label) for d, label in dirs for path in files_in(d, lambda name: name.lower().endswith(IMAGE_EXTENSIONS))]
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root!r}")
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    mode = "L" if channels == 1 else "RGB"
    x = np.empty((len(files), h, w, channels), np.uint8)
    for i, (path, _) in enumerate(files):
        with as_path(path).open("rb") as f, Image.open(f) as img:
            arr = np.asarray(img.convert(mode).resize((w, h), Image.BILINEAR))
        x[i] = arr.reshape(h, w, channels)
    return x, np.array([label for _, label in files], np.int32), classes


class ImageFolderSource(ArraySource):
    """The images of ``load_image_folder(root, image_size, channels)``, loaded eagerly and scaled
    to ``[-1, 1]``; ``x`` is ``[H, W, C]``."""

    def __init__(self, root: str, image_size: int | Sequence[int], channels: int = 3):
        x, labels, self.classes = load_image_folder(root, image_size, channels)
        super().__init__(uint8_to_unit(x), labels)


class TfdsSource:
    """A TFDS split read through ``tfds.data_source`` (ArrayRecord, no TensorFlow needed):
    uint8 images ``[H, W, C]`` -> float32 ``[-1, 1]``; ``label_key=None`` means unlabeled.
    Records are converted lazily, one at a time.

    ``image_size`` (optional) box-filters each image down to ``image_size x image_size`` (an
    integer factor of the stored size: the smoke presets read CIFAR-10 and ImageNet-64 at 8x8).
    ``mock_examples`` (optional) reads that many random records of the dataset's own features
    from ``tfds.testing.mock_data`` instead of the prepared dataset: offline tests and CI."""

    def __init__(
        self,
        name: str,
        split: str = "train",
        image_key: str = "image",
        label_key: Optional[str] = "label",
        data_dir: Optional[str] = None,
        source: Optional[Any] = None,
        image_size: Optional[int] = None,
        mock_examples: Optional[int] = None,
    ):
        if source is None:
            import tensorflow_datasets as tfds

            if mock_examples:
                with tfds.testing.mock_data(num_examples=int(mock_examples), policy=tfds.testing.MockPolicy.USE_CODE):
                    source = tfds.data_source(name, split=split)
            else:
                source = tfds.data_source(name, split=split, data_dir=data_dir)
        self.source = source
        self.image_key, self.label_key = image_key, label_key
        self.image_size = None if image_size is None else int(image_size)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Record:
        return self.convert(self.source[int(index)])

    def convert(self, record: Mapping[str, Any]) -> Record:
        """``{image_key: uint8, label_key: int}`` -> ``{"x": float32 [-1, 1], "label": int32}``."""
        missing = [k for k in (self.image_key, self.label_key) if k is not None and k not in record]
        if missing:
            raise KeyError(f"TFDS record lacks {missing}; features present: {sorted(record)}")
        image = np.asarray(record[self.image_key])
        x = uint8_to_unit(image) if image.dtype == np.uint8 else image.astype(np.float32)
        if self.image_size is not None:
            x = box_downsample(x, self.image_size)
        label = NULL_LABEL if self.label_key is None else record[self.label_key]
        return {"x": x, "label": np.int32(label)}


def box_downsample(x: np.ndarray, size: int) -> np.ndarray:
    """``[H, W, C]`` -> ``[size, size, C]`` by averaging ``H/size x W/size`` blocks (integer factors only)."""
    h, w, c = x.shape
    if h % size or w % size:
        raise ValueError(f"image_size={size} must divide the stored image size {h}x{w}")
    return x.reshape(size, h // size, size, w // size, c).mean(axis=(1, 3), dtype=np.float32)


# ------------------------------------------------------------------- registry
def mixture_of(config: Mapping[str, Any]) -> Optional[gaussian_mixture.GaussianMixture]:
    """The Gaussian mixture a data config draws its samples from (with the config's own mixture
    settings), or ``None`` for data that are not a mixture's samples. The exact mixture teacher
    and the benchmark evaluator both read it from here, so they see the data's mixture."""
    name = config.get("name", None)
    if name in ("grid25", "digits_gmm"):
        return _mixture_by_name(name, config)
    if name == "mixture":
        return _mixture_by_name(config.get("mixture", "grid25"), config)
    return None


def _mixture_by_name(name: str, config: Mapping[str, Any]) -> gaussian_mixture.GaussianMixture:
    if name == "given":
        shape = config.get("event_shape", None)
        return gaussian_mixture.GaussianMixture(
            np.asarray(_required(config, "means")),
            np.asarray(_required(config, "covariances")),
            weights=None if config.get("weights", None) is None else np.asarray(config["weights"]),
            labels=None if config.get("labels", None) is None else np.asarray(config["labels"]),
            event_shape=None if shape is None else tuple(shape),
        )
    if name == "grid25":
        return gaussian_mixture.grid25(float(config.get("std", 0.1)))
    if name == "digits_gmm":
        return gaussian_mixture.digits_gmm(float(config.get("shrinkage", 0.1)))
    if name == "random":
        return gaussian_mixture.random(
            int(config.get("mixture_seed", 0)),
            int(config.get("num_components", 8)),
            int(config.get("dim", 2)),
            num_classes=config.get("num_classes", None),
        )
    raise ValueError(f"unknown mixture {name!r}; valid: ['digits_gmm', 'given', 'grid25', 'random']")


def _required(config: Mapping[str, Any], key: str) -> Any:
    value = config.get(key, None)
    if value is None:
        raise ValueError(f"data source {config.get('name')!r} needs the field {key!r}")
    return value


def _size_seed(config: Mapping[str, Any]) -> tuple[int, int]:
    return int(config.get("size", 100_000)), int(config.get("seed", 0))


SOURCES: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "mixture": lambda c: MixtureSource(mixture_of(c), *_size_seed(c)),
    "grid25": lambda c: MixtureSource(mixture_of(c), *_size_seed(c)),
    "digits_gmm": lambda c: MixtureSource(mixture_of(c), *_size_seed(c)),
    "toy2d": lambda c: Toy2DSource(c.get("toy", "checkerboard"), *_size_seed(c)),
    "digits": lambda c: DigitsSource(),
    "npz": lambda c: NpzSource(_required(c, "path"), c.get("x_key", "x"), c.get("label_key", "label")),
    "image_folder": lambda c: ImageFolderSource(_required(c, "root"), c.get("image_size", 32), int(c.get("channels", 3))),
    "tfds": lambda c: TfdsSource(
        _required(c, "dataset"), c.get("split", "train"), c.get("image_key", "image"), c.get("label_key", "label"), c.get("data_dir", None),
        image_size=c.get("image_size", None), mock_examples=c.get("mock_examples", None),
    ),
    "array_record": lambda c: ArrayRecordSource(_required(c, "path")),
    "latents": lambda c: LatentSource(_required(c, "path"), c.get("latent_scale", None), c.get("latent_shift", None)),
    "t2i_cache": lambda c: T2ICacheSource(_required(c, "path")),
}


def make_source(config: Mapping[str, Any]):
    """Build the source named ``config.name``. Fields (defaults in brackets):

    * ``mixture``: ``mixture`` (grid25 | digits_gmm | random | given) [grid25], ``size`` [100000], ``seed`` [0],
      grid25: ``std`` [0.1]; digits_gmm: ``shrinkage`` [0.1];
      random: ``mixture_seed`` [0], ``num_components`` [8], ``dim`` [2], ``num_classes`` [None];
      given: ``means`` [K, D], ``covariances`` [K, D] or [K, D, D], ``weights`` [None], ``labels`` [None],
      ``event_shape`` [None] (``MixtureSource.config()`` writes them);
    * ``grid25`` / ``digits_gmm``: shorthands for ``mixture`` with that mixture;
    * ``toy2d``: ``toy`` (checkerboard | rings | moons | swiss_roll | eight_gaussians) [checkerboard],
      ``size``, ``seed``;
    * ``digits``: no fields;
    * ``npz``: ``path``, ``x_key`` [x], ``label_key`` [label] (None: unlabeled);
    * ``image_folder``: ``root``, ``image_size`` [32], ``channels`` [3];
    * ``tfds``: ``dataset``, ``split`` [train], ``image_key`` [image], ``label_key`` [label], ``data_dir`` [None],
      ``image_size`` [None: as stored], ``mock_examples`` [None: the prepared dataset; N: N random records
      of ``tfds.testing.mock_data``, for offline tests].
    * ``array_record``: ``path`` (a file, a glob or a directory of ``*.array_record`` shards of
      ``jaxdistill.data.shards.write_array_record``'s records);
    * ``latents``: ``path`` (a file, a glob or a directory of ``.npz`` / ``.npy`` latent shards),
      ``latent_scale`` [1], ``latent_shift`` [0] (scalars or one number per channel);
    * ``t2i_cache``: ``path`` (a folder written by ``jaxdistill cache``): latents as ``x``, text
      embeddings as ``cond`` (``jaxdistill.data.t2i_cache``).
    """
    name = config.get("name", None)
    if name == OBJECT_SOURCE:
        raise ValueError(f"this run's data source was passed as an object ({config.get('type')}); pass it again (source=...)")
    if name not in SOURCES:
        raise ValueError(f"unknown data source {name!r}; valid names: {sorted(SOURCES)}")
    return SOURCES[name](config)


def data_mean(source, max_records: int = 10_000) -> np.ndarray:
    """The data's mean, event-shaped float64: the exact mean of a ``MixtureSource``'s mixture,
    the average of every record of another in-memory source, else of ``max_records`` evenly
    spaced records (the prior mean needs the mean to a small fraction of sigma_max, not exactly)."""
    mixture = getattr(source, "mixture", None)
    event_shape = tuple(np.shape(source[0]["x"]))
    if mixture is not None:
        return mixture.mean.reshape(event_shape)
    if isinstance(source, ArraySource):
        return source.x.mean(axis=0, dtype=np.float64)
    indices = np.unique(np.linspace(0, len(source) - 1, min(len(source), max_records)).astype(np.int64))
    return np.mean([np.asarray(source[int(i)]["x"], np.float64) for i in indices], axis=0)


def describe(source) -> dict[str, Any]:
    """The data config recorded for a source passed as an object: its own ``config()`` when it
    has one (it can be rebuilt from the config), else a marker naming its type (a run trained on
    it is read back by passing the source again)."""
    if hasattr(source, "config"):
        return dict(source.config())
    return {"name": OBJECT_SOURCE, "type": f"{type(source).__module__}.{type(source).__qualname__}"}
