"""grid25: 25 Gaussians of std 0.1 on a 5x5 grid of spacing 2 in 2-D, with its exact mixture
teacher (BENCHMARKS.md). Students get KD's budget: 4000 updates of 512 samples, a 3x128 MLP."""
from __future__ import annotations

from typing import Optional

import ml_collections

from jaxdistill.benchmarks import mlp, parse_arg, set_pair_set, smoke, with_method, without_teacher_weights
from jaxdistill.config import base_config

PAIRS, TEACHER_NFE = 16384, 31  # the teacher ODE sample set (Heun, 31 evaluations)
SMOKE_PAIRS, SMOKE_TEACHER_NFE = 256, 5


def teacher(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """An MLP diffusion teacher (EDM) trained on 200,000 samples of the grid."""
    is_smoke, _ = parse_arg(arg)
    c = with_method(base_config(), "teacher")
    c.data = ml_collections.ConfigDict({"name": "grid25", "size": 200_000, "seed": 0})
    c.network = mlp(width=128)
    c.sigma_data = 2.8  # the per-coordinate std of the grid (sqrt(8 + 0.1^2))
    c.batch_size = 512
    c.optim.lr = 2e-3
    c.optim.decay_steps = 4000
    c.train.num_steps = 4000
    c.train.checkpoint_every = 2000
    c.eval.nfes = (1, 2, 4, 8, 16, 32, 64)
    return smoke(c) if is_smoke else c


def student(method: str, arg: Optional[str] = None, teacher_workdir: str = "") -> ml_collections.ConfigDict:
    """``method`` with its paper settings distilling the exact grid25 mixture (or, with
    ``teacher_workdir``, a trained grid25 teacher run) at KD's budget, evaluated at one NFE; the
    network, batch and optimiser are the teacher's."""
    is_smoke, _ = parse_arg(arg, generator=True)
    c = with_method(teacher("smoke" if is_smoke else None), method)
    if teacher_workdir:
        c.teacher.kind, c.teacher.workdir = "checkpoint", teacher_workdir
    else:
        c.teacher.kind = "mixture"  # the exact mixture the data are drawn from
        without_teacher_weights(c)
    c.eval.nfes = (1,)
    set_pair_set(c, *((SMOKE_PAIRS, SMOKE_TEACHER_NFE) if is_smoke else (PAIRS, TEACHER_NFE)))
    return c
