"""Defining properties of the first objectives: denoising (teacher training) and
knowledge distillation, checked against closed-form Gaussian answers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdistill.core.types import NULL_LABEL
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.oracle import gaussian_flow_map, gaussian_posterior_mean
from jaxdistill.diffusion.process import get_process
from jaxdistill.models.gaussian_mixture import GaussianMixture, mixture_apply_fn
from jaxdistill.models.registry import default_network_config, make_network
from jaxdistill.objectives.denoising import Denoising, DenoisingObjective, drop_labels
from jaxdistill.objectives.kd import KD, KnowledgeDistillation

MEAN = np.array([1.0, -0.5], np.float32)
COV = np.array([[0.6, 0.2], [0.2, 0.3]], np.float32)


def gaussian_teacher(process):
    mixture = GaussianMixture(MEAN[None], COV[None])
    return Denoiser(mixture_apply_fn(process), process, "x0"), mixture


def linear_init(rng, x):
    d = x.reshape(x.shape[0], -1).shape[1]
    return {"A": jnp.zeros((d, d)), "b": jnp.zeros((d,))}


def linear_apply(params, x, t, cond, *, train=False, rngs=None):
    return x @ params["A"] + params["b"]


def run_steps(objective, frozen, batch, num_steps):
    frozen = objective.prepare(frozen, jax.random.key(1))
    trainable = objective.init(jax.random.key(0), batch, frozen)
    step = jax.jit(objective.step)
    for i in range(num_steps):
        trainable, metrics = step(trainable, frozen, batch, jax.random.fold_in(jax.random.key(2), i), jnp.int32(i))
    return trainable, frozen, metrics


def test_label_dropout_rate():
    labels = jnp.zeros((20000,), jnp.int32)
    dropped = drop_labels(jax.random.key(0), labels, 0.1)
    assert abs(float(jnp.mean(dropped == NULL_LABEL)) - 0.1) < 0.01
    assert set(np.unique(np.asarray(dropped))) <= {0, NULL_LABEL}


@pytest.mark.parametrize("weighting", ["none", "min_snr"])
def test_exact_posterior_mean_minimises_the_denoising_loss(weighting):
    """E||D(x_t) - x0||^2 is minimised by D = E[x0 | x_t]; any perturbation raises it."""
    process = get_process("edm")
    exact, mixture = gaussian_teacher(process)
    objective = DenoisingObjective(Denoising(weighting=weighting), exact, None, optax.sgd(0.0), (2,))
    x0, _ = mixture.sample(jax.random.key(0), 50000)
    batch = {"x": x0, "label": jnp.full((50000,), -1, jnp.int32)}
    loss = lambda p: float(objective.loss(p, batch, jax.random.key(3))[0])
    best = loss(mixture.params)
    for shift in (0.05, -0.05):
        moved = dict(mixture.params, means=mixture.params["means"] + shift)
        assert loss(moved) > best


def test_teacher_training_learns_the_gaussian_posterior_mean():
    """A small MLP trained by denoising score matching approaches the closed-form E[x0|x_t]."""
    process = get_process("edm")
    net_cfg = default_network_config("mlp")
    net_cfg.width, net_cfg.depth = 64, 2
    network = make_network(net_cfg)
    denoiser = Denoiser(network.apply, process, "edm", sigma_data=0.8)
    objective = DenoisingObjective(Denoising(), denoiser, network.init, optax.adam(3e-3), (2,), ema_decay=0.0)
    mixture = GaussianMixture(MEAN[None], COV[None])
    x0, _ = mixture.sample(jax.random.key(0), 1024)
    batch = {"x": x0, "label": jnp.full((1024,), -1, jnp.int32)}

    def error(params):
        errs = []
        for sigma in (0.2, 0.5, 1.0, 2.0):
            x_t = x0[:512] + sigma * jax.random.normal(jax.random.key(9), (512, 2))
            t = jnp.full((512,), sigma)
            exact = gaussian_posterior_mean(x_t, t, process, MEAN, COV)
            errs.append(float(jnp.sqrt(jnp.mean(jnp.sum((denoiser.x0(params, x_t, t) - exact) ** 2, -1)))))
        return max(errs)

    trainable, _, metrics = run_steps(objective, {}, batch, 600)
    init = objective.init(jax.random.key(0), batch, {})
    assert np.isfinite(float(metrics["loss"]))
    assert error(trainable["model"].params) < 0.25 * error(init["model"].params)
    assert error(trainable["model"].params) < 0.12


def test_kd_pairs_are_teacher_ode_samples_and_student_learns_the_flow_map():
    """KD's targets are the teacher's ODE map of the noise; a linear student trained on them
    converges to the closed-form Gaussian flow map from t_max to 0."""
    process = get_process("edm", t_max=10.0)
    teacher, mixture = gaussian_teacher(process)
    student = Denoiser(linear_apply, process, "x0")
    objective = KnowledgeDistillation(
        settings=KD(teacher_sampler="heun", teacher_nfe=127, num_pairs=4096),
        teacher=teacher, student=student, student_init_fn=linear_init, tx=optax.adam(1e-2), event_shape=(2,), ema_decay=0.0,
    )
    batch = {"x": jnp.zeros((512, 2)), "label": jnp.full((512,), -1, jnp.int32)}
    frozen = objective.prepare({"teacher": mixture.params}, jax.random.key(1))
    pairs = frozen["pairs"]
    exact = gaussian_flow_map(jnp.asarray(pairs["noise"]), process.t_max, 0.0, process, MEAN, COV)
    np.testing.assert_allclose(pairs["target"], exact, atol=6e-3)  # Heun, 64 steps: error ~1/N^2

    trainable, _, metrics = run_steps(objective, {"teacher": mixture.params}, batch, 1500)
    z = process.prior_sample(jax.random.key(5), (2000, 2))
    generated = objective.generate(trainable, frozen, z, None, nfe=1, rng=jax.random.key(0))
    target = gaussian_flow_map(z, process.t_max, 0.0, process, MEAN, COV)
    assert float(jnp.max(jnp.abs(generated - target))) < 0.03
    with pytest.raises(ValueError, match="one-step"):
        objective.generate(trainable, frozen, z, None, nfe=2, rng=jax.random.key(0))


def test_kd_without_a_pair_set_draws_fresh_teacher_samples():
    process = get_process("edm", t_max=10.0)
    teacher, mixture = gaussian_teacher(process)
    objective = KnowledgeDistillation(
        settings=KD(teacher_nfe=127, num_pairs=0),
        teacher=teacher, student=Denoiser(linear_apply, process, "x0"), student_init_fn=linear_init,
        tx=optax.sgd(0.0), event_shape=(2,),
    )
    frozen = objective.prepare({"teacher": mixture.params}, jax.random.key(1))
    assert "pairs" not in frozen
    batch = {"x": jnp.zeros((64, 2)), "label": jnp.full((64,), -1, jnp.int32)}
    z, target, cond = objective.minibatch(frozen, batch, jax.random.key(3))
    np.testing.assert_allclose(target, gaussian_flow_map(z, process.t_max, 0.0, process, MEAN, COV), atol=6e-3)
    assert cond is None


@pytest.mark.parametrize(
    "process_name, kind", [("vp_cosine", "eps"), ("vp_cosine", "v"), ("vp_linear", "x0"), ("rectified_flow", "flow"), ("ve", "eps")]
)
def test_each_prediction_kind_is_minimised_by_the_exact_model(process_name, kind):
    """For every (process, kind), the regression target's minimiser is the exact model's
    output of that kind: the loss at the exact mixture model is below any shifted one."""
    from jaxdistill.diffusion.predict import eps_from_x0, target_for

    process = get_process(process_name)
    mixture = GaussianMixture(MEAN[None], COV[None])
    exact_x0 = mixture_apply_fn(process)

    def apply(params, x, t, cond, *, train=False, rngs=None):
        x0 = exact_x0(params, x, t, cond)
        return target_for(kind, x0, eps_from_x0(x0, x, t, process), t, process)

    objective = DenoisingObjective(Denoising(), Denoiser(apply, process, kind), None, optax.sgd(0.0), (2,))
    x0, _ = mixture.sample(jax.random.key(0), 50000)
    batch = {"x": x0, "label": jnp.full((50000,), -1, jnp.int32)}
    loss = lambda p: float(objective.loss(p, batch, jax.random.key(3))[0])
    best = loss(mixture.params)
    assert np.isfinite(best)
    for shift in (0.05, -0.05):
        assert loss(dict(mixture.params, means=mixture.params["means"] + shift)) > best
