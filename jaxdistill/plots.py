"""PNG figures: sample scatter plots / image grids and quality-vs-NFE curves."""
from __future__ import annotations

import io
import math
import os
from typing import Mapping, Optional

import numpy as np
from matplotlib.figure import Figure

from jaxdistill.core.paths import PathLike, as_path, write_atomic


def _subplots(figsize: tuple[float, float]):
    """A figure and its axes outside pyplot: no global backend is set or used, so importing this
    module leaves a notebook's inline plots alone, and no figure stays open."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _finish(fig: Figure, path: PathLike) -> str:
    """Render ``fig`` into memory, then write it to ``path`` (local or ``gs://...``); returns ``path`` as a string."""
    target = as_path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=target.suffix[1:] or "png", dpi=110, bbox_inches="tight")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(buffer.getvalue())
    return os.fspath(path)


def image_grid(images: np.ndarray, ncols: Optional[int] = None) -> np.ndarray:
    """Tile ``[N, H, W, C]`` images in [-1, 1] into one ``[rows*H, cols*W, C]`` array in [0, 1]."""
    n, h, w, c = images.shape
    ncols = ncols or int(math.ceil(math.sqrt(n)))
    nrows = int(math.ceil(n / ncols))
    grid = np.ones((nrows * (h + 1) - 1, ncols * (w + 1) - 1, c), np.float32)
    for i, img in enumerate(np.clip((images + 1.0) / 2.0, 0.0, 1.0)):
        r, q = divmod(i, ncols)
        grid[r * (h + 1) : r * (h + 1) + h, q * (w + 1) : q * (w + 1) + w] = img
    return grid


def save_image_grid(images: np.ndarray, path: PathLike, ncols: Optional[int] = None) -> str:
    """Write ``image_grid(images, ncols)`` pixel for pixel as an 8-bit PNG (grey or RGB), atomically
    (``write_atomic``: a failure leaves ``path`` as it was); returns ``path`` as a string."""
    from PIL import Image  # matplotlib's own image backend

    grid = np.round(image_grid(np.asarray(images, np.float32), ncols) * 255.0).astype(np.uint8)
    picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    write_atomic(path, lambda f: picture.save(f, format="PNG"))
    return os.fspath(path)


def save_sample_figure(samples: np.ndarray, path: PathLike, *, title: str = "", reference: Optional[np.ndarray] = None) -> str:
    """A scatter plot for 2-D samples, an image grid (first 100) for image-shaped ones."""
    samples = np.asarray(samples)
    if samples.ndim == 2 and samples.shape[1] == 2:
        fig, ax = _subplots((4.5, 4.5))
        if reference is not None:
            ax.scatter(reference[:, 0], reference[:, 1], s=1, c="0.75", label="data")
        ax.scatter(samples[:, 0], samples[:, 1], s=1, c="tab:blue", label="samples")
        ax.set_aspect("equal")
    else:
        if samples.ndim == 2:  # flat vectors: show as square images when possible
            side = int(round(math.sqrt(samples.shape[1])))
            samples = samples.reshape(-1, side, side, 1) if side * side == samples.shape[1] else samples[:, None, :, None]
        grid = image_grid(samples[:100])
        fig, ax = _subplots((5, 5))
        ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1)
        ax.axis("off")
    ax.set_title(title)
    return _finish(fig, path)


def save_quality_vs_nfe(
    curves: Mapping[str, Mapping[int, float]],
    path: PathLike,
    *,
    metric: str,
    points: Optional[Mapping[str, Mapping[int, float]]] = None,
    floor: Optional[float] = None,
    title: str = "",
) -> str:
    """Lines for samplers (teacher curves), markers for students, a dashed noise floor."""
    fig, ax = _subplots((6, 4))
    for name, values in curves.items():
        nfes = sorted(values)
        ax.plot(nfes, [values[k] for k in nfes], marker=".", label=name)
    for name, values in (points or {}).items():
        nfes = sorted(values)
        ax.scatter(nfes, [values[k] for k in nfes], marker="*", s=120, zorder=5, label=name)
    if floor is not None:
        ax.axhline(floor, color="k", ls="--", lw=1, label="noise floor")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("NFE")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _finish(fig, path)
