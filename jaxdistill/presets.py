"""Benchmark presets: the configs behind ``configs/<benchmark>/<method>.py`` and
``jaxdistill quickstart``, kept in the package so an installed library has them too.

Every preset accepts ``arg``: ``None`` for the benchmark budget (BENCHMARKS.md) or
``"smoke"`` for a run of a few seconds used by tests and CI. The config files of the one-step
generator methods also take ``Kstep`` (``4step``, ``smoke,4step``): the same preset with a K-step
generator (``few_step``).
"""
from __future__ import annotations

import re
from typing import Optional

import ml_collections

from jaxdistill.config import base_config
from jaxdistill.core.errors import ConfigError
from jaxdistill.models.registry import default_network_config
from jaxdistill.objectives import guided, registry

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
    # 5,000 rather than BENCHMARKS.md's 10,000: the UNet costs ~100x an exact mixture per sample
    # on a 2-core CPU. The leaderboard scores digits at this count, so `jaxdistill eval` agrees.
    c.eval.num_samples = 5000
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


# ------------------------------------------------------- shortcut and MeanFlow
FLOW_MAP_METHODS = ("shortcut", "meanflow")


def _flow_map(c: ml_collections.ConfigDict, method: str) -> ml_collections.ConfigDict:
    """Switch a KD benchmark preset to shortcut models or MeanFlow (same data, network and budget)
    on the rectified flow, distilling the teacher's velocity (``target="teacher"``) from scratch."""
    if method not in FLOW_MAP_METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {FLOW_MAP_METHODS}")
    c = with_method(c, method)
    c.process = ml_collections.ConfigDict({"name": "rectified_flow"})
    c[method].target = "teacher"
    if method == "shortcut":
        # Self-consistency targets from the live weights, not the EMA (paper): each of the log2(128) = 7
        # bootstrap levels lags the EMA's ~1/(1 - 0.999) = 1000 steps, too slow for a 4000-step budget
        # (grid25: 1-NFE sw2 1.41 with EMA targets, 0.142 without).
        c.shortcut.target_ema = False
    c.eval.nfes = (1, 2, 4)
    return c


