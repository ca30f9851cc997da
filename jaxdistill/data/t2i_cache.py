"""Text-to-image cache: text embeddings (and VAE latents) encoded once, read back as training data.

Distilling a latent text-to-image model (LCM, DMD2, SwiftBrush, ...) needs, per step, the text
encoder's embeddings of the batch's prompts and, for methods that use real images, the VAE
latents of those images. ``write_cache`` computes both once and stores them in shard files, so
training never runs the text encoder or the VAE encoder.

A cache folder holds

* ``manifest.json``: ``settings`` (the encoders' own settings: text encoder, its config hash,
  ``max_length``, ``resolution``, VAE scaling factor, ...; plus the shard size, the storage dtype,
  whether images were encoded, what the prompts are and, for a cache of the teacher's own samples,
  ``teacher_samples``: how they were drawn), ``num_records``, ``shards`` (file names, in order)
  and ``latent_shape``;
* ``shard-KKKKK-of-NNNNN.npz``: the records ``[k S, min((k+1) S, N))`` as uncompressed arrays
  ``index`` int64 ``[n]``, ``cond.<key> [n, ...]`` for each array ``encode_prompts`` returns
  (``prompt_embeds [n, L, D]``; SDXL adds ``pooled_prompt_embeds [n, P]``) and, with images, ``x [n, h, w, c]``
  (``encode_images``: the VAE posterior's mean times the scaling factor), or with ``TeacherSamples``
  the latents the teacher sampled for the records' prompts (LADD's synthetic data, Sauer et al. 2024);
* ``null_cond.npz``: the ``cond.<key>`` arrays of the empty prompt (classifier-free guidance).

Each shard is written atomically (``core.paths.write_atomic``) with fixed zip timestamps, so a
file is complete or absent and rewriting it gives the same bytes. A rerun skips the shards that
exist (resume); process ``i`` of ``n`` writes shards ``i, i + n, ...`` (several hosts); a rerun
whose settings differ from the manifest's is refused before anything is written. Teacher samples
are seeded per record (record i's noise from ``fold_in(key(seed), i)``), so a resumed or sharded
cache holds the same latents as one written straight through.

``T2ICacheSource`` (``data.name = "t2i_cache"``) reads a finished cache as records ``{"x": latents
(images' or teacher samples'; zeros of the latent shape for a text-only cache), "label": -1, "cond": {TextCondition field: array}}``,
memory-mapping the shards so that each process reads only its own records.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from typing import IO, TYPE_CHECKING, Any, Callable, Mapping, Optional

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxdistill.core.errors import ConfigError
from jaxdistill.core.paths import write_atomic, write_text_atomic
from jaxdistill.core.types import NULL_LABEL
from jaxdistill.data.shards import _locate, _starts, memmap_npz_member

if TYPE_CHECKING:
    from jaxdistill.models.hf.teacher import SDTeacher

MANIFEST = "manifest.json"
NULL_COND = "null_cond.npz"
FORMAT = "jaxdistill.t2i_cache/1"
COND_PREFIX = "cond."
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member timestamps: the same arrays give the same file bytes
DTYPES = ("float32", "float16")
# encode_prompts' arrays -> the TextCondition fields they fill, for the prompt and (from the empty prompt) the negative branch
CONDITION_FIELDS = {"prompt_embeds": ("embeds", "negative_embeds"), "pooled_prompt_embeds": ("pooled", "negative_pooled")}


@dataclasses.dataclass(frozen=True)
class Encoders:
    """The frozen encoders of a latent text-to-image model, as the cache uses them.

    ``encode_prompts(prompts) -> {"prompt_embeds": [B, L, D], ...}``; ``encode_images(images NHWC in
    [-1, 1]) -> latents [B, h, w, c]``; ``settings``: a JSON-able description of what they are,
    which must include ``resolution`` (the image side the latents are encoded at)."""

    encode_prompts: Callable[[list[str]], Mapping[str, np.ndarray]]
    encode_images: Callable[[np.ndarray], np.ndarray]
    settings: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class TeacherSamples:
    """The teacher's own samples as a cache's latents, LADD's synthetic data (Sauer et al. 2024,
    "Fast High-Resolution Image Synthesis with Latent Adversarial Diffusion Distillation", Sec. 3).

    ``sample(prompts, indices) -> latents [n, h, w, c]``: for each prompt, the teacher's sample from
    noise seeded by its record index (so a record's latents do not depend on batching or sharding),
    guided with the empty prompt as the negative one (the cache's ``null_cond``); ``settings``: a
    JSON-able description of the sampler (its name, nfe, guidance, seed), recorded in the manifest."""

    sample: Callable[[list[str], np.ndarray], np.ndarray]
    settings: Mapping[str, Any]


def latent_source(settings: Mapping[str, Any]) -> Optional[str]:
    """What a cache's latents ``x`` are, from its manifest settings: ``"images"`` (real images
    encoded), ``"teacher_samples"`` (the teacher's samples for the prompts) or ``None`` (text only)."""
    if settings.get("images"):
        return "images"
    return "teacher_samples" if settings.get("teacher_samples") else None


def shard_name(k: int, count: int) -> str:
    return f"shard-{k:05d}-of-{count:05d}.npz"


def write_npz(f: IO[bytes], arrays: Mapping[str, np.ndarray]) -> None:
    """``arrays`` as an uncompressed ``.npz`` (what ``np.load`` reads and ``memmap_npz_member``
    maps) whose bytes depend on the arrays alone (``np.savez`` stamps the current time)."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            with zf.open(zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_TIME), "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)


def load_image(image: Any, resolution: int) -> np.ndarray:
    """An image (a file path or a ``uint8 [H, W, C]`` array) as float32 ``[resolution, resolution,
    3]`` in ``[-1, 1]``: RGB, the shorter side resized to ``resolution`` (bicubic), centre-cropped
    (the preprocessing of Stable Diffusion's training data, Rombach et al. 2022)."""
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as opened:
            pil = opened.convert("RGB")
    else:
        array = np.asarray(image)
        pil = Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array).convert("RGB")
    w, h = pil.size
    scale = resolution / min(w, h)
    size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
    pil = pil.resize(size, Image.BICUBIC)
    left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    pil = pil.crop((left, top, left + resolution, top + resolution))
    return np.asarray(pil, np.float32) / 127.5 - 1.0


def _jsonable(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples become lists), so settings compare equal after a round trip."""
    return json.loads(json.dumps(value))


def cache_settings(
    prompts, encoders: Encoders, shard_size: int, with_images: bool, dtype: str, teacher_samples: Optional[TeacherSamples] = None
) -> dict[str, Any]:
    """The settings a cache is written with: the encoders', the storage layout, the prompts and, for
    teacher samples, their sampler's settings."""
    if "resolution" not in encoders.settings:
        raise ValueError("Encoders.settings must include 'resolution' (the image side the latents are encoded at)")
    own = {"shard_size": int(shard_size), "images": bool(with_images), "dtype": dtype, "prompts": prompts.describe()}
    if teacher_samples is not None:
        own["teacher_samples"] = dict(teacher_samples.settings)
    clash = sorted(set(own) & set(encoders.settings))
    if clash:
        raise ValueError(f"Encoders.settings may not set the cache's own settings {clash}")
    return _jsonable({**encoders.settings, **own})


def read_manifest(folder: str) -> Optional[dict[str, Any]]:
    """The manifest of the cache in ``folder``, ``None`` if there is none; a ConfigError if unreadable."""
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path} is not readable JSON ({type(err).__name__}); expected a manifest written by 'jaxdistill cache'") from None
    keys = ("format", "settings", "num_records", "shards", "latent_shape")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or any(k not in manifest for k in keys):
        raise ConfigError(f"{path} is not a text-to-image cache manifest; expected format {FORMAT!r} with fields {list(keys)}")
    return manifest


def check_settings(folder: str, manifest: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    """A one-line ConfigError naming the manifest and every setting in which ``settings`` differ from it."""
    old = manifest["settings"]
    differing = [k for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k)]
    if differing:
        details = "; ".join(f"{k}: manifest {old.get(k)!r}, this run {settings.get(k)!r}" for k in differing)
        raise ConfigError(
            f"{os.path.join(folder, MANIFEST)} was written with other settings ({details}); nothing was changed: "
            "write this cache to another --out folder"
        )


def _shard_ranges(num_records: int, shard_size: int) -> list[tuple[int, int]]:
    return [(a, min(a + shard_size, num_records)) for a in range(0, num_records, shard_size)]


def _cond_arrays(encoded: Mapping[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    return {f"{COND_PREFIX}{k}": np.asarray(v, dtype) for k, v in encoded.items()}


def _encode_records(
    prompts, indices: list[int], encoders: Encoders, with_images: bool, resolution: int, dtype: str, teacher_samples: Optional[TeacherSamples]
) -> dict[str, np.ndarray]:
    """The shard arrays (``cond.<key>``, and ``x`` with images or teacher samples) of the prompt records ``indices``."""
    records = [prompts[i] for i in indices]
    texts = [r["prompt"] for r in records]
    arrays = _cond_arrays(encoders.encode_prompts(texts), dtype)
    if with_images:
        arrays["x"] = np.asarray(encoders.encode_images(np.stack([load_image(r["image"], resolution) for r in records])), dtype)
    elif teacher_samples is not None:
        arrays["x"] = np.asarray(teacher_samples.sample(texts, np.asarray(indices, np.int64)), dtype)
    return arrays


def _encode_shard(a: int, b: int, batch_size: int, encode: Callable[[list[int]], dict[str, np.ndarray]], bar) -> dict[str, np.ndarray]:
    """The arrays of records ``[a, b)``, encoded in batches of exactly ``batch_size`` record indices
    (the last padded by repeating its last record, so one compiled shape serves every batch)."""
    parts = []
    for start in range(a, b, batch_size):
        chunk = list(range(start, min(start + batch_size, b)))
        encoded = encode(chunk + [chunk[-1]] * (batch_size - len(chunk)))
        parts.append({k: v[: len(chunk)] for k, v in encoded.items()})
        bar.update(len(chunk))
    return {"index": np.arange(a, b, dtype=np.int64), **{k: np.concatenate([part[k] for part in parts]) for k in parts[0]}}


def write_cache(
    folder: str,
    prompts,
    encoders: Encoders,
    *,
    batch_size: int = 64,
    shard_size: int = 1024,
    with_images: bool = False,
    dtype: str = "float32",
    teacher_samples: Optional[TeacherSamples] = None,
    process_index: Optional[int] = None,
    process_count: Optional[int] = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Encode ``prompts`` (a ``jaxdistill.data.prompts`` source; with ``with_images``, its images
    too) with ``encoders`` into the cache ``folder`` (module docstring) and return its manifest.
    ``teacher_samples``: store the teacher's samples for the prompts as the latents instead.

    Process ``process_index`` of ``process_count`` (defaults: JAX's) writes shards
    ``process_index::process_count`` that are not there yet; the others are left as they are."""
    process_index = jax.process_index() if process_index is None else int(process_index)
    process_count = jax.process_count() if process_count is None else int(process_count)
    if not 0 <= process_index < process_count:
        raise ConfigError(f"process_index {process_index} not in [0, {process_count})")
    if batch_size < 1 or shard_size < 1:
        raise ConfigError(f"batch_size and shard_size must be positive, got {batch_size} and {shard_size}")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if len(prompts) == 0:
        raise ConfigError(f"the prompts {prompts.describe()} are empty")
    if with_images and prompts[0]["image"] is None:
        raise ConfigError(f"the prompts {prompts.describe()} carry no images; name the image field (--images FIELD)")
    if with_images and teacher_samples is not None:
        raise ConfigError("a cache's latents are either encoded images (--images) or the teacher's samples (--teacher-samples), not both")
    settings = cache_settings(prompts, encoders, shard_size, with_images, dtype, teacher_samples)
    resolution = int(settings["resolution"])
    manifest = read_manifest(folder)
    if manifest is not None:
        check_settings(folder, manifest, settings)
    else:
        stray = sorted(f for f in os.listdir(folder) if not f.startswith(".") and f != NULL_COND) if os.path.isdir(folder) else []
        if stray:
            raise ConfigError(f"cache folder {folder!r} holds files but no {MANIFEST} (e.g. {stray[0]!r}); name a new or empty folder")
        ranges = _shard_ranges(len(prompts), shard_size)
        latent_shape = np.shape(encoders.encode_images(np.zeros((1, resolution, resolution, 3), np.float32)))[1:]
        manifest = {
            "format": FORMAT,
            "settings": settings,
            "num_records": len(prompts),
            "shards": [shard_name(k, len(ranges)) for k in range(len(ranges))],
            "shard_records": [b - a for a, b in ranges],
            "latent_shape": list(latent_shape),
        }
        null = _cond_arrays(encoders.encode_prompts([""]), dtype)
        write_atomic(os.path.join(folder, NULL_COND), lambda f: write_npz(f, {k: v[0] for k, v in null.items()}))
        write_text_atomic(os.path.join(folder, MANIFEST), json.dumps(manifest, indent=2))

    ranges = _shard_ranges(int(manifest["num_records"]), shard_size)
    todo = [k for k in range(process_index, len(ranges), process_count) if not os.path.isfile(os.path.join(folder, manifest["shards"][k]))]
    encode = lambda indices: _encode_records(prompts, indices, encoders, with_images, resolution, dtype, teacher_samples)  # noqa: E731
    with tqdm(total=sum(ranges[k][1] - ranges[k][0] for k in todo), desc="cache", unit="prompt", disable=not progress, dynamic_ncols=True) as bar:
        for k in todo:
            arrays = _encode_shard(*ranges[k], batch_size, encode, bar)
            if "x" in arrays and arrays["x"].shape[1:] != tuple(manifest["latent_shape"]):
                raise ConfigError(f"{folder}: latents of shape {arrays['x'].shape[1:]} to write; expected the manifest's latent_shape {tuple(manifest['latent_shape'])}")
            write_atomic(os.path.join(folder, manifest["shards"][k]), lambda f: write_npz(f, arrays))
    return manifest


def _open_npz(path: str) -> dict[str, np.ndarray]:
    """Every member of an uncompressed ``.npz``, memory-mapped, by name without ``.npy``."""
    try:
        with zipfile.ZipFile(path) as zf:
            return {name[: -len(".npy")]: memmap_npz_member(path, path, zf, name) for name in zf.namelist()}
    except ConfigError:
        raise
    except Exception as err:  # zipfile / numpy on a file of another kind
        raise ConfigError(f"{path} is not a readable cache shard ({type(err).__name__}); expected an uncompressed .npz written by 'jaxdistill cache'") from None


class T2ICacheSource:
    """The records of the cache in ``path`` (module docstring): ``{"x": float32 latents [h, w, c],
    "label": -1, "cond": {field: float32 array}}``, read by index from memory-mapped shards, where
    ``cond`` holds the fields of a ``core.conditioning.TextCondition`` (``embeds``, with the empty
    prompt's as ``negative_embeds``; SDXL also ``pooled``, ``negative_pooled`` and ``time_ids``).
    ``null_cond`` holds the empty prompt's ``cond``; ``settings`` the manifest's settings; ``latents``
    what the records' ``x`` are (``latent_source``: real images', the teacher's samples, or None)."""

    def __init__(self, path: str):
        self.path = path
        manifest = read_manifest(path)
        if manifest is None:
            raise ConfigError(f"data.path {path!r} holds no {MANIFEST}; expected a folder written by 'jaxdistill cache'")
        self.settings = manifest["settings"]
        files = [os.path.join(path, name) for name in manifest["shards"]]
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            raise ConfigError(
                f"{path}: {len(missing)} of {len(files)} shards are missing (e.g. {missing[0]}): the cache is unfinished; "
                "rerun 'jaxdistill cache' with the same arguments to finish it"
            )
        self.shards = [_open_npz(f) for f in files]
        self.starts = _starts(manifest["shard_records"])
        self.latents = latent_source(self.settings)
        self.has_images = self.latents is not None
        self.event_shape = tuple(manifest["latent_shape"])
        first = self.shards[0]
        for f, shard, a, b in zip(files, self.shards, self.starts[:-1], self.starts[1:]):
            if sorted(shard) != sorted(first) or not np.array_equal(shard.get("index"), np.arange(a, b)):
                raise ConfigError(f"{f}: arrays {sorted(shard)} for records {a}..{b - 1}; expected {sorted(first)} with index {a}..{b - 1}")
            for name, array in shard.items():
                if array.shape[1:] != first[name].shape[1:]:
                    raise ConfigError(f"{f}: {name} has records of shape {array.shape[1:]}; expected {first[name].shape[1:]} like {files[0]}")
        if self.has_images and tuple(first["x"].shape[1:]) != self.event_shape:
            raise ConfigError(f"{files[0]}: latents of shape {first['x'].shape[1:]}; the manifest says {self.event_shape}")
        self.cond_keys = sorted(name[len(COND_PREFIX):] for name in first if name.startswith(COND_PREFIX))
        null = _open_npz(os.path.join(path, NULL_COND))
        self.null_cond = {k: np.asarray(null[COND_PREFIX + k], np.float32) for k in self.cond_keys}
        unknown = sorted(set(self.cond_keys) - set(CONDITION_FIELDS))
        if unknown:
            raise ConfigError(f"{files[0]}: text arrays {unknown} are not Stable Diffusion encodings; expected {sorted(CONDITION_FIELDS)}")
        self.time_ids = np.asarray(self.settings["time_ids"], np.float32) if "time_ids" in self.settings else None

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        batch = self.get_batch(np.array([index]))
        return {"x": batch["x"][0], "label": batch["label"][0], "cond": {k: v[0] for k, v in batch["cond"].items()}}

    def get_batch(self, indices: np.ndarray) -> dict[str, Any]:
        """Records ``indices`` stacked, gathered from each shard's memory maps."""
        shard, position = _locate(self.starts, indices)
        n = len(shard)
        x = np.zeros((n, *self.event_shape), np.float32)
        text = {k: np.empty((n, *self.shards[0][COND_PREFIX + k].shape[1:]), np.float32) for k in self.cond_keys}
        for s in np.unique(shard):
            rows = np.flatnonzero(shard == s)
            arrays = self.shards[s]
            if self.has_images:
                x[rows] = arrays["x"][position[rows]]
            for k in self.cond_keys:
                text[k][rows] = arrays[COND_PREFIX + k][position[rows]]
        cond = {}
        for k, array in text.items():
            field, negative = CONDITION_FIELDS[k]
            cond[field], cond[negative] = array, np.repeat(self.null_cond[k][None], n, axis=0)
        if self.time_ids is not None:
            cond["time_ids"] = np.tile(self.time_ids, (n, 1))
        return {"x": x, "label": np.full(n, NULL_LABEL, np.int32), "cond": cond}

    def config(self) -> dict[str, Any]:
        """The data config that rebuilds this source (``make_source``)."""
        return {"name": "t2i_cache", "path": self.path}

    def __repr__(self) -> str:
        return f"T2ICacheSource(len={len(self)}, shards={len(self.shards)}, event_shape={self.event_shape}, cond={self.cond_keys})"


def teacher_encoders(teacher: "SDTeacher", resolution: Optional[int] = None) -> Encoders:
    """``Encoders`` of a loaded Stable Diffusion teacher (``models.hf.load_sd_teacher``): its
    ``encode_prompts`` (``prompt_embeds``; SDXL also ``pooled_prompt_embeds``) and ``encode_images``
    at ``resolution`` pixels (default: the UNet's sample size times the VAE's factor). ``settings``
    name the text encoders and VAE by the sha256 of their configs, and hold SDXL's time ids."""
    factor = teacher.vae_scale_factor
    vae_folder = os.path.join(teacher.info.path, "vae")
    resolution = int(resolution or int(teacher.network.module.unet.sample_size) * factor)
    if resolution % factor:
        raise ConfigError(f"resolution {resolution} must be a multiple of the VAE's downsampling factor {factor} ({vae_folder})")

    def config_sha256(sub: str) -> str:
        return hashlib.sha256(json.dumps(teacher.info.configs[sub], sort_keys=True).encode()).hexdigest()

    encoders = [name for name in ("text_encoder", "text_encoder_2") if name in teacher.info.configs]
    settings = {
        "text_encoders": [f"{os.path.basename(teacher.info.path)}/{name}" for name in encoders],
        "text_encoder_config_sha256": [config_sha256(name) for name in encoders],
        "max_length": int(teacher.tokenizers[0].model_max_length),
        "resolution": resolution,
        "vae_config_sha256": config_sha256("vae"),
        "vae_scaling_factor": float(teacher.vae.scaling_factor),
    }
    if teacher.sdxl:
        settings["time_ids"] = teacher.time_ids(1, (resolution, resolution))[0].tolist()
    return Encoders(teacher.encode_prompts, teacher.encode_images, settings)
