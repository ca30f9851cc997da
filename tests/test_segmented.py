"""Segmented and target-driven consistency distillation (jaxdistill/objectives/segmented.py): Hyper-SD's TSCD
(each target in the point's own segment, mapped to its start; K = 1 is TCD with the target at index 0; the
stage switch inside one compiled step), TDD (targets from the few-step schedules' set; the decoupled-guidance
target by hand), SCott (the stochastic solver at zero noise is DDIM; its marginal on an exact Gaussian teacher),
and (slow) the SD 1.5 smoke presets through `jaxdistill train`."""
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_lcm import SHAPE, text_eps_teacher
from test_tcd import lora_only, train_smoke

from jaxdistill.core.conditioning import TextCondition
from jaxdistill.core.rng import derive
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.objectives.lcm import LCM, LCMObjective
from jaxdistill.objectives.progressive import ddim_step
from jaxdistill.objectives.segmented import TDD, HyperSD, HyperSDObjective, SCott, SCottObjective, TDDObjective
from jaxdistill.objectives.tcd import TCD, TCDObjective

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def objective(cls, settings, total_steps: int = 8):
    """``cls`` with ``settings`` on the toy text 'network' as student and teacher (as ``tcd.build`` does)."""
    teacher = text_eps_teacher()
    return cls(settings=settings, student=teacher, student_init_fn=lambda rng, x: {"a": jnp.float32(0.0)},
               tx=optax.sgd(0.1), event_shape=SHAPE[1:], teacher=teacher, total_steps=total_steps)


def text_batch(n: int, seed: int) -> dict:
    rs = np.random.default_rng(seed)
    cond = TextCondition(jnp.asarray(rs.normal(size=(n, 3, 5)), jnp.float32), negative_embeds=jnp.asarray(rs.normal(size=(n, 3, 5)), jnp.float32))
    return {"x": jax.random.normal(jax.random.key(seed), (n, *SHAPE[1:])), "cond": {"embeds": cond.embeds, "negative_embeds": cond.negative_embeds}}


def test_tscd_targets_lie_in_the_points_segment_and_the_target_maps_to_its_start():
    """Every level n of N = 50 (k = 20), K = 8, 4, 2, 1: s is the largest segment edge b_j = N - floor(j N / K) at
    or below the target point tau_e, so s <= tau_e < tau_n with no edge between; at a segment's lowest level
    tau_e = s and the target f(x_e, tau_e, s) is x_e exactly; the edges are LCM's sampling times at nfe = K."""
    obj = objective(HyperSDObjective, HyperSD())
    targets = jax.jit(lambda k: dataclasses.replace(obj, stage_segments=k).target_times(jnp.arange(50), jax.random.key(0)))
    f = jax.jit(obj.f)
    for segments in (8, 4, 2, 1):
        check_segments(obj, f, segments, np.asarray(targets(jnp.asarray(segments))))


