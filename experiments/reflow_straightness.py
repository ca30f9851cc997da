"""Straightness before and after reflow (docs/methods/reflow.md): for a trained reflow or InstaFlow run, Liu et al.'s
S = E int ||(z - x_0) - v(x_t, t)||^2 dt (``jaxdistill.diffusion.straightness``; ||.||^2 the mean over dimensions)
along ``--nfe`` Euler steps of the teacher's flow (the 1-rectified flow) and of the 2-rectified flow (a reflow run's
student; an InstaFlow run's frozen reflow copy), and each flow's one-Euler-step error against the teacher's ODE end
point, E ||x_1step - ODE_T(z)||^2 / d, on the same ``--num`` prior draws (labels cycle through the classes).

    python experiments/reflow_straightness.py runs/grid25/reflow [--nfe 64] [--num 4096] [--seed 0]

Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp

from jaxdistill.build import load_run
from jaxdistill.core.rng import derive
from jaxdistill.losses import squared_l2
from jaxdistill.objectives.reflow import one_euler_step, velocity_of
from jaxdistill.train.sampling import class_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir")
    parser.add_argument("--nfe", type=int, default=64, help="Euler steps along which S is measured")
    parser.add_argument("--num", type=int, default=4096, help="prior draws")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run = load_run(args.workdir)
    objective, trainable = run.built.objective, run.trainable
    if run.config.method not in ("reflow", "instaflow"):
        raise SystemExit(f"{args.workdir} is a {run.config.method!r} run, not a reflow or instaflow run")
    flow = trainable["reflow"] if run.config.method == "instaflow" else trainable["student"].eval_params
    teacher = run.frozen["teacher"]
    key = jax.random.key(args.seed)
    z = objective.prior(derive(key, "prior"), args.num)
    labels = class_labels(objective.num_classes, args.num)
    cond = None if labels is None else jnp.asarray(labels)
    end = objective.teacher_sample(teacher, z, cond, derive(key, "sampler"))

    def one_step_error(denoiser, params) -> float:
        return float(jnp.mean(squared_l2(one_euler_step(velocity_of(denoiser, params, cond), z), end)))

    report = {
        "workdir": args.workdir,
        "step": run.step,
        "euler_steps": args.nfe,
        "num": args.num,
        "straightness": {
            "teacher": float(jnp.mean(objective.straightness(teacher, z, cond, args.nfe, teacher=True))),
            "reflow": float(jnp.mean(objective.straightness(flow, z, cond, args.nfe))),
        },
        # the teacher's one step is unguided here: a guided teacher's ODE end point is the reference either way
        "one_step_error": {"teacher": one_step_error(objective.teacher, teacher), "reflow": one_step_error(objective.student, flow)},
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
