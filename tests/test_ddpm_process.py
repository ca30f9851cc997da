"""The discrete DDPM process, diffusers' timestep spacings, and agreement with diffusers' schedulers.

Which library sampler is which diffusers scheduler (same exact mixture denoiser, same z):

* DDIMScheduler (eta 0)            -> ``ddim`` on ``get_grid(spacing, scheduler="ddim")``;
  set_alpha_to_one=True ends at t = 0, False at t = 1 (abar = alphas_cumprod[0]).
* EulerDiscreteScheduler           -> ``ddim`` on ``get_grid(spacing, scheduler="euler")``, ending at 0:
  Euler in y = x / alpha against the sigma ratio s is DDIM (Song et al. 2021, eq. 14), not the
  library's ``euler``, which steps the PF-ODE in process time. It starts from y = init_noise_sigma z,
  i.e. x = z for ``leading`` and x = sigma(t_0) z for ``linspace`` / ``trailing``.
* DPMSolverMultistepScheduler (dpmsolver++, order 2) -> ``dpmpp_2m`` on ``get_grid(spacing,
  scheduler="dpmsolver")``; final_sigmas_type "zero" ends at 0, "sigma_min" at 1; its
  lower_order_final is the sampler's ``lower_order_final``.

References: tests/data/ddpm_scheduler_refs.json from tests/reference/make_ddpm_scheduler_refs.py
(diffusers 0.42.1, float64 samples). DDIMScheduler with ``linspace`` is not a grid sampler (see there).
"""
from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistill.diffusion import predict, samplers, steps
from jaxdistill.diffusion.ddpm_grid import ddpm_alpha_bars, ddpm_betas, ddpm_timesteps
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.process import DDPM, get_process
from jaxdistill.models.gaussian_mixture import GaussianMixture, mixture_apply_fn

REFS = os.path.join(os.path.dirname(__file__), "data", "ddpm_scheduler_refs.json")
PROCESSES = {
    "linear": DDPM("linear", 1e-4, 0.02),
    "scaled_linear": DDPM("scaled_linear", 0.00085, 0.012),
    "cosine": DDPM("cosine"),
}
# diffusers variant -> (library sampler, grid rule, t_end, lower_order_final)
VARIANTS = {
    "ddim": ("ddim", "ddim", 0.0, True),
    "ddim_alpha_one_false": ("ddim", "ddim", 1.0, True),
    "euler": ("ddim", "euler", 0.0, True),
    "dpmpp_2m": ("dpmpp_2m", "dpmsolver", 0.0, True),
    "dpmpp_2m_sigma_min": ("dpmpp_2m", "dpmsolver", 1.0, True),
    "dpmpp_2m_sigma_min_no_lof": ("dpmpp_2m", "dpmsolver", 1.0, False),
}
TOLERANCE = 1e-4
# Without lower_order_final, DPM-Solver's second-order last step onto sigma_min amplifies float32
# rounding: 9.5e-5 measured on the cosine schedule's 4-step cases, so that variant gets 2e-4.
TOLERANCES = {"dpmpp_2m_sigma_min_no_lof": 2e-4}


@functools.lru_cache(maxsize=1)
def refs() -> dict:
    with open(REFS) as f:
        return json.load(f)


@functools.partial(jax.jit, static_argnames=("process", "method", "lower_order_final"))
def _sample(params, x_init, ts, *, process, method, lower_order_final):
    teacher = Denoiser(mixture_apply_fn(process), process, "x0")
    x0_fn = lambda x, t: teacher.x0(params, x, t)  # noqa: E731
    return samplers.sample(x0_fn, process, x_init, ts, method, lower_order_final=lower_order_final)


@pytest.mark.parametrize("schedule", tuple(PROCESSES))
@pytest.mark.parametrize("variant", tuple(VARIANTS))
def test_final_samples_match_diffusers_schedulers(variant, schedule):
    data = refs()
    mixture = GaussianMixture(**{k: np.asarray(v) for k, v in data["mixture"].items()})
    z = jnp.asarray(data["z"], jnp.float32)
    process = PROCESSES[schedule]
    method, rule, t_end, lof = VARIANTS[variant]
    cases = [c for c in data["cases"] if c["scheduler"] == variant and c["schedule"] == schedule]
    assert len(cases) == (6 if variant.startswith("ddim") else 9)
    worst = {}
    for case in cases:
        ts = steps.get_grid(case["spacing"], process, case["steps"], t_end=t_end, steps_offset=data["steps_offset"], scheduler=rule)
        x_init = z if variant != "euler" or case["spacing"] == "leading" else process.sigma(ts[0]) * z
        x = _sample(mixture.params, x_init, ts, process=process, method=method, lower_order_final=lof)
        worst[(case["spacing"], case["steps"])] = float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(case["samples"]))))
    assert max(worst.values()) < TOLERANCES.get(variant, TOLERANCE), worst


