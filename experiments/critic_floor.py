"""How much of a distribution-matching run's score difference is the critic's own error.

The generator of VSD / DMD / DMD2 / f-distill follows D_F - D_T, the critic's minus the teacher's
denoiser at noised generator samples (``objectives/dmd.py``). For a perfect generator the critic
would be fitted to the teacher's own distribution and the difference would vanish; what remains
is the critic's fitting error, a spurious signal the generator follows as if it were real. This
script measures both sides, per generator time sigma_i of a trained run:

* ``floor``: a fresh critic (the run's network, initialisation, optimiser and critic loss)
  trained for the run's number of critic updates on the training data itself (on the mixture
  benchmarks, exact samples of the teacher's distribution), then read on re-noised data: RMS
  per coordinate of D_F - D_T;
* ``signal``: the run's trained critic on the run's own samples (its chain after K steps),
  re-noised at the same sigma: the same RMS, which is what the generator steps on.

``signal / floor`` near 1 at some sigma means that what the generator receives there is no larger
than what a critic fitted to the target itself would report.

Usage: python experiments/critic_floor.py --workdir runs/digits_gmm/dmd_4step [--num 4000]
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from generator_steps import data_with_labels
from tqdm import tqdm

from jaxdistill.build import load_run
from jaxdistill.core.state import NetState
from jaxdistill.objectives.generator import GeneratorDistillation, mean_critic_updates
from jaxdistill.train.sampling import generate_samples


def rms_difference(objective: GeneratorDistillation, critic_params, frozen, x0: jax.Array, cond, t: float, rng: jax.Array) -> float:
    """sqrt(mean over samples and coordinates of (D_F - D_T)^2) at x_t = alpha_t x0 + sigma_t eps."""
    times = jnp.full((x0.shape[0],), t, jnp.float32)
    x_t, _ = objective.noised(x0, rng, times)
    diff = objective.critic.x0(critic_params, x_t, times, cond) - objective.teacher_x0(frozen, x_t, times, cond)
    return float(jnp.sqrt(jnp.mean(jnp.square(diff))))


def fit_critic_to_data(objective: GeneratorDistillation, frozen, data: np.ndarray, labels: np.ndarray, batch_size: int, updates: int, seed: int = 0):
    """A fresh critic, initialised as the objective initialises its own (from the teacher's weights
    where the config says so), trained by the objective's critic loss with the data standing in
    for G's samples."""
    rng = jax.random.key(seed)
    first = {"x": jnp.asarray(data[:batch_size]), "label": jnp.asarray(labels[:batch_size])}
    state = objective.init(rng, first, frozen)["critic"]

    @jax.jit
    def update(state: NetState, x: jax.Array, y: jax.Array, key: jax.Array) -> tuple[NetState, jax.Array]:
        cond = None if objective.num_classes == 0 else y
        batch = {"x": x, "label": y}
        grads, metrics = jax.grad(objective.critic_loss, has_aux=True)({"critic": state.params}, frozen, batch, x, cond, key)
        state, _ = state.apply_gradients(grads["critic"])
        return state, metrics["critic_loss"]

    picks = np.random.default_rng(seed)
    for i in tqdm(range(updates), desc="critic on data"):
        rows = picks.integers(0, len(data), batch_size)
        state, _ = update(state, jnp.asarray(data[rows]), jnp.asarray(labels[rows]), jax.random.fold_in(rng, i))
    return state.params


def floor_and_signal(run, data: np.ndarray, labels: np.ndarray, num: int) -> list[dict]:
    """Per generator time: sigma, floor (fresh critic on data), signal (run's critic on its samples)."""
    objective, frozen = run.built.objective, run.frozen
    updates = round(mean_critic_updates(objective.settings.critic_schedule, objective.total_steps) * objective.total_steps)
    fresh = fit_critic_to_data(objective, frozen, data, labels, int(run.config.batch_size), updates)
    cond = None if objective.num_classes == 0 else jnp.asarray(labels[:num])
    samples = generate_samples(objective, run.trainable, frozen, num, nfe=objective.settings.generator_steps, rng=jax.random.key(100), labels=labels[:num])
    x_data, x_samples = jnp.asarray(data[:num]), jnp.asarray(samples)
    trained = run.trainable["critic"].params
    rows = []
    for i, t in enumerate(np.asarray(objective.generator_times())):
        key = jax.random.key(200 + i)
        rows.append({
            "sigma": float(objective.process.sigma_ratio(t)),
            "floor": rms_difference(objective, fresh, frozen, x_data, cond, float(t), key),
            "signal": rms_difference(objective, trained, frozen, x_samples, cond, float(t), key),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a trained VSD / DMD / DMD2 / f-distill run")
    parser.add_argument("--num", type=int, default=4000, help="samples read per noise level")
    args = parser.parse_args()
    run = load_run(args.workdir)
    objective = run.built.objective
    if not isinstance(objective, GeneratorDistillation) or objective.critic is None or objective.teacher is None:
        raise SystemExit(f"{args.workdir} trains {run.config.method!r}; this reads generator methods with a critic and a teacher")
    data, labels = data_with_labels(run.config.data, int(run.config.data.get("size", 50_000)))
    rows = floor_and_signal(run, data, labels, min(args.num, len(data)))
    print(f"{args.workdir} (step {run.step}): RMS per coordinate of D_F - D_T")
    print("| sigma | floor (critic fitted to data) | signal (run's critic, run's samples) | signal / floor |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['sigma']:.3g} | {row['floor']:.4g} | {row['signal']:.4g} | {row['signal'] / row['floor']:.3g} |")


if __name__ == "__main__":
    main()
