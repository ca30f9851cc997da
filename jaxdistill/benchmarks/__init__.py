"""The benchmarks' shared bases (BENCHMARKS.md): data, network, budget and teacher, one short
module per benchmark (``grid25``, ``digits_gmm``, ``digits``). A config file in
``configs/<benchmark>/<method>.py`` starts from its benchmark's ``student(method, arg)`` (or
``teacher(arg)``) and shows every setting that differs from it and from the method's paper
settings.

Config arguments: ``None`` for the benchmark budget, ``"smoke"`` for a run of seconds (tests and
CI); generator methods also take ``<K>step`` (``"4step"``, ``"smoke,4step"``) for a K-step
generator evaluated at 1 and K NFE.
"""
from __future__ import annotations

import re
from typing import Optional

import ml_collections

from jaxdistill.core.errors import ConfigError
from jaxdistill.models.registry import default_network_config
from jaxdistill.objectives import registry

GENERATOR_SECTIONS = ("dmd", "sid", "adversarial")
# The sections whose settings hold the benchmark's teacher-ODE sample set: (size field, NFE field).
PAIR_SET_FIELDS = {"kd": "num_pairs", "dmd": "num_pairs", "adversarial": "num_synthetic", "reflow": "num_pairs", "instaflow": "num_pairs"}
# A few-step generator trained from scratch starts at SiD's generator input level sigma = 2.5
# (Zhou et al. 2024), where it is a broad Gaussian rather than the point x0 = c_skip(80) z ~ 0
# that critics and discriminators collapse onto (docs/methods/vsd.md).
FROM_SCRATCH_INIT_SIGMA = 2.5
# Class labels of a generator trained from scratch by distribution matching are embedded with
# ADM's N(0, 1) table instead of DiT's 0.02, which starts the label's effect ~1e-6 and lets the
# generator ignore it (docs/methods/vsd.md).
FROM_SCRATCH_LABEL_INIT_STD = 1.0


def parse_arg(arg: Optional[str], generator: bool = False) -> tuple[bool, int]:
    """A config argument ``[smoke][,<K>step]`` as (smoke, K); K is 1 unless given, and only
    generator methods take it."""
    parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
    steps = [int(m.group(1)) for p in parts if (m := re.fullmatch(r"(\d+)step", p))]
    rest = [p for p in parts if not re.fullmatch(r"\d+step", p)]
    if len(steps) > 1 or len(rest) > 1 or any(p != "smoke" for p in rest):
        raise ConfigError(f"bad config argument {arg!r}: expected 'smoke'" + (", '<K>step' or both, e.g. 'smoke,4step'" if generator else " or none"))
    if steps and not generator:
        raise ConfigError(f"bad config argument {arg!r}: this config takes no '<K>step' (its student's steps are fixed)")
    if steps and steps[0] < 1:
        raise ConfigError(f"a generator needs at least 1 step, got {steps[0]}")
    return bool(rest), steps[0] if steps else 1


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A run of seconds: 20 updates of 64 samples, scored on 500 samples, without sample plots
    (tests and CI train hundreds of these; ``--config.train.sample_every=10`` draws them)."""
    c.batch_size = 64
    c.train.num_steps = 20
    c.train.log_every = 10
    c.train.checkpoint_every = 10
    c.train.sample_every = 0
    c.train.num_plot_samples = 200
    c.optim.warmup_steps = 5
    c.eval.num_samples = 500
    return c


def with_method(c: ml_collections.ConfigDict, method: str) -> ml_collections.ConfigDict:
    """``c`` switched to ``method``: its section with the paper's settings, no other method's."""
    c.method = method
    for name in ("kd", "denoising"):
        if name in c and name != registry.section(method):
            del c[name]
    c[registry.section(method)] = registry.default_config(method)
    return c


def set_pair_set(c: ml_collections.ConfigDict, size: int, nfe: int) -> None:
    """The benchmark's teacher ODE sample set (KD's pairs, DMD's regression pairs, LADD's pool):
    ``size`` samples of the teacher's Heun sampler at ``nfe`` evaluations."""
    name = registry.section(c.method)
    if name in PAIR_SET_FIELDS:
        c[name][PAIR_SET_FIELDS[name]] = size
        c[name].teacher_nfe = nfe
        c[name].teacher_sampler = "heun"


def without_teacher_weights(c: ml_collections.ConfigDict) -> None:
    """An exact mixture teacher has no weights: nothing starts from them."""
    section = c[registry.section(c.method)]
    for field in ("init_from_teacher", "critic_from_teacher"):
        if field in section:
            section[field] = False


def few_step(c: ml_collections.ConfigDict, steps: int) -> ml_collections.ConfigDict:
    """A ``steps``-step generator, evaluated at 1 and ``steps`` NFE; steps after the first take the
    generator's own earlier outputs, re-noised (DMD2's backward simulation, Yin et al. 2024)."""
    name = registry.section(c.method)
    if name not in GENERATOR_SECTIONS:
        raise ConfigError(f"{c.method!r} does not train a few-step generator; K-step configs apply to the {GENERATOR_SECTIONS} sections")
    c[name].generator_steps = steps
    c.eval.nfes = (1, steps) if steps > 1 else (1,)
    return c


def optimiser_per_stage(c: ml_collections.ConfigDict) -> None:
    """Progressive and guided distillation and InstaFlow restart the optimiser at every stage: its cosine decay
    spans the longest stage and its warm-up at most a tenth of a stage."""
    first, per_stage = registry.settings(c).stage_lengths(int(c.train.num_steps))
    c.optim.decay_steps = max(first, per_stage)
    c.optim.warmup_steps = min(int(c.optim.warmup_steps), max(per_stage // 10, 1))


def mlp(num_classes: int = 0, width: int = 256, depth: int = 3) -> ml_collections.ConfigDict:
    net = default_network_config("mlp")
    net.width, net.depth, net.num_classes = width, depth, num_classes
    return net


def unet(num_classes: int = 10, small: bool = False) -> ml_collections.ConfigDict:
    """A UNet for 8x8 images (~0.4M parameters; ~0.05M ``small``)."""
    net = default_network_config("unet")
    net.num_classes = num_classes
    net.base_channels = 16 if small else 32
    net.channel_mult = (1, 2)
    net.num_res_blocks = 1
    net.attn_resolutions = ()
    net.num_groups = 8
    return net