def test_lower_order_final_changes_the_last_step_only_below_15_steps():
    data = refs()
    for n in (4, 25):
        a, b = ({c["spacing"]: c["samples"] for c in data["cases"] if c["scheduler"] == v and c["schedule"] == "linear" and c["steps"] == n}
                for v in ("dpmpp_2m_sigma_min", "dpmpp_2m_sigma_min_no_lof"))
        differs = np.max(np.abs(np.asarray(a["trailing"]) - np.asarray(b["trailing"]))) > 1e-6
        assert differs == (n < 15)


# ----------------------------------------------------------------------------- the process

@pytest.mark.parametrize("schedule", tuple(PROCESSES))
def test_alpha_bar_is_exact_at_training_indices(schedule):
    process = PROCESSES[schedule]
    abar = ddpm_alpha_bars(ddpm_betas(schedule, beta_start=process.beta_start, beta_end=process.beta_end))
    t = jnp.arange(1, 1001, dtype=jnp.float32)
    assert np.array_equal(np.asarray(process.alpha_bar(t)), abar.astype(np.float32))
    assert np.array_equal(np.asarray(process.alpha(t)), np.sqrt(abar).astype(np.float32))
    assert np.array_equal(np.asarray(process.sigma(t)), np.sqrt(1.0 - abar).astype(np.float32))
    # alpha^2 is abar to float32 rounding (a float32 square of a rounded root cannot always be bit-exact)
    np.testing.assert_allclose(np.asarray(process.alpha(t), np.float64) ** 2, abar, rtol=2.5e-7)
    np.testing.assert_allclose(process.alpha(t) ** 2 + process.sigma(t) ** 2, 1.0, atol=3e-7)
    assert np.array_equal(np.asarray(process.t_from_sigma_ratio(process.sigma_ratio(t))), np.asarray(t))
    assert float(process.alpha_bar(0.0)) == 1.0 and float(process.alpha(0.0)) == 1.0 and float(process.sigma(0.0)) == 0.0


def test_between_indices_the_sigma_ratio_is_linear_like_diffusers_euler():
    process = PROCESSES["scaled_linear"]
    abar = ddpm_alpha_bars(ddpm_betas("scaled_linear", beta_start=0.00085, beta_end=0.012))
    s = np.sqrt((1 - abar) / abar)
    k = np.array([0.25, 41.625, 500.5, 998.9])
    np.testing.assert_allclose(process.sigma_ratio(k + 1.0), np.interp(k, np.arange(1000), s), rtol=2e-6)
    t = jnp.asarray(k + 1.0, jnp.float32)
    np.testing.assert_allclose(process.alpha(t) ** 2 + process.sigma(t) ** 2, 1.0, atol=3e-7)
    np.testing.assert_allclose(process.alpha_bar(t), process.alpha(t) ** 2, rtol=1e-6)
    assert float(process.sigma_ratio(0.5)) == pytest.approx(0.5 * s[0], rel=1e-6)  # t in [0, 1]: from s = 0 to s_0


def test_defaults_are_ddpm_and_the_process_is_a_hashable_config_value():
    process = get_process("ddpm")
    assert (process.schedule, process.beta_start, process.beta_end, process.num_train_timesteps) == ("linear", 1e-4, 0.02, 1000)
    assert (process.t_min, process.t_max) == (1.0, 1000.0)
    assert float(process.timestep(1.0)) == 0.0  # diffusers' index of the least noisy step
    given = DDPM("given", num_train_timesteps=3, betas=[0.1, 0.2, 0.3])
    assert given.betas == (0.1, 0.2, 0.3) and hash(given) == hash(DDPM("given", num_train_timesteps=3, betas=(0.1, 0.2, 0.3)))
    np.testing.assert_allclose(given.alpha_bar(jnp.arange(4.0)), [1.0, 0.9, 0.72, 0.504], rtol=1e-6)
    t = given.sample_t(jax.random.key(0), 1000)
    assert set(np.unique(np.asarray(t)).tolist()) == {1.0, 2.0, 3.0}