def check_segments(obj: HyperSDObjective, f, segments: int, s: np.ndarray) -> None:
    tau = np.arange(1, 51) * 20 - 1
    t, t_end = tau + 1.0, np.maximum(tau - 20, 0) + 1.0
    edges = np.array(sorted({max((50 - (j * 50) // segments) * 20 - 1, 0) + 1.0 for j in range(1, segments + 1)}))
    assert np.all(s <= t_end) and np.all(t_end < t) and set(s.tolist()) == set(edges.tolist())
    for si, te in zip(s, t_end):
        assert not np.any((edges > si) & (edges <= te))  # s is the start of tau_e's own segment
    if segments > 1:
        assert sorted(set(edges[1:] - 1.0)) == sorted(np.asarray(obj.sampling_times(segments))[1:-1] - 1.0)
    at_start = s == t_end
    assert at_start.sum() == segments
    x = jax.random.normal(jax.random.key(1), (int(at_start.sum()), *SHAPE[1:]))
    cond = TextCondition(jnp.ones((x.shape[0], 3, 5)))
    times = jnp.asarray(t_end[at_start])
    assert np.array_equal(np.asarray(f({"a": jnp.float32(0.4)}, x, times, jnp.asarray(s[at_start]), cond)), np.asarray(x))


class TCDAtIndexZero(TCDObjective):
    """TCD with its target drawn at m = 0 (DDPM index 0) always."""

    def target_times(self, level, rng):
        return jnp.ones(level.shape, jnp.float32)


def test_one_segment_is_tcds_loss_with_the_target_at_index_zero_exactly():
    batch, rng = text_batch(8, 2), jax.random.key(3)
    common = dict(num_ddim_timesteps=5, w_min=2.0, w_max=6.0, distance="pseudo_huber")
    hyper = objective(HyperSDObjective, HyperSD(segments=(1,), **common))
    tcd = objective(TCDAtIndexZero, TCD(**common))
    student, frozen = {"a": jnp.float32(0.2)}, {"teacher": {"a": jnp.float32(0.5)}}
    got, metrics = jax.jit(hyper.loss)(student, student, frozen, batch, rng)
    want, _ = jax.jit(tcd.loss)(student, student, frozen, batch, rng)
    assert float(got) == float(want) and float(metrics["target_time"]) == 1.0


def test_the_segment_stages_switch_inside_one_compiled_step():
    """8 updates, 2 per stage: K = 8, 8, 4, 4, 2, 2, 1, 1 from the traced step, one compilation."""
    obj = objective(HyperSDObjective, HyperSD(num_ddim_timesteps=10, segments=(8, 4, 2, 1)), total_steps=8)
    batch, frozen = text_batch(4, 4), {"teacher": {"a": jnp.float32(0.3)}}
    trainable = obj.init(jax.random.key(0), batch, frozen)
    step = jax.jit(obj.step)
    seen = []
    for i in range(8):
        trainable, metrics = step(trainable, frozen, batch, jax.random.key(i), jnp.asarray(i))
        seen.append(int(metrics["segments"]))
    assert seen == [8, 8, 4, 4, 2, 2, 1, 1] and step._cache_size() == 1
    assert obj.steps_per_stage == 2 and objective(HyperSDObjective, HyperSD(steps_per_stage=3)).steps_per_stage == 3


def test_bad_hypersd_settings_name_the_field():
    with pytest.raises(ValueError, match="must not increase"):
        HyperSD(segments=(2, 4))
    with pytest.raises(ValueError, match="segments must be a non-empty"):
        HyperSD(segments=(64,))
    with pytest.raises(ValueError, match="gamma must be in"):
        HyperSD(gamma=2.0)


def test_tdd_targets_come_from_the_few_step_schedules_within_the_window():
    """N = 250 (k = 4): S is the 4- to 8-step equidistant schedules' indices 999 - 4 floor(i 250 / K), 0 < i < K, with
    index 0; with s_ratio = 0 every target c is in S, at or below tau_e and at least u - 260, u = max{S <= tau_e};
    the gamma offset (s_ratio = 0.3) moves it to floor((1 - eta 0.3) c), in [floor(0.7 c), c]."""
    want = sorted({999 - 4 * ((i * 250) // k) for k in range(4, 9) for i in range(1, k)} | {0})
    level = jnp.arange(250)
    end = np.maximum(np.arange(1, 251) * 4 - 5, 0)
    upper = np.array([max(v for v in want if v <= e) for e in end])
    for s_ratio in (0.0, 0.3):
        obj = objective(TDDObjective, TDD(s_ratio=s_ratio))
        assert obj.schedule.tolist() == want
        s = np.asarray(jax.jit(obj.target_times)(level, jax.random.key(s_ratio > 0))) - 1.0
        assert np.all(s <= end) and np.all(s == np.floor(s))
        if s_ratio == 0.0:
            assert set(s.tolist()) <= set(want) and np.all(s >= np.maximum(upper - 260, 0)) and len(set(s.tolist())) > 15
        else:
            assert np.all(s >= np.floor(0.7 * np.maximum(upper - 260, 0))) and not set(s.tolist()) <= set(want)


def test_tdds_decoupled_guidance_target_is_the_hand_formula():
    """Examples drawn for the empty prompt (probability 0.5 here) give the student and the teacher's conditional
    branch the negative prompt, so their target is the unguided teacher's DDIM step; the rest get the guided
    x0_u + w (x0_c - x0_u) of their own prompt."""
    obj = objective(TDDObjective, TDD(num_ddim_timesteps=5, schedule_min=2, schedule_max=4, uncond_prob=0.5))
    batch, rng, params = text_batch(16, 5), jax.random.key(6), {"a": jnp.float32(0.3)}
    pair = jax.jit(obj.solver_pair)(params, batch, rng)
    drop = np.asarray(jax.random.uniform(derive(rng, "uncond"), (16,)) < 0.5)
    assert 0 < drop.sum() < 16
    cond = batch["cond"]
    embeds = jnp.where(drop[:, None, None], cond["negative_embeds"], cond["embeds"])
    np.testing.assert_array_equal(pair.cond.embeds, embeds)
    teacher = obj.teacher
    x0_c = teacher.x0(params, pair.x, pair.t, TextCondition(embeds))
    x0_u = teacher.x0(params, pair.x, pair.t, TextCondition(cond["negative_embeds"]))
    w = np.asarray(pair.w)[:, None, None, None]
    assert np.all(w == 4.5)
    want = ddim_step(obj.process, pair.x, x0_u + w * (x0_c - x0_u), pair.t, pair.t_end)
    np.testing.assert_allclose(pair.x_end, want, rtol=1e-5, atol=1e-5)
    unguided = ddim_step(obj.process, pair.x, x0_u, pair.t, pair.t_end)
    np.testing.assert_allclose(np.asarray(pair.x_end)[drop], np.asarray(unguided)[drop], rtol=1e-5, atol=1e-5)
    assert not np.allclose(np.asarray(pair.x_end)[~drop], np.asarray(unguided)[~drop], atol=1e-3)


def test_scotts_stochastic_solver_at_zero_noise_is_lcms_ddim_solver():
    batch, rng, params = text_batch(6, 7), jax.random.key(8), {"a": jnp.float32(0.3)}
    deterministic = objective(SCottObjective, SCott(num_ddim_timesteps=5, eta=0.0, solver_steps=1))
    ddim = objective(LCMObjective, LCM(num_ddim_timesteps=5))
    got, want = jax.jit(deterministic.solver_pair)(params, batch, rng), jax.jit(ddim.solver_pair)(params, batch, rng)
    np.testing.assert_allclose(got.x_end, want.x_end, rtol=1e-5, atol=1e-5)  # float32 rounding of the regrouped step
    noisy = jax.jit(objective(SCottObjective, SCott(num_ddim_timesteps=5, eta=0.5)).solver_pair)(params, batch, rng)
    assert not np.allclose(noisy.x_end, want.x_end, atol=1e-3)
    with pytest.raises(ValueError, match="needs rng"):
        objective(SCottObjective, SCott()).teacher_target_point(params, got.x, got.t, got.t_end, got.cond, got.w)


def test_scotts_stochastic_solver_keeps_the_exact_gaussian_teachers_marginal():
    """Data N(0.5, 0.25) on SD's DDPM schedule, the exact posterior mean as teacher: x drawn from the marginal at
    t = 500, the solver's step to t = 480 in 20 sub-steps (one per DDPM index) at eta = 1 (the teacher's ancestral
    chain) and eta = 0.5. x_e's mean is alpha_e m within 0.01 and its variance alpha_e^2 v + sigma_e^2 within 2%
    (50000 samples: the variance's standard error is 0.6%). Over large jumps the ancestral step loses the
    posterior's spread of x0 (1000 -> 1 in 50 sub-steps: variance 0.205 for 0.251), so the check takes short ones."""
    from test_lcm import SD_PROCESS

    m, v, n = 0.5, 0.25, 50000

    def gaussian(params, x, t, cond, **kwargs):
        a, s = SD_PROCESS.alpha(t)[:, None, None, None], SD_PROCESS.sigma(t)[:, None, None, None]
        return m + a * v / (a * a * v + s * s) * (x - a * m)

    teacher = Denoiser(gaussian, SD_PROCESS, "x0")
    a0, s0 = SD_PROCESS.alpha(500.0), SD_PROCESS.sigma(500.0)
    x = a0 * m + jnp.sqrt(a0**2 * v + s0**2) * jax.random.normal(jax.random.key(9), (n, 1, 1, 1))
    cond, w = TextCondition(jnp.zeros((n, 1, 1)), negative_embeds=jnp.zeros((n, 1, 1))), jnp.ones((n,))
    ae, se = float(SD_PROCESS.alpha(480.0)), float(SD_PROCESS.sigma(480.0))
    for eta in (1.0, 0.5):
        obj = SCottObjective(settings=SCott(eta=eta, solver_steps=20), student=teacher, student_init_fn=None, tx=optax.sgd(0.1), event_shape=(1, 1, 1), teacher=teacher)
        x_e = np.asarray(obj.teacher_target_point({}, x, jnp.full((n,), 500.0), jnp.full((n,), 480.0), cond, w, rng=jax.random.key(10)), np.float64)
        assert abs(x_e.mean() - ae * m) < 0.01
        np.testing.assert_allclose(x_e.var(), ae**2 * v + se**2, rtol=0.02)


def test_bad_tdd_and_scott_settings_name_the_field():
    with pytest.raises(ValueError, match="schedule_min <= schedule_max"):
        TDD(schedule_min=9)
    with pytest.raises(ValueError, match="uncond_prob"):
        TDD(uncond_prob=1.5)
    with pytest.raises(ValueError, match="eta must be in"):
        SCott(eta=2.0)
    with pytest.raises(ValueError, match="solver_steps must be"):
        SCott(solver_steps=0)


@pytest.mark.parametrize("spec", ["sd15/hypersd_lora.py", "sdxl/hypersd_lora.py", "sd15/tdd_lora.py", "sdxl/tdd_lora.py", "sd15/scott_lora.py"])
def test_the_stable_diffusion_configs_load_with_their_methods_settings(spec):
    """Every config (full and smoke) validates and reads back as its method's settings; the LoRA runs keep no target."""
    from jaxdistill.config import load
    from jaxdistill.objectives import registry

    for arg in ("", ":smoke"):
        c = load(os.path.join(ROOT, "configs", spec) + arg, ["teacher.path=x", "data.path=y"])
        settings = registry.settings(c)
        assert settings.method == c.method == spec.split("/")[1].split("_")[0] and settings.target_ema == 0.0 and c.lora.rank > 0
    assert (settings.w_min, settings.w_max) == {"hypersd": (4.0 if "sdxl" in spec else 6.0, 16.0), "tdd": (4.5, 4.5), "scott": (6.0, 16.0)}[settings.method]


def test_a_continuous_time_teacher_is_a_config_error_naming_the_method():
    """The methods distil discrete DDPM (Stable Diffusion) teachers: grid25's exact mixture is refused at build
    (hypersd and tdd share tcd.build's check, scott lcm.build's; one method keeps the test cheap)."""
    from jaxdistill.benchmarks import with_method
    from jaxdistill.build import build
    from jaxdistill.config import load, validate
    from jaxdistill.core.errors import ConfigError

    c = with_method(load(os.path.join(ROOT, "configs", "grid25", "cd.py") + ":smoke"), "tdd")
    c.tdd.init_from_teacher = False
    with pytest.raises(ConfigError, match="^tdd distils a discrete DDPM teacher"):
        build(validate(c))


@pytest.mark.slow
def test_the_sd15_hypersd_lora_smoke_preset_trains_both_stages_through_the_cli(sd15_cache, tmp_path):
    folder, cache, _ = sd15_cache
    rows = train_smoke("sd15/hypersd_lora.py", folder, cache, tmp_path / "run")
    assert [r["segments"] for r in rows] == [2.0, 1.0]


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["sd15/tdd_lora.py", "sd15/scott_lora.py"])
def test_the_sd15_tdd_and_scott_smoke_presets_train_through_the_cli_and_sample(sd15_cache, tmp_path, spec):
    """Two updates through `jaxdistill train`; one sampling step of the trained LoRA student: for TDD its own
    guidance at 1.7 (decoupled guidance), for SCott LCM's sampler."""
    from jaxdistill.build import load_run
    from jaxdistill.objectives.denoising import batch_labels

    folder, cache, _ = sd15_cache
    train_smoke(spec, folder, cache, tmp_path / "run")
    run = load_run(str(tmp_path / "run"))
    objective = run.built.objective
    batch = jax.tree.map(jnp.asarray, next(run.built.data_factory(0)))
    cond = batch_labels(batch, 0)
    noise = objective.prior(jax.random.key(5), batch["x"].shape[0])
    one = objective.generate(run.trainable, run.frozen, noise, cond, nfe=1, rng=jax.random.key(6))
    bound, params = objective.bound(run.frozen), run.trainable["student"].eval_params
    t = jnp.full((noise.shape[0],), bound.sampling_times(1)[0])
    if isinstance(bound, TDDObjective):
        assert bound.settings.guidance_scale == 1.7
        direct = bound.student.x0(params, noise, t, cond, guidance=1.7)  # one SSS step to t = 0: the guided x0
    else:
        assert isinstance(bound, SCottObjective) and bound.settings.eta == 0.5
        direct = bound.f(params, noise, t, cond, None)  # LCM's one step: f(x, t_0), re-noised to t = 0
    np.testing.assert_allclose(one, direct, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["sdxl/hypersd_lora.py", "sdxl/tdd_lora.py"])
def test_the_sdxl_smoke_presets_train_through_the_cli_as_loras(sdxl_cache, tmp_path, spec):
    from jaxdistill.build import load_run

    folder, cache = sdxl_cache
    train_smoke(spec, folder, cache, tmp_path / "run")
    lora_only(load_run(str(tmp_path / "run")))
