"""digits_gmm: a 64-D class-conditional Gaussian mixture fitted to scikit-learn's digits (one
component per class), with its exact mixture teacher (BENCHMARKS.md). Students get KD's budget:
4000 updates of 256 samples, a 3x512 MLP."""
from __future__ import annotations

from typing import Optional

import ml_collections

from jaxdistill.benchmarks import mlp, parse_arg, set_pair_set, smoke, with_method, without_teacher_weights
from jaxdistill.config import base_config

PAIRS, TEACHER_NFE = 16384, 31  # the teacher ODE sample set (Heun, 31 evaluations)
SMOKE_PAIRS, SMOKE_TEACHER_NFE = 256, 5


def student(method: str, arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """``method`` with its paper settings distilling the exact mixture from 50,000 of its samples,
    evaluated at one NFE."""
    is_smoke, _ = parse_arg(arg, generator=True)
    c = base_config()
    c.data = ml_collections.ConfigDict({"name": "digits_gmm", "size": 50_000, "seed": 0})
    c.teacher.kind = "mixture"  # the exact mixture the data are drawn from
    c.prior_mean = "zero"  # as when the committed rows were made (docs/benchmarks.md, "Prior mean")
    c.network = mlp(num_classes=10, width=512, depth=3)
    c.batch_size = 256
    c.optim.lr = 1e-3
    c.optim.decay_steps = 4000
    c.train.num_steps = 4000
    c.train.checkpoint_every = 2000
    c.eval.nfes = (1,)
    if is_smoke:
        smoke(c)
    c = with_method(c, method)
    without_teacher_weights(c)
    set_pair_set(c, *((SMOKE_PAIRS, SMOKE_TEACHER_NFE) if is_smoke else (PAIRS, TEACHER_NFE)))
    return c
