"""digits: scikit-learn's 1797 8x8 digits with a trained class-conditional UNet teacher
(BENCHMARKS.md). Students get KD's budget: 1500 updates of 128 samples, the teacher's UNet."""
from __future__ import annotations

from typing import Optional

import ml_collections

from jaxdistill.benchmarks import parse_arg, set_pair_set, smoke, unet, with_method
from jaxdistill.config import base_config

TEACHER_WORKDIR = "runs/digits/teacher"
PAIRS, TEACHER_NFE = 8192, 17  # the teacher ODE sample set (Heun, 17 evaluations)
SMOKE_PAIRS, SMOKE_TEACHER_NFE = 256, 5


def teacher(arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """A class-conditional UNet teacher (EDM, label dropout 0.1), 2500 updates of 128 samples."""
    is_smoke, _ = parse_arg(arg)
    c = with_method(base_config(), "teacher")
    c.data = ml_collections.ConfigDict({"name": "digits"})
    c.network = unet(num_classes=10, small=is_smoke)
    c.prior_mean = "zero"  # as when the committed rows were made (docs/benchmarks.md, "Prior mean")
    c.batch_size = 128
    c.optim.lr = 1e-3
    c.optim.decay_steps = 2500
    c.train.num_steps = 2500
    c.train.checkpoint_every = 500
    c.eval.nfes = (1, 2, 4, 8, 16, 32)
    # 5,000 rather than BENCHMARKS.md's 10,000: the UNet costs ~100x an exact mixture per sample
    # on a 2-core CPU. The leaderboard scores digits at this count, so `jaxdistill eval` agrees.
    c.eval.num_samples = 5000
    return smoke(c) if is_smoke else c


def student(method: str, arg: Optional[str] = None, teacher_workdir: str = TEACHER_WORKDIR) -> ml_collections.ConfigDict:
    """``method`` with its paper settings distilling the trained teacher at ``teacher_workdir``
    (students, critics and heads start from its weights where the paper's do), evaluated at one
    NFE; the network and optimiser are the teacher's, the cosine decay spans the run."""
    is_smoke, _ = parse_arg(arg, generator=True)
    c = with_method(teacher("smoke" if is_smoke else None), method)
    c.teacher.kind, c.teacher.workdir = "checkpoint", teacher_workdir
    c.train.num_steps = 20 if is_smoke else 1500
    c.optim.decay_steps = c.train.num_steps
    c.eval.nfes = (1,)
    set_pair_set(c, *((SMOKE_PAIRS, SMOKE_TEACHER_NFE) if is_smoke else (PAIRS, TEACHER_NFE)))
    return c
