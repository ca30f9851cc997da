"""Variational Score Distillation / Diff-Instruct (Wang et al. 2023, "ProlificDreamer"; Luo et al.
2023, "Diff-Instruct") on digits_gmm: a one-step class-conditional generator distilled from the
exact class-conditional 64-D digits mixture, the papers' settings otherwise (the unnormalised score
difference, one critic update per generator update; jaxdistill/objectives/dmd.py).

Arguments: none (the benchmark budget), `smoke` (seconds), and `<K>step` for a K-step generator
evaluated at 1 and K NFE (`4step`, `smoke,4step`).
Usage: jaxdistill train --config configs/digits_gmm/vsd.py[:smoke] --workdir runs/digits_gmm/vsd
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits_gmm


def get_config(arg=None):
    c = digits_gmm.student("vsd", arg)  # generator and critic from scratch: the exact mixture has no weights
    _, steps = benchmarks.parse_arg(arg, generator=True)
    # Departures from the paper, for a generator trained from scratch (docs/methods/vsd.md):
    c.dmd.init_sigma = benchmarks.FROM_SCRATCH_INIT_SIGMA  # SiD's input level 2.5, not t_max: a broad start, not a point
    # ADM's N(0, 1) label table, not DiT's 0.02, with which a generator from scratch learns to ignore its labels.
    c.network.label_init_std = benchmarks.FROM_SCRATCH_LABEL_INIT_STD
    return benchmarks.few_step(c, steps)
