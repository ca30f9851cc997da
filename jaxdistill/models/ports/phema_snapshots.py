"""``jaxdistill phema``: post-hoc EMA reconstruction (EDM2, :mod:`jaxdistill.core.phema`) from
converted EDM2 snapshots.

Each input is a converted ``.npz`` (:mod:`.converted`) whose info records the EMA profile its
source file's name carried, ``ema_std`` (sigma_rel) and ``kimg`` (training length in thousands of
images): what ``jaxdistill convert --from edm2-pkl`` writes for EDM2's raw snapshots
``<prefix>-<kimg>-<std>.pkl``. Times are taken in kimg (the weights depend only on their ratios;
the truncation to whole kimg changes a time by under 1 kimg, 1.5e-5 of EDM2's first 64 Mi-image snapshot).
Snapshots are read one at a time and summed in float64, so memory is about two float32 copies of
the network plus one snapshot.
"""
from __future__ import annotations

import json
import os
import zipfile
import zlib
from typing import Iterator, Optional, Sequence

import numpy as np
from flax import traverse_util

from jaxdistill.core.errors import CheckpointFileError, ConfigError
from jaxdistill.core.paths import as_path
from jaxdistill.core.phema import fit_error, phema_weights, reconstruct, sigma_rel_to_gamma
from jaxdistill.models.ports.converted import FORMAT, read_converted, save_converted


def snapshot_profile(path: str) -> tuple[float, float]:
    """``(kimg, ema_std)`` recorded in the converted snapshot at ``path`` (reads only its info)."""
    if not as_path(path).is_file():
        raise CheckpointFileError(f"no converted snapshot file {path!r}")
    try:
        with as_path(path).open("rb") as f, np.load(f) as data:
            if "format" not in data.files or str(data["format"]) != FORMAT:
                raise CheckpointFileError(f"{path!r} is not a converted checkpoint (no format {FORMAT!r}; write one with 'jaxdistill convert')")
            info = json.loads(str(data["info"]))
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        raise CheckpointFileError(f"{path!r} is not a readable converted checkpoint (.npz): {type(err).__name__}: {err}") from None
    if "kimg" not in info or "ema_std" not in info:
        raise CheckpointFileError(
            f"{path!r} records no EMA profile (info has no 'kimg' / 'ema_std'); convert an EDM2 snapshot named <prefix>-<kimg>-<std>.pkl"
        )
    return float(info["kimg"]), float(info["ema_std"])


def reconstruct_snapshots(paths: Sequence[str], sigma_rel: float, out: str, kimg: Optional[float] = None) -> str:
    """Write to ``out`` the EMA of relative std ``sigma_rel`` at ``kimg`` (default: the latest
    snapshot's) reconstructed from the converted snapshots ``paths``; returns a one-line summary.
    Every input is checked (same network, same parameters) before ``out`` is written, atomically."""
    if not paths:
        raise ConfigError("phema needs at least one converted snapshot; none given")
    if len(set(map(as_path, paths))) != len(paths):
        raise ConfigError("a snapshot is given twice; give each once")
    target_gamma = sigma_rel_to_gamma(sigma_rel)
    profiles = [snapshot_profile(p) for p in paths]
    times = np.array([t for t, _ in profiles])
    gammas = np.array([sigma_rel_to_gamma(s) for _, s in profiles])
    target_time = float(times.max()) if kimg is None else float(kimg)
    weights = phema_weights(times, gammas, target_gamma, target_time)
    used = [i for i in range(len(paths)) if times[i] <= target_time]
    seen: list[tuple[dict, dict]] = []  # (network, info) of each snapshot read so far

    def load() -> Iterator[dict]:
        for i in used:
            network, info, arrays = read_converted(paths[i])
            if seen and network != seen[0][0]:
                first = seen[0][0]
                differ = {k: (network.get(k), first.get(k)) for k in sorted(set(network) | set(first)) if network.get(k) != first.get(k)}
                raise CheckpointFileError(f"{paths[i]!r} holds another network than {paths[used[0]]!r} ((this, that) per differing field: {differ})")
            seen.append((network, info))
            yield arrays

    try:
        flat = reconstruct(load(), weights[used])
    except ConfigError as err:
        if isinstance(err, CheckpointFileError):
            raise
        raise CheckpointFileError(f"the snapshots do not hold the same parameters: {err}") from None
    network, info = seen[0][0], seen[-1][1]
    error = fit_error(times[used], gammas[used], weights[used], target_gamma, target_time)
    sources = [{"source": os.path.basename(paths[i]), "kimg": times[i], "ema_std": profiles[i][1], "weight": float(weights[i])} for i in used]
    info = {**info, "from": "phema", "source": f"{len(used)} snapshots", "kimg": target_time, "ema_std": float(sigma_rel), "phema": sources, "phema_fit_error": error}
    save_converted(out, traverse_util.unflatten_dict(flat, sep="/"), network, info)
    return (
        f"reconstructed EMA std {sigma_rel} at {target_time:g} kimg from {len(used)} snapshots "
        f"(weights {min(weights[used]):.3g} .. {max(weights[used]):.3g}, profile fit error {error:.2e}); wrote {out}"
    )