def grid25_shortcut(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """Shortcut model on grid25 distilling the exact mixture's velocity, KD's budget: 4000 x 512."""
    return _flow_map(grid25_kd(arg), "shortcut")


def digits_gmm_shortcut(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """Shortcut model on the 64-D digits mixture, KD's budget: 4000 x 256."""
    return _flow_map(digits_gmm_kd(arg), "shortcut")


def digits_shortcut(arg: Optional[str] = None, teacher_workdir: str = "runs/digits/teacher") -> ml_collections.ConfigDict:
    """Shortcut model on digits with the trained (EDM) UNet teacher re-parameterised onto the
    rectified flow, KD's budget: 1500 x 128."""
    return _flow_map(digits_kd(arg, teacher_workdir), "shortcut")


def grid25_meanflow(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """MeanFlow on grid25 distilling the exact mixture's velocity, KD's budget: 4000 x 512."""
    return _flow_map(grid25_kd(arg), "meanflow")


def digits_gmm_meanflow(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """MeanFlow on the 64-D digits mixture, KD's budget: 4000 x 256."""
    return _flow_map(digits_gmm_kd(arg), "meanflow")


def digits_meanflow(arg: Optional[str] = None, teacher_workdir: str = "runs/digits/teacher") -> ml_collections.ConfigDict:
    """MeanFlow on digits with the trained (EDM) UNet teacher re-parameterised onto the
    rectified flow, KD's budget: 1500 x 128."""
    return _flow_map(digits_kd(arg, teacher_workdir), "meanflow")


# ------------------------------------------------ progressive and guided distillation
def _halving(c: ml_collections.ConfigDict, method: str, start_steps: int, network_teacher: bool, ema_decay: float, smoke: bool) -> ml_collections.ConfigDict:
    """Switch a KD benchmark preset (same data, network, batch and updates) to ``pd`` / ``guided``.

    ``start_steps`` (N_0) halves to one step over the run (smoke: 8 -> 1). A student of an exact
    mixture starts from scratch, so its first phase (PD stage 0 / guided stage one) also learns
    the denoiser: it gets a third of the updates, the later stages share the rest equally (with
    a network teacher the student starts from its weights and all phases are equal). Each stage
    restarts the optimiser (progressive.py), so warm-up and cosine decay (over the longest
    phase) restart per stage; ``ema_decay`` lets the EMA forget a stage's start within a stage.
    """
    c = with_method(c, method)
    section = c[method]
    section.start_steps = 8 if smoke else start_steps
    section.init_from_teacher = network_teacher  # the exact mixture has no weights to start from
    first_phase = 0 if network_teacher or smoke else int(c.train.num_steps) // 3
    c.eval.nfes = (1, 2, 4)
    if method == "guided":
        c.eval.guidance = guided.DEFAULT_GUIDANCE
        section.stage_one_steps = first_phase
    else:
        section.first_stage_steps = first_phase
    first, per_stage = registry.settings(c).stage_lengths(int(c.train.num_steps))
    c.optim.decay_steps = max(first, per_stage)
    c.optim.warmup_steps = min(int(c.optim.warmup_steps), max(per_stage // 10, 1))
    c.ema_decay = ema_decay
    if smoke and "size" in c.data:  # seconds, not minutes, for the protocol and CLI tests
        c.data.size = 4096
        c.network.width = min(int(c.network.width), 128)
    return c


def grid25_pd(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """Progressive distillation of the exact grid25 mixture, 64 -> 1 DDIM steps in 6 stages
    (1333 + 5 x 533 updates; KD's budget: 4000 x 512)."""
    return _halving(grid25_kd(arg), "pd", 64, False, 0.995, arg == "smoke")


def digits_gmm_pd(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """Progressive distillation of the exact 64-D digits mixture (conditional, unguided),
    64 -> 1 steps in 6 stages (1333 + 5 x 533 updates; KD's budget: 4000 x 256)."""
    return _halving(digits_gmm_kd(arg), "pd", 64, False, 0.995, arg == "smoke")


def digits_pd(arg: Optional[str] = None, teacher_workdir: str = "runs/digits/teacher") -> ml_collections.ConfigDict:
    """Progressive distillation of the trained digits UNet (student starts from its weights),
    32 -> 1 steps in 5 stages of 300 updates (KD's budget: 1500 x 128)."""
    return _halving(digits_kd(arg, teacher_workdir), "pd", 32, True, 0.99, arg == "smoke")


def digits_gmm_guided(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """Guided distillation of the exact class-conditional digits mixture: a w-conditioned
    student (stage one, 1333 updates), then 32 -> 1 steps in 5 PD stages of 533 updates
    (KD's budget: 4000 x 256); sampled at eval.guidance = 2 (our convention)."""
    return _halving(digits_gmm_kd(arg), "guided", 32, False, 0.995, arg == "smoke")


def digits_guided(arg: Optional[str] = None, teacher_workdir: str = "runs/digits/teacher") -> ml_collections.ConfigDict:
    """Guided distillation of the trained digits UNet (student starts from its weights):
    stage one 300 updates, then 16 -> 1 steps in 4 PD stages of 300 (KD's budget: 1500 x 128)."""
    return _halving(digits_kd(arg, teacher_workdir), "guided", 16, True, 0.99, arg == "smoke")


# ---------------------------------------- VSD / DMD / DMD2 / f-distill (dmd.py)
DISTRIBUTION_MATCHING_METHODS = ("vsd", "dmd", "dmd2", "fdistill")
# A generator trained from scratch and evaluated at t_max starts as (nearly) a point: the network's
# output layer is zero-initialised, so x0 = c_skip(80) z ~ 0. Critics and discriminators fitted to a
# point let VSD, ADD and LADD collapse onto one or a few grid25 modes (mode coverage 0.04-0.16 at the
# full budget). Generators of the exact mixtures (which have no weights to start from) therefore take
# SiD's generator input level sigma = 2.5 (Zhou et al. 2024), where the initial generator is a broad
# Gaussian; students of network teachers start from the teacher at t_max as in their papers.
FROM_SCRATCH_INIT_SIGMA = 2.5
# A generator trained from scratch by distribution matching learns its labels only through its own
# output's dependence on them. With DiT's 0.02 label table that dependence starts ~1e-6 (against a
# time embedding of order 1); in the first ~100 VSD updates the MLP's residual stream grew ~1000x
# while it stayed there, and it never grew after (experiments/generator_trace.py). The
# digits_gmm VSD/DMD samples ignored the label (class match 0.10, chance). ADM's N(0, 1) table gives
# a label effect of 0.35-0.5 within 600 updates and class match 0.99 / 1.0 at the full budget.
# Regression objectives (KD) read labels from their targets and keep DiT's default.
FROM_SCRATCH_LABEL_INIT_STD = 1.0


def _generator_from_scratch(c: ml_collections.ConfigDict) -> None:
    """Settings of a generator (and critic) with no teacher weights to start from."""
    c.network.label_init_std = FROM_SCRATCH_LABEL_INIT_STD


def _distribution_matching(c: ml_collections.ConfigDict, method: str, network_teacher: bool) -> ml_collections.ConfigDict:
    """Switch a KD benchmark preset (same data, network, batch and generator updates) to a
    distribution-matching method; DMD's regression pairs are KD's pair set (same size and
    teacher sampler). Generator and critic start from the teacher's weights when it has any."""
    if method not in DISTRIBUTION_MATCHING_METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {DISTRIBUTION_MATCHING_METHODS}")
    c = with_method(c, method)
    c.dmd.init_from_teacher = c.dmd.critic_from_teacher = network_teacher
    # DMD's regression pairs are teacher ODE solutions from the prior at t_max, so its generator starts there.
    c.dmd.init_sigma = 0.0 if network_teacher or method == "dmd" else FROM_SCRATCH_INIT_SIGMA
    if not network_teacher:
        _generator_from_scratch(c)
    c.dmd.num_pairs, c.dmd.teacher_nfe = int(c.kd.num_pairs), int(c.kd.teacher_nfe)
    c.eval.nfes = (1,)
    return c


def grid25_distribution_matching(method: str, arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """VSD / DMD / DMD2 / f-distill of the exact grid25 mixture (generator and critic from scratch),
    KD's budget: 4000 generator updates x 512."""
    return _distribution_matching(grid25_kd(arg), method, network_teacher=False)


def digits_gmm_distribution_matching(method: str, arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """VSD / DMD / DMD2 / f-distill of the exact 64-D digits mixture, KD's budget: 4000 x 256."""
    return _distribution_matching(digits_gmm_kd(arg), method, network_teacher=False)


def digits_distribution_matching(method: str, arg: Optional[str] = None, teacher_workdir: str = "runs/digits/teacher") -> ml_collections.ConfigDict:
    """VSD / DMD / DMD2 / f-distill of the trained digits UNet (generator and critic from its
    weights), KD's budget: 1500 x 128."""
    return _distribution_matching(digits_kd(arg, teacher_workdir), method, network_teacher=True)


def grid25_vsd(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    return grid25_distribution_matching("vsd", arg)


def grid25_dmd(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    return grid25_distribution_matching("dmd", arg)


def grid25_dmd2(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    return grid25_distribution_matching("dmd2", arg)


def grid25_fdistill(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    return grid25_distribution_matching("fdistill", arg)


# ---- few-step generators (distribution matching and score identity)
GENERATOR_SECTIONS = ("dmd", "sid", "adversarial")


def few_step(c: ml_collections.ConfigDict, steps: int) -> ml_collections.ConfigDict:
    """A generator preset with a ``steps``-step generator, evaluated at 1 and ``steps`` NFE; same
    budget and settings otherwise. Steps after the first take G's own earlier outputs, re-noised
    (the backward simulation of DMD2's multi-step generator, Yin et al. 2024)."""
    section = registry.section(c.method)
    if section not in GENERATOR_SECTIONS:
        raise ConfigError(f"{c.method!r} does not train a few-step generator; K-step presets apply to {GENERATOR_SECTIONS} methods")
    if steps < 1:
        raise ConfigError(f"a generator needs at least 1 step, got {steps}")
    c[section].generator_steps = steps
    c.eval.nfes = (1, steps) if steps > 1 else (1,)
    return c


def split_steps(arg: Optional[str]) -> tuple[Optional[str], int]:
    """A generator config file's argument ``[smoke][,<K>step]`` as (preset, K); K is 1 unless given."""
    parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
    matches = [(p, re.fullmatch(r"(\d+)step", p)) for p in parts]
    steps = [int(m.group(1)) for _, m in matches if m]
    rest = [p for p, m in matches if not m]
    if len(steps) > 1 or len(rest) > 1:
        raise ConfigError(f"bad preset {arg!r}: expected at most one of {PRESETS[1:]} and one '<K>step', e.g. 'smoke,4step'")
    preset = rest[0] if rest else None
    _check_arg(preset)
    return preset, (steps[0] if steps else 1)


# ---- ADD / LADD (adversarial.py)
ADVERSARIAL_METHODS = ("add", "ladd")


# digits_gmm ADD and LADD students (GAN-only from scratch) train at lr 1e-4 instead of KD's 1e-3. ADD: at 1e-3
# the generator's residual stream reached ~240 by update 150 and the full-budget student ignored
# its labels (SW2 0.94, class match 0.10, 2 of 10 modes at NFE 1); at 1e-4 the stream stays below
# ~35 over the first 400 updates (experiments/generator_trace.py) and the student reaches SW2
# 0.18, class match 0.91, every mode (NFE 4: SW2 0.17, class match 0.44, 6 of 10 modes).
DIGITS_GMM_ADVERSARIAL_LR = 1e-4
# LADD students of the exact mixtures: discriminator noise ln(s / sigma_data) ~ N(-1, 1) instead of
# the paper's N(1, 1), and 5 discriminator updates per student update (TTUR, as DMD2's critic)
# instead of 1. At the paper's levels on grid25 (s ~ 2.7 sigma_data = 7.6 on average) the 25 modes
# (spacing 2, std 0.1) blur into one blob, so the heads can hardly tell a mode's share; with one
# update they also trail the student, and some modes ended with under a fifth of their share.
# SW2 / mode coverage at NFE 1 (NFE 4), 3 seeds (the results table): paper 0.78 [0.68, 0.87] /
# 0.76 [0.76, 0.8] (0.67 [0.56, 0.83] / 0.88 [0.84, 0.92]); ours 0.59 [0.46, 0.86] / 1.0 [0.92, 1.0]
# (0.38 [0.33, 0.38] / 1.0 [1.0, 1.0]). One seed each (`jaxdistill eval`): N(0, 1) 0.77 / 0.88,
# N(-1, 1) 0.54 / 0.88, N(-2, 1) 0.83 / 0.92, N(1, 1) with 5 updates 0.71 / 0.80 (0.34 / 0.96),
# N(-1, 1) with 5 updates and a 4x head lr 1.05 / 0.76 (0.39 / 1.0). digits_gmm (with
# DIGITS_GMM_ADVERSARIAL_LR): paper levels 0.41 / 0.1; ours 0.23 / 0.5, class match 0.41 (NFE 4
# 0.18 / 0.2, 0.14): better, still far from every mode.
FROM_SCRATCH_LADD_NOISE_MEAN = -1.0
FROM_SCRATCH_LADD_DISCRIMINATOR_UPDATES = 5


def _adversarial(c: ml_collections.ConfigDict, method: str, network_teacher: bool, lr: Optional[float] = None) -> ml_collections.ConfigDict:
    """Switch a KD benchmark preset (same data, network, batch and student updates) to ADD / LADD
    with the papers' 4-step student (evaluated at 1 and 4 NFE); LADD's synthetic pool is KD's pair
    set (same size and teacher sampler). The student starts from the teacher's weights when it has
    any. ``lr`` overrides the KD preset's learning rate (student and discriminator head)."""
    if method not in ADVERSARIAL_METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {ADVERSARIAL_METHODS}")
    c = with_method(c, method)
    if lr is not None:
        c.optim.lr = lr
    section = c.adversarial
    section.init_from_teacher = network_teacher  # the exact mixture has no weights to start from
    section.init_sigma = 0.0 if network_teacher else FROM_SCRATCH_INIT_SIGMA
    if not network_teacher:
        _generator_from_scratch(c)
        # ADD's distillation term pulls x̂ toward the teacher's denoising of x̂ re-noised at t ~ the
        # critic's range; for a student that does not start at the teacher that target averages
        # over modes. grid25, 4000 x 512 (SW2 / mode coverage at NFE 1): the paper's lambda = 2.5
        # 2.80 / 0.04, its t capped at sigma <= 2.5 0.67 / 0.88, at sigma <= 0.32 0.80 / 0.76,
        # lambda = 0 0.48 / 0.96 (1.0 at NFE 4). Students of network teachers keep lambda = 2.5.
        section.distill_weight = 0.0
        if method == "ladd":
            section.noise_mean = FROM_SCRATCH_LADD_NOISE_MEAN
            section.critic_schedule = ((0, FROM_SCRATCH_LADD_DISCRIMINATOR_UPDATES),)
    section.num_synthetic, section.teacher_nfe = int(c.kd.num_pairs), int(c.kd.teacher_nfe)
    section.teacher_sampler = c.kd.teacher_sampler
    return few_step(c, int(section.generator_steps))


def grid25_add(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """ADD of the exact grid25 mixture (student from scratch), KD's budget: 4000 x 512."""
    return _adversarial(grid25_kd(arg), "add", network_teacher=False)


def grid25_ladd(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """LADD of the exact grid25 mixture (student from scratch), KD's budget: 4000 x 512."""
    return _adversarial(grid25_kd(arg), "ladd", network_teacher=False)


def digits_gmm_add(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """ADD of the exact 64-D digits mixture (student from scratch), KD's budget: 4000 x 256."""
    return _adversarial(digits_gmm_kd(arg), "add", network_teacher=False, lr=DIGITS_GMM_ADVERSARIAL_LR)


def digits_gmm_ladd(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """LADD of the exact 64-D digits mixture (student from scratch), KD's budget: 4000 x 256."""
    return _adversarial(digits_gmm_kd(arg), "ladd", network_teacher=False, lr=DIGITS_GMM_ADVERSARIAL_LR)


def digits_add(arg: Optional[str] = None, teacher_workdir: str = "runs/digits/teacher") -> ml_collections.ConfigDict:
    """ADD of the trained digits UNet (student from its weights), KD's budget: 1500 x 128, with a
    discriminator head at every feature position, as ADD's heads score every DINOv2 token. With
    heads on position-averaged features the student collapsed to one blurred pattern (FD-digits
    924, class accuracy 0.10 at NFE 1); per position: FD-digits 92.9, class accuracy 1.0."""
    c = _adversarial(digits_kd(arg, teacher_workdir), "add", network_teacher=True)
    c.adversarial.head_per_position = True
    return c


def digits_ladd(arg: Optional[str] = None, teacher_workdir: str = "runs/digits/teacher") -> ml_collections.ConfigDict:
    """LADD of the trained digits UNet (student from its weights), KD's budget: 1500 x 128."""
    return _adversarial(digits_kd(arg, teacher_workdir), "ladd", network_teacher=True)


# ---- SiD / SiDA / SIM (sid.py)
SCORE_IDENTITY_METHODS = ("sid", "sida", "sim")
# digits_gmm students train at lr 1e-4 instead of KD's 1e-3: at 1e-3 the SiD generator's residual
# stream grew from ~8 to ~7600 between updates 50 and 150 (experiments/generator_trace.py) and the
# label effect fell back to ~3e-5: its samples ignored their labels (class match 0.10); at 1e-4
# the stream stays below ~40 and the label effect reaches 0.5 within 250 updates. grid25 keeps KD's
# 2e-3: at 1e-4 SIM's grid25 SW2 was 1.03, against 0.44 and 0.47 in two runs at 2e-3.
DIGITS_GMM_SCORE_IDENTITY_LR = 1e-4
# grid25's SiD uses alpha = 1 (SiDA's value) instead of the paper's 1.2. Over 3 seeds (median
# [min, max]) SW2 went from 0.58 [0.42, 0.59] at 1.2 to 0.29 [0.28, 0.33] at 1, and mode coverage
# from 0.88 [0.76, 0.96] to 1.0 [0.96, 1.0]. digits_gmm keeps 1.2 (SW2 0.20, every mode).
GRID25_SID_ALPHA = 1.0


def _score_identity(
    c: ml_collections.ConfigDict, method: str, network_teacher: bool, dim: int, lr: Optional[float] = None, alpha: Optional[float] = None
) -> ml_collections.ConfigDict:
    """Switch a KD benchmark preset (same data, network, batch and generator updates) to SiD /
    SiDA / SIM with a one-step generator. Generator and critic start from the teacher's weights
    when it has any (as in the papers); SiDA's real data are the benchmark's training data.
    ``lr`` overrides the KD preset's learning rate (generator and critic), ``alpha`` the method's
    alpha."""
    if method not in SCORE_IDENTITY_METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {SCORE_IDENTITY_METHODS}")
    c = with_method(c, method)
    c.sid.init_from_teacher = c.sid.critic_from_teacher = network_teacher
    if not network_teacher:
        _generator_from_scratch(c)
    if lr is not None:
        c.optim.lr = lr
    if alpha is not None:
        c.sid.alpha = alpha
    if method == "sida":
        # SiDA's critic-side GAN weight (1 on CIFAR-10, d = 3072) scaled by d / 3072 keeps the paper's
        # balance of GAN and denoising terms in the critic's loss; at weight 1 the GAN term swamps
        # the denoising loss on grid25 (d = 2; 800-update trial: sw2 1.63 at weight 1, 0.80 at 2 / 3072).
        c.sid.adv_critic_weight = dim / 3072
    c.eval.nfes = (1,)
    return c


def grid25_sid(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """SiD of the exact grid25 mixture (generator and critic from scratch), KD's budget: 4000 x 512."""
    return _score_identity(grid25_kd(arg), "sid", network_teacher=False, dim=2, alpha=GRID25_SID_ALPHA)


def grid25_sida(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """SiDA of the exact grid25 mixture (generator and critic from scratch), KD's budget: 4000 x 512."""
    return _score_identity(grid25_kd(arg), "sida", network_teacher=False, dim=2)


def grid25_sim(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """SIM of the exact grid25 mixture (generator and critic from scratch), KD's budget: 4000 x 512."""
    return _score_identity(grid25_kd(arg), "sim", network_teacher=False, dim=2)


def digits_gmm_sid(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """SiD of the exact 64-D digits mixture (from scratch), KD's budget: 4000 x 256."""
    return _score_identity(digits_gmm_kd(arg), "sid", network_teacher=False, dim=64, lr=DIGITS_GMM_SCORE_IDENTITY_LR)


def digits_gmm_sida(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """SiDA of the exact 64-D digits mixture (from scratch), KD's budget: 4000 x 256."""
    return _score_identity(digits_gmm_kd(arg), "sida", network_teacher=False, dim=64, lr=DIGITS_GMM_SCORE_IDENTITY_LR)


def digits_gmm_sim(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """SIM of the exact 64-D digits mixture (from scratch), KD's budget: 4000 x 256."""
    return _score_identity(digits_gmm_kd(arg), "sim", network_teacher=False, dim=64, lr=DIGITS_GMM_SCORE_IDENTITY_LR)


def digits_sid(arg: Optional[str] = None, teacher_workdir: str = "runs/digits/teacher") -> ml_collections.ConfigDict:
    """SiD of the trained digits UNet (generator and critic from its weights), KD's budget: 1500 x 128."""
    return _score_identity(digits_kd(arg, teacher_workdir), "sid", network_teacher=True, dim=64)


def digits_sida(arg: Optional[str] = None, teacher_workdir: str = "runs/digits/teacher") -> ml_collections.ConfigDict:
    """SiDA of the trained digits UNet (generator and critic from its weights), KD's budget: 1500 x 128."""
    return _score_identity(digits_kd(arg, teacher_workdir), "sida", network_teacher=True, dim=64)


def digits_sim(arg: Optional[str] = None, teacher_workdir: str = "runs/digits/teacher") -> ml_collections.ConfigDict:
    """SIM of the trained digits UNet (generator and critic from its weights), KD's budget: 1500 x 128."""
    return _score_identity(digits_kd(arg, teacher_workdir), "sim", network_teacher=True, dim=64)


# ------------------------------------------- any one-step method of a trained grid25 teacher
def grid25_of_trained_teacher(method: str, teacher_workdir: str, arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """``method``'s grid25 preset distilling a trained grid25 teacher checkpoint (``quickstart``):
    the student (and critic) start from the teacher's weights, as on digits."""
    c = grid25_kd(arg)
    c.teacher.kind = "checkpoint"
    c.teacher.workdir = teacher_workdir
    if method == "kd":
        return c
    if method in CONSISTENCY_METHODS:
        return _consistency(c, method, network_teacher=True)
    if method in DISTRIBUTION_MATCHING_METHODS:
        return _distribution_matching(c, method, network_teacher=True)
    if method in SCORE_IDENTITY_METHODS:
        return _score_identity(c, method, network_teacher=True, dim=2)
    if method in ADVERSARIAL_METHODS:
        return _adversarial(c, method, network_teacher=True)
    raise ConfigError(
        f"no trained-teacher grid25 preset for {method!r}; choose kd or one of "
        f"{CONSISTENCY_METHODS + DISTRIBUTION_MATCHING_METHODS + SCORE_IDENTITY_METHODS + ADVERSARIAL_METHODS}"
    )
