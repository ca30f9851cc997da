"""Why the digits_t2i LCM-LoRA row is worse at NFE 4 than at NFE 2 (results/digits_t2i.md): a diagnosis, no tuning.

    python experiments/lcm_nfe4.py [--workdir runs/digits_t2i/lcm_lora] [--num-samples 1000]

Needs the trained row (``python experiments/digits_t2i.py --methods lcm_lora``). Prints, as JSON lines:

1. the LCM sampler's process times at NFE 1, 2, 4 (``LCMObjective.sampling_times``, LCMScheduler's) and whether each
   lies on the solver grid the LoRA was trained on (the DDIM indices + 1 of its N = num_ddim_timesteps);
2. FD-digits and prompt adherence (the benchmark's scoring, same captions and noise) of two x0 predictors, the
   trained student and the guided teacher (w = the benchmark's GUIDANCE, the target's guidance), each sampled on the
   same NFE-2 and NFE-4 times by strategic stochastic sampling (Zheng et al. 2024, TCD; ``objectives.tcd``):
   gamma = 1 is LCM's multistep sampler (x0, re-noised with fresh noise to the next time), gamma = 0 moves
   deterministically along the predicted trajectory (DDIM with the same x0), gamma = 0.3 is TCD's default between.
   The student at gamma = 1 reproduces its run's row (seed 0: 46.64 at NFE 2, 65.43 at NFE 4).
Findings: docs/methods/lcm.md, Results.
"""
from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

from jaxdistill.benchmarks import digits_t2i as bench
from jaxdistill.build import load_run
from jaxdistill.eval.digits_classifier import DigitsEvaluator
from jaxdistill.eval.text_to_image import initial_noise, latent_shape
from jaxdistill.models.hf.teacher import load_sd_teacher
from jaxdistill.objectives.lora_networks import LoraNetworks
from jaxdistill.objectives.tcd import strategic_stochastic_sampling

GAMMAS = (1.0, 0.3, 0.0)


def sample(sd, x0_fn, process, times, gamma: float, captions: list[str], seed: int = 0, batch_size: int = 500) -> np.ndarray:
    """Decoded grey images of SSS with ``x0_fn(x, t, cond)`` on ``times`` from the benchmark's noise (``student_images``' draws)."""
    z = initial_noise(seed, len(captions), latent_shape(sd))
    run = jax.jit(lambda z, cond, rng: strategic_stochastic_sampling(lambda x, t: x0_fn(x, t, cond), process, z, times, gamma, rng))
    images = []
    for start in range(0, len(captions), batch_size):
        cond = sd.text_condition(captions[start:start + batch_size])
        images.append(sd.decode_latents(run(z[start:start + batch_size], cond, jax.random.fold_in(jax.random.key(seed + 1), start))))
    return bench.to_grey(np.concatenate(images))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="runs/digits_t2i/lcm_lora")
    parser.add_argument("--num-samples", type=int, default=1000)
    args = parser.parse_args()
    run = load_run(args.workdir)
    frozen, params = run.frozen, run.trainable["student"].eval_params
    objective = run.built.objective  # a LoRA student computes with merge(teacher, LoRA): the wrapper's bound objective
    objective = objective.bound(frozen) if isinstance(objective, LoraNetworks) else objective
    sd, evaluator = load_sd_teacher(run.config.teacher.path), DigitsEvaluator()
    captions, _ = bench.eval_prompts(args.num_samples)
    grid = set((objective.indices + 1).tolist())
    for nfe in (1, 2, 4):
        times = np.asarray(objective.sampling_times(nfe))
        print(json.dumps({"nfe": nfe, "times": times.tolist(), "on_training_grid": [t in grid for t in times[:-1].tolist()]}), flush=True)
    w = bench.GUIDANCE
    predictors = {
        "student": lambda x, t, cond: objective.f(params, x, jnp.broadcast_to(t, (x.shape[0],)), cond, jnp.full((x.shape[0],), w)),
        "teacher": lambda x, t, cond: objective.teacher.x0(frozen["teacher"], x, jnp.broadcast_to(t, (x.shape[0],)), cond, guidance=jnp.full((x.shape[0],), w)),
    }
    for name, x0_fn in predictors.items():
        for nfe in (2, 4):
            for gamma in GAMMAS:
                grey = sample(sd, x0_fn, objective.process, objective.sampling_times(nfe), gamma, captions)
                print(json.dumps({"x0": name, "nfe": nfe, "gamma": gamma, **bench.score(evaluator, grey, captions)}), flush=True)


if __name__ == "__main__":
    main()
