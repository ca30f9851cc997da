"""Benchmark presets: the configs behind ``configs/<benchmark>/<method>.py`` and
``jaxdistill quickstart``, kept in the package so an installed library has them too.

Every preset accepts ``arg``: ``None`` for the benchmark budget (BENCHMARKS.md) or
``"smoke"`` for a run of a few seconds used by tests and CI.
"""
from __future__ import annotations

from typing import Optional

import ml_collections

from jaxdistill.config import ConfigError, base_config
from jaxdistill.models.registry import default_network_config

PRESETS = (None, "smoke")


def _check_arg(arg: Optional[str]) -> None:
    if arg not in PRESETS:
        raise ConfigError(f"unknown preset {arg!r}; valid presets: {', '.join(str(p) for p in PRESETS if p)} (or none)")


def _smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    c.batch_size = 64
    c.train.num_steps = 20
    c.train.log_every = 10
    c.train.checkpoint_every = 10
    c.train.num_plot_samples = 200
    c.optim.warmup_steps = 5
    c.eval.num_samples = 500
    c.kd.num_pairs = 256
    c.kd.teacher_nfe = 5
    return c


def with_method(c: ml_collections.ConfigDict, method: str) -> ml_collections.ConfigDict:
    """Switch ``c`` to ``method`` and add that method's config section with its defaults."""
    from jaxdistill.objectives import registry

    c.method = method
    section = registry.section(method)
    if section is not None and section not in c:
        c[section] = registry.default_config(method)
    return c


def mlp_network(num_classes: int = 0, width: int = 256, depth: int = 3) -> ml_collections.ConfigDict:
    net = default_network_config("mlp")
    net.width, net.depth, net.num_classes = width, depth, num_classes
    return net


def unet_network(num_classes: int = 10, smoke: bool = False) -> ml_collections.ConfigDict:
    """A small UNet for 8x8 images (~0.4M parameters; ~0.05M for ``smoke``)."""
    net = default_network_config("unet")
    net.num_classes = num_classes
    net.base_channels = 16 if smoke else 32
    net.channel_mult = (1, 2)
    net.num_res_blocks = 1
    net.attn_resolutions = ()
    net.num_groups = 8
    return net


# --------------------------------------------------------------------- grid25
def grid25_teacher(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """An MLP diffusion teacher trained on samples of the 25-mode grid (EDM)."""
    _check_arg(arg)
    c = base_config()
    c.method = "teacher"
    c.data = ml_collections.ConfigDict({"name": "grid25", "size": 200_000, "seed": 0})
    c.network = mlp_network(width=128)
    c.sigma_data = 2.8  # the per-coordinate std of the grid (sqrt(8 + 0.1^2))
    c.batch_size = 512
    c.optim.lr = 2e-3
    c.optim.decay_steps = 4000
    c.train.num_steps = 4000
    c.train.checkpoint_every = 2000
    c.eval.nfes = (1, 2, 4, 8, 16, 32, 64)
    return _smoke(c) if arg == "smoke" else c


def grid25_kd(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """Knowledge distillation of the exact grid25 teacher into a one-step MLP."""
    c = grid25_teacher(arg)
    c.method = "kd"
    c.teacher.kind = "mixture"
    c.teacher.mixture = "grid25"
    c.eval.nfes = (1,)
    return c


# ------------------------------------------------------------------ digits-gmm
def digits_gmm_kd(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """Knowledge distillation of the exact class-conditional 64-D digits mixture."""
    _check_arg(arg)
    c = base_config()
    c.method = "kd"
    c.data = ml_collections.ConfigDict({"name": "digits_gmm", "size": 50_000, "seed": 0})
    c.teacher.kind = "mixture"
    c.teacher.mixture = "digits_gmm"
    c.network = mlp_network(num_classes=10, width=512, depth=3)
    c.batch_size = 256
    c.optim.lr = 1e-3
    c.optim.decay_steps = 4000
    c.train.num_steps = 4000
    c.train.checkpoint_every = 2000
    c.eval.nfes = (1,)
    return _smoke(c) if arg == "smoke" else c


# ---------------------------------------------------------------------- digits
def digits_teacher(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """A small class-conditional UNet teacher on scikit-learn digits (EDM, label dropout 0.1)."""
    _check_arg(arg)
    c = base_config()
    c.method = "teacher"
    c.data = ml_collections.ConfigDict({"name": "digits"})
    c.network = unet_network(num_classes=10, smoke=arg == "smoke")
    c.batch_size = 128
    c.optim.lr = 1e-3
    c.optim.decay_steps = 2500
    c.train.num_steps = 2500
    c.train.checkpoint_every = 500
    c.eval.nfes = (1, 2, 4, 8, 16, 32)
    c.eval.num_samples = 10_000
    return _smoke(c) if arg == "smoke" else c


def digits_kd(arg: Optional[str] = None, teacher_workdir: str = "runs/digits/teacher") -> ml_collections.ConfigDict:
    """Knowledge distillation of the trained digits teacher into a one-step UNet."""
    c = digits_teacher(arg)
    c.method = "kd"
    c.teacher.kind = "checkpoint"
    c.teacher.workdir = teacher_workdir
    c.kd.num_pairs = 256 if arg == "smoke" else 8192
    c.kd.teacher_nfe = 5 if arg == "smoke" else 17
    c.train.num_steps = 20 if arg == "smoke" else 1500
    c.optim.decay_steps = c.train.num_steps
    c.eval.nfes = (1,)
    return c


# ----------------------------------------------------------------- consistency
CONSISTENCY_METHODS = ("cd", "ct", "ict", "ect")


def _consistency(c: ml_collections.ConfigDict, method: str, network_teacher: bool) -> ml_collections.ConfigDict:
    """Switch a KD benchmark preset to a consistency method (same data, network and budget)."""
    if method not in CONSISTENCY_METHODS:
        raise ConfigError(f"unknown consistency method {method!r}; choose one of {CONSISTENCY_METHODS}")
    c = with_method(c, method)
    c.eval.nfes = (1, 2, 4)
    if not network_teacher:  # the exact mixture has no weights to start from
        c.consistency.init_from_teacher = False
    return c


def grid25_consistency(method: str, arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """CD / CT / iCT / ECT on grid25 (exact mixture teacher for CD), KD's budget: 4000 x 512."""
    return _consistency(grid25_kd(arg), method, network_teacher=False)


def digits_gmm_consistency(method: str, arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """CD / CT / iCT / ECT on the 64-D digits mixture, KD's budget: 4000 x 256."""
    return _consistency(digits_gmm_kd(arg), method, network_teacher=False)


def digits_consistency(method: str, arg: Optional[str] = None, teacher_workdir: str = "runs/digits/teacher") -> ml_collections.ConfigDict:
    """CD / CT / iCT / ECT on digits with the trained UNet teacher, KD's budget: 1500 x 128.
    CD and ECT start from the teacher's weights (as in their papers); CT and iCT from scratch."""
    return _consistency(digits_kd(arg, teacher_workdir), method, network_teacher=True)


def grid25_cd(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    return grid25_consistency("cd", arg)


def grid25_ct(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    return grid25_consistency("ct", arg)


def grid25_ict(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    return grid25_consistency("ict", arg)


def grid25_ect(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    return grid25_consistency("ect", arg)