@pytest.mark.parametrize("kind", ("eps", "v", "x0"))
@pytest.mark.parametrize("schedule", tuple(PROCESSES))
def test_predictions_round_trip_at_integer_and_fractional_times(kind, schedule):
    process = PROCESSES[schedule]
    k0, k1 = jax.random.split(jax.random.key(3))
    x0, eps = jax.random.normal(k0, (8, 3)), jax.random.normal(k1, (8, 3))
    t = jnp.array([1.0, 2.0, 10.5, 100.0, 333.25, 600.0, 900.0, 990.0])
    x = process.add_noise(x0, eps, t)
    target = predict.target_for(kind, x0, eps, t, process)
    tol = 1e-5 if kind != "eps" else 2e-3 / float(process.alpha(990.0))  # eps -> x0 divides by alpha
    np.testing.assert_allclose(predict.to_x0(target, kind, x, t, process), x0, atol=tol)
    np.testing.assert_allclose(predict.eps_from_x0(x0, x, t, process), eps, atol=2e-4 / float(process.sigma(1.0)))


# ----------------------------------------------------------------------------- spacings

def test_spacings_are_diffusers_timesteps():
    ts = lambda *a, **k: ddpm_timesteps(*a, **k).tolist()  # noqa: E731
    assert ts(4, "trailing") == [999, 749, 499, 249]
    assert ts(4, "leading", steps_offset=1) == [751, 501, 251, 1]
    assert ts(4, "linspace") == [999, 666, 333, 0]
    assert ts(4, "linspace", scheduler="dpmsolver") == [999, 749, 500, 250]
    assert ts(4, "leading", scheduler="dpmsolver") == [800, 600, 400, 200]
    assert ts(25, "linspace", scheduler="euler")[1] == pytest.approx(957.375)
    grid = steps.get_grid("leading", PROCESSES["linear"], 4, t_end=1.0, steps_offset=1)
    np.testing.assert_array_equal(grid, [752, 502, 252, 2, 1])
    np.testing.assert_array_equal(steps.get_grid("trailing", PROCESSES["linear"], 2), [1000, 500, 0])


def test_sample_nfe_takes_a_spacing_name():
    process = PROCESSES["scaled_linear"]
    mixture = GaussianMixture(means=np.array([[1.0, 0.0], [-1.0, 0.5]]), covariances=np.full((2, 2), 0.05))
    teacher = Denoiser(mixture_apply_fn(process), process, "x0")
    z = jax.random.normal(jax.random.key(0), (512, 2))
    x0_fn = lambda x, t: teacher.x0(mixture.params, x, t)  # noqa: E731
    x = samplers.sample_nfe(x0_fn, process, z, 8, "dpmpp_2m", grid="trailing")
    np.testing.assert_array_equal(x, samplers.sample(x0_fn, process, z, steps.get_grid("trailing", process, 8), "dpmpp_2m"))
    assert abs(float(jnp.mean(jnp.abs(x[:, 0]))) - 1.0) < 0.05  # the samples sit on the two components


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: DDPM("quadratic"), r"schedule must be one of \('linear', 'scaled_linear', 'cosine', 'given'\), got 'quadratic'"),
        (lambda: DDPM(beta_start=0.03), "beta_start <= beta_end"),
        (lambda: DDPM(beta_end=1.0), "beta_end < 1"),
        (lambda: DDPM(num_train_timesteps=0), "num_train_timesteps must be >= 1"),
        (lambda: DDPM("given", num_train_timesteps=0), "needs betas"),
        (lambda: DDPM("given", num_train_timesteps=3, betas=(0.1, 0.3, 0.2)), r"non-decreasing; betas\[2\]"),
        (lambda: DDPM("given", num_train_timesteps=2, betas=(0.1, 1.0)), r"betas must lie in \(0, 1\); betas\[1\]"),
        (lambda: DDPM("given", betas=(0.1, 0.2)), "num_train_timesteps=1000 must equal len"),
        (lambda: DDPM("linear", betas=(0.1,)), "betas are read with schedule='given' only"),
        (lambda: steps.get_grid("middle", DDPM(), 4), "unknown grid 'middle'"),
        (lambda: ddpm_timesteps(4, "middle"), "timestep spacing must be one of"),
        (lambda: steps.get_grid("trailing", DDPM(), 1001), "1001 inference steps with num_train_timesteps=1000"),
        (lambda: steps.get_grid("linspace", DDPM(), 1000, scheduler="dpmsolver"), "not distinct indices"),
        (lambda: steps.get_grid("leading", DDPM(), 4, steps_offset=300), "smaller steps_offset"),
        (lambda: steps.get_grid("trailing", get_process("edm"), 4), "discrete DDPM process"),
        (lambda: steps.get_grid("trailing", DDPM(), 4, scheduler="pndm"), "scheduler must be one of"),
    ],
)
def test_bad_inputs_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ----------------------------------------------------------------------------- config path

