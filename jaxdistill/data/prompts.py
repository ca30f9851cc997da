"""Prompt sources for text-to-image distillation: a text file, JSONL, or a TFDS captions dataset.

Each source is a random-access sequence of records ``{"prompt": str, "image": ...}`` where
``image`` is ``None`` (text-only data, e.g. SwiftBrush), a path to an image file (JSONL) or a
``uint8 [H, W, C]`` array (TFDS), for methods that need real images (DMD2's GAN term, ADD).
``describe()`` names the source and its content (a file's name and sha256, a dataset's name,
split and size): ``jaxdistill cache`` records it in its manifest and refuses to add shards of other prompts.

``open_prompts(spec, ...)`` picks the source from ``spec``: ``tfds:NAME[:SPLIT]``, a ``*.jsonl``
file, or any other file read as plain text (one prompt a line, blank lines skipped).
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from jaxdistill.core.errors import ConfigError

PromptRecord = dict[str, Any]
DEFAULT_FIELDS = ("prompt", "caption")  # JSONL: the first of these a line holds is its prompt
TFDS_PREFIX = "tfds:"


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _require_file(path: str) -> None:
    if not os.path.isfile(path):
        what = "a folder" if os.path.isdir(path) else "missing"
        raise ConfigError(f"prompt file {path!r} is {what}; expected a text file (one prompt a line) or a .jsonl file")


class ListPrompts:
    """Prompts (and optional images) held in lists; the base of the file sources."""

    def __init__(self, prompts: Sequence[str], images: Optional[Sequence[Any]] = None, description: Optional[Mapping[str, Any]] = None):
        self.prompts = list(prompts)
        self.images = None if images is None else list(images)
        if self.images is not None and len(self.images) != len(self.prompts):
            raise ValueError(f"{len(self.images)} images for {len(self.prompts)} prompts")
        self.description = dict(description or {"kind": "list", "sha256": hashlib.sha256("\n".join(self.prompts).encode()).hexdigest()})

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, index: int) -> PromptRecord:
        return {"prompt": self.prompts[index], "image": None if self.images is None else self.images[index]}

    def describe(self) -> dict[str, Any]:
        """What the prompts are, as recorded in a cache manifest."""
        return {**self.description, "count": len(self)}


class TextFilePrompts(ListPrompts):
    """One prompt a line of a UTF-8 text file; surrounding whitespace is stripped and blank lines skipped."""

    def __init__(self, path: str):
        _require_file(path)
        with open(path, encoding="utf-8") as f:
            prompts = [line.strip() for line in f if line.strip()]
        if not prompts:
            raise ConfigError(f"prompt file {path!r} holds no prompts (blank lines are skipped); expected one prompt a line")
        super().__init__(prompts, description={"kind": "text", "file": os.path.basename(path), "sha256": _file_sha256(path)})


class JsonlPrompts(ListPrompts):
    """One JSON object a line: the prompt under ``field`` (default: the first of ``"prompt"``,
    ``"caption"`` the line holds) and, with ``image_field``, the path of its image (relative to
    the JSONL file's folder unless absolute), checked to exist here. Blank lines are skipped."""

    def __init__(self, path: str, field: Optional[str] = None, image_field: Optional[str] = None):
        _require_file(path)
        fields = (field,) if field else DEFAULT_FIELDS
        folder = os.path.dirname(os.path.abspath(path))
        prompts, images = [], []
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                where = f"{path} line {number}"
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ConfigError(f"{where} is not valid JSON ({err.msg}); expected one JSON object a line") from None
                if not isinstance(entry, dict):
                    raise ConfigError(f"{where} is a JSON {type(entry).__name__}; expected an object with a prompt field {list(fields)}")
                prompt = next((entry[k] for k in fields if k in entry), None)
                if not isinstance(prompt, str):
                    found = "no" if prompt is None else f"a {type(prompt).__name__} in the"
                    raise ConfigError(f"{where} has {found} field {' or '.join(map(repr, fields))} (a string); fields present: {sorted(entry)}")
                prompts.append(prompt)
                if image_field:
                    image = entry.get(image_field, None)
                    if not isinstance(image, str):
                        raise ConfigError(f"{where} has no image path under {image_field!r}; fields present: {sorted(entry)}")
                    image = os.path.join(folder, image)
                    if not os.path.isfile(image):
                        raise ConfigError(f"{where}: image {image!r} does not exist")
                    images.append(image)
        if not prompts:
            raise ConfigError(f"prompt file {path!r} holds no prompts (blank lines are skipped); expected one JSON object a line")
        description = {"kind": "jsonl", "file": os.path.basename(path), "sha256": _file_sha256(path), "field": field, "image_field": image_field}
        super().__init__(prompts, images if image_field else None, description)


def _feature(record: Mapping[str, Any], path: str, where: str) -> Any:
    """The value at the '/'-separated ``path`` of a nested TFDS record."""
    value: Any = record
    for key in path.split("/"):
        if not isinstance(value, Mapping) or key not in value:
            present = sorted(value) if isinstance(value, Mapping) else type(value).__name__
            raise ConfigError(f"{where} has no feature {path!r} (at {key!r}: found {present})")
        value = value[key]
    return value


def _as_text(value: Any, where: str) -> str:
    """A TFDS text feature as ``str``: bytes decoded as UTF-8; a sequence of captions gives its first."""
    if isinstance(value, (list, tuple, np.ndarray)) and not isinstance(value, (str, bytes)):
        if len(value) == 0:
            raise ConfigError(f"{where} holds an empty list of captions")
        value = value[0]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if not isinstance(value, str):
        raise ConfigError(f"{where} holds a {type(value).__name__}, not text")
    return value


class TfdsPrompts:
    """Captions of a TFDS split read through ``tfds.data_source`` (ArrayRecord, no TensorFlow):
    the text at ``field`` (a '/'-path into nested features, e.g. ``captions/text`` for
    ``coco_captions``; a list of captions gives its first) and, with ``image_field``, the image
    (``uint8 [H, W, C]``). Records are read lazily. ``source`` replaces the TFDS dataset (tests:
    a ``tfds.testing.mock_data`` source)."""

    def __init__(
        self,
        name: str,
        split: str = "train",
        field: str = "caption",
        image_field: Optional[str] = None,
        data_dir: Optional[str] = None,
        source: Optional[Any] = None,
    ):
        if source is None:
            import tensorflow_datasets as tfds

            try:
                source = tfds.data_source(name, split=split, data_dir=data_dir)
            except Exception as err:  # tfds raises several kinds for an unknown or unprepared dataset
                raise ConfigError(f"TFDS dataset {name!r} split {split!r}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
        if len(source) == 0:
            raise ConfigError(f"TFDS dataset {name!r} split {split!r} holds no records")
        self.source, self.name, self.split = source, name, split
        self.field, self.image_field = field, image_field

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> PromptRecord:
        record = self.source[int(index)]
        where = f"TFDS {self.name!r} {self.split} record {index}"
        prompt = _as_text(_feature(record, self.field, where), where)
        image = None if self.image_field is None else np.asarray(_feature(record, self.image_field, where))
        return {"prompt": prompt, "image": image}

    def describe(self) -> dict[str, Any]:
        """What the prompts are, as recorded in a cache manifest."""
        return {"kind": "tfds", "dataset": self.name, "split": self.split, "field": self.field, "image_field": self.image_field, "count": len(self)}


def open_prompts(spec: str, field: Optional[str] = None, image_field: Optional[str] = None, data_dir: Optional[str] = None):
    """The prompt source ``spec`` names: ``tfds:NAME[:SPLIT]`` (``field`` default ``caption``),
    a ``.jsonl`` file (``field`` default ``prompt`` / ``caption``), or a text file (one prompt a
    line; no ``field`` and no images)."""
    if spec.startswith(TFDS_PREFIX):
        name, _, split = spec[len(TFDS_PREFIX):].partition(":")
        return TfdsPrompts(name, split or "train", field or "caption", image_field, data_dir)
    if spec.endswith(".jsonl"):
        return JsonlPrompts(spec, field, image_field)
    if field or image_field:
        raise ConfigError(f"prompt file {spec!r} is read as plain text (one prompt a line), which has no fields; use a .jsonl file for a prompt or image field")
    return TextFilePrompts(spec)
