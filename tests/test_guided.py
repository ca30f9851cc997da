"""Guided distillation (Meng et al. 2023): the stage-one loss vanishes exactly when the student is
the classifier-free-guided teacher itself, for every w; sampling uses the configured guidance;
the stage schedule; and the protocol checks on a conditional config."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from protocol_checks import check_cli_smoke, check_compiles_once_and_resumes
from protocol_checks import config as config_file

from jaxdistill import benchmarks
from jaxdistill.build import build
from jaxdistill.config import ConfigError
from jaxdistill.core.state import NetState
from jaxdistill.diffusion import samplers
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.process import get_process
from jaxdistill.models import gaussian_mixture
from jaxdistill.models.gaussian_mixture import mixture_apply_fn
from jaxdistill.objectives.guided import Guided, GuidedDistillation
from jaxdistill.objectives.progressive import grid_time


def cfg_student(teacher: Denoiser, shift: float = 0.0) -> Denoiser:
    """The CFG teacher as a w-conditioned denoiser: input t is [B, 2] = (time, w); ``shift`` perturbs w."""

    def apply(params, x, t, cond, *, train=False, rngs=None):
        return teacher.x0(params, x, t[:, 0], cond, guidance=t[:, 1] + shift)

    return Denoiser(apply, teacher.process, "x0")


def objective_for(process_name, w_min, w_max, shift=0.0, **kwargs):
    process = get_process(process_name)
    mixture = gaussian_mixture.random(0, 4, 2, num_classes=2)
    teacher = Denoiser(mixture_apply_fn(process), process, "x0")
    settings = Guided(w_min=w_min, w_max=w_max, stage_one_steps=4, start_steps=4, steps_per_stage=3, init_from_teacher=False)
    objective = GuidedDistillation(
        settings=settings, teacher=teacher, student=cfg_student(teacher, shift), student_init_fn=None, tx=optax.sgd(0.0),
        event_shape=(2,), num_classes=2, guidance=w_min, **kwargs,
    )
    return objective, mixture


@pytest.mark.parametrize("process_name", ["edm", "vp_cosine"])
@pytest.mark.parametrize("w_range", [(0.0, 5.0), (2.5, 2.5)])
def test_stage_one_loss_is_zero_when_the_student_is_the_guided_teacher(process_name, w_range):
    """w ~ U[w_min, w_max] per sample: a mean of non-negative terms <= 1e-12 means every sampled
    w (here 512 of them over [0, 5], beyond the default range on both sides) gives zero."""
    objective, mixture = objective_for(process_name, *w_range)
    x, k = mixture.sample(jax.random.key(0), 512)
    batch = {"x": x, "label": jnp.asarray(mixture.labels)[k]}
    params = mixture.params
    loss, metrics = jax.jit(objective.loss)(params, {"teacher": params}, params, batch, jax.random.key(1), jnp.int32(0))
    assert float(metrics["stage"]) == -1.0
    assert float(loss) <= 1e-12, float(loss)
    wrong, _ = objective_for(process_name, *w_range, shift=0.5)
    wrong_loss, _ = wrong.loss(params, {"teacher": params}, params, batch, jax.random.key(1), jnp.int32(0))
    assert float(wrong_loss) > 1e-4  # a student with the wrong guidance weight is penalised


def test_generate_samples_with_the_configured_guidance():
    """With the exact guided teacher as student, generate(nfe) is DDIM of the CFG teacher at
    w = ``guidance`` on the nested grid."""
    process = get_process("edm")
    base, mixture = objective_for("edm", 0.0, 5.0)
    params = mixture.params
    trainable = {"student": NetState.create(params, optax.sgd(0.0))}
    for w in (1.0, 3.0):
        objective = dataclasses.replace(base, guidance=w)
        noise = objective.prior(jax.random.key(0), 128)
        cond = jnp.arange(128) % 2
        out = objective.generate(trainable, {"teacher": params}, noise, cond, nfe=4, rng=None)
        x0_fn = lambda y, t: objective.teacher.x0(params, y, t, cond, guidance=w)
        ref = samplers.sample(x0_fn, process, noise, grid_time(process, jnp.arange(5), 4), "ddim")
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)


def test_stage_schedule():
    objective, _ = objective_for("edm", 1.0, 5.0)  # stage one: 4 updates; PD 4 -> 2 -> 1, 3 updates each
    steps = jnp.arange(14)
    switches = np.asarray(jax.vmap(objective.switches)(steps))
    assert np.flatnonzero(switches).tolist() == [4, 7]
    assert np.asarray(jax.vmap(objective.pd_stage)(steps)).tolist() == [0] * 7 + [1] * 7
    assert np.asarray(objective.student_steps(jnp.array([0, 1]))).tolist() == [2, 1]


def test_compiles_once_and_resumes_mid_stage(tmp_path):
    config = config_file("digits_gmm/guided")
    config.train.num_steps = 12
    config.guided.stage_one_steps = 4
    config.guided.start_steps = 4  # PD stages 4 -> 2 -> 1 start at steps 4 and 8
    config.guided.steps_per_stage = 4
    check_compiles_once_and_resumes(config, tmp_path, split=6)


def test_cli_smoke_guided(tmp_path):
    check_cli_smoke("digits_gmm/guided.py:smoke", tmp_path, "guided", (1, 2))


def test_guided_needs_labels_and_an_in_range_guidance():
    config = benchmarks.with_method(config_file("grid25/kd"), "guided")
    with pytest.raises(ConfigError, match="class labels"):
        build(config)
    config = config_file("digits_gmm/guided")
    config.eval.guidance = 7.0
    with pytest.raises(ConfigError, match="outside the trained range"):
        build(config)