def test_an_eps_teacher_trains_on_the_ddpm_process_through_the_config():
    """``--config.process.name=ddpm`` with an eps network: after 100 steps the denoising loss on a
    fixed held-out batch (fixed t and eps) is well below the initial network's."""
    from protocol_checks import config

    from jaxdistill.build import build
    from jaxdistill.config import apply_overrides

    c = apply_overrides(config("grid25/teacher"), ["process.name=ddpm", "prediction=eps", "batch_size=256", "network.time_scale=1.0"])
    c.process.schedule = "cosine"  # a config file sets the process's fields (the CLI overrides only existing keys)
    built = build(c)
    objective = built.objective
    assert objective.process == DDPM("cosine")
    batches = built.data_factory()
    held_out = next(batches)
    trainable = objective.init(jax.random.key(0), held_out, built.frozen)
    loss = lambda: float(objective.loss(trainable["model"].params, held_out, jax.random.key(99))[0])  # noqa: E731
    before = loss()
    step = jax.jit(objective.step)
    for i in range(100):
        trainable, metrics = step(trainable, built.frozen, next(batches), jax.random.key(i), jnp.int32(i))
    assert np.isfinite(float(metrics["loss"])) and loss() < 0.8 * before, (before, loss())


def test_a_bad_process_field_is_a_config_error_naming_it():
    from protocol_checks import config

    from jaxdistill.build import make_process
    from jaxdistill.config import ConfigError

    c = config("grid25/teacher")
    c.process = {"name": "ddpm", "schedule": "squaredcos"}
    with pytest.raises(ConfigError, match="process: schedule must be one of"):
        make_process(c)


def test_command_line_overrides_set_the_named_process_fields():
    """--config.process.name=ddpm, then the DDPM fields the section did not have; an unknown field
    or a DDPM field under another process stays an error naming the key."""
    from jaxdistill.build import make_process
    from jaxdistill.config import ConfigError, apply_overrides, base_config

    c = apply_overrides(base_config(), ["process.name=ddpm", "process.schedule=cosine", "process.num_train_timesteps=500"])
    assert make_process(c) == DDPM("cosine", num_train_timesteps=500)
    c = apply_overrides(base_config(), ["process.t_max=40"])  # EDM's own fields too
    assert make_process(c).t_max == 40.0
    with pytest.raises(ConfigError, match="unknown config key 'process.schedule'"):
        apply_overrides(base_config(), ["process.schedule=cosine"])
    with pytest.raises(ConfigError, match="unknown config key 'process.beta'"):
        apply_overrides(base_config(), ["process.name=ddpm", "process.beta=0.1"])


def test_a_ddpm_teacher_evaluates_on_the_spacing_its_config_names():
    """eval.grid = "trailing": the teacher objective's sampler runs on diffusers' trailing timesteps;
    a spacing under a continuous process, or an unknown grid, is a ConfigError naming eval.grid."""
    from jaxdistill import benchmarks
    from jaxdistill.build import build
    from jaxdistill.config import ConfigError, apply_overrides, base_config

    c = apply_overrides(benchmarks.smoke(base_config()), ["process.name=ddpm", "eval.grid=trailing", "eval.sampler=ddim"])
    built = build(c)
    objective = built.objective
    trainable = objective.init(jax.random.key(0), jax.tree.map(jnp.asarray, next(built.data_factory(0))), built.frozen)
    z = objective.prior(jax.random.key(1), 8)
    got = objective.generate(trainable, built.frozen, z, None, nfe=4, rng=jax.random.key(2))
    params = trainable["model"].eval_params
    ts = steps.get_grid("trailing", objective.process, 4, t_end=0.0)
    want = samplers.sample(objective.x0_fn(params, None, None), objective.process, z, ts, "ddim")
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ConfigError, match="eval.grid='trailing' spaces"):
        build(apply_overrides(benchmarks.smoke(base_config()), ["eval.grid=trailing"]))
    with pytest.raises(ConfigError, match="eval.grid='cosine'"):
        build(apply_overrides(benchmarks.smoke(base_config()), ["eval.grid=cosine"]))
