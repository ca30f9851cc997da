"""ADD / LADD: the GAN losses and R1 penalty against hand computations on toy discriminators,
the discriminator and student losses of the real objective against an independent evaluation
with the exact grid25 mixture's features (ADD's distillation target is the teacher's stop-gradient
x0-prediction at the renoised sample), LADD's noise distribution and synthetic pool, the exact
mixture's features (responsibilities = Bayes' rule), config errors, and the protocol checks."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from protocol_checks import check_cli_smoke, check_compiles_once_and_resumes
from protocol_checks import config as config_file
from scipy.stats import multivariate_normal

from jaxdistill import benchmarks
from jaxdistill.build import build
from jaxdistill.config import ConfigError
from jaxdistill.core.rng import derive
from jaxdistill.core.types import NULL_LABEL
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.process import get_process
from jaxdistill.losses import discriminator_loss, generator_gan_loss, r1_penalty
from jaxdistill.models import gaussian_mixture as gm
from jaxdistill.models.discriminator import DiscriminatorHead
from jaxdistill.objectives import registry
from jaxdistill.objectives.kd import teacher_ode, teacher_pair_set

GRID = gm.grid25()
SIGMA_DATA = 2.8  # grid25 configs


@pytest.fixture(scope="module")
def add_setup():
    """The grid25 ADD objective (exact teacher) at the paper's lambda = 2.5 (the from-scratch
    config turns the distillation term off), its frozen tree and initial states."""
    config = config_file("grid25/add")
    config.adversarial.distill_weight = 2.5
    built = build(config)
    objective, frozen = built.objective, built.frozen
    batch = {"x": jnp.asarray(GRID.sample(jax.random.key(0), 16)[0])}
    trainable = objective.init(jax.random.key(1), batch, frozen)
    return objective, frozen, batch, trainable


def mixture_features(x, sigma, cond=None):
    """Independent evaluation of the exact teacher's features at (alpha = 1, sigma) on EDM."""
    _, features = gm.posterior_features(GRID.params, x, 1.0, sigma, cond)
    return features


# ----------------------------------------------------------- toy discriminators
def test_gan_losses_match_hand_values():
    real, fake = jnp.array([2.0, 0.5, -1.0]), jnp.array([-2.0, 0.0, 0.5])
    # hinge: mean(relu(1 - D_real)) = (0 + 0.5 + 2) / 3, mean(relu(1 + D_fake)) = (0 + 1 + 1.5) / 3
    np.testing.assert_allclose(discriminator_loss(real, fake, "hinge"), 2.5 / 3 + 2.5 / 3, rtol=1e-6)
    softplus = lambda v: np.log1p(np.exp(v))
    np.testing.assert_allclose(
        discriminator_loss(real, fake, "nonsaturating"), softplus(-np.asarray(real)).mean() + softplus(np.asarray(fake)).mean(), rtol=1e-6
    )
    np.testing.assert_allclose(generator_gan_loss(fake, "hinge"), 1.5 / 3, rtol=1e-6)
    np.testing.assert_allclose(generator_gan_loss(fake, "nonsaturating"), softplus(-np.asarray(fake)).mean(), rtol=1e-6)


def test_r1_penalty_matches_hand_values():
    rng = np.random.default_rng(0)
    f0, f1 = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(5, 2, 2, 4)).astype(np.float32)
    w, v = rng.normal(size=3).astype(np.float32), rng.normal(size=4).astype(np.float32)
    gamma = 0.3
    # Linear head D(f) = f0 w + mean_{hw} f1 v: grads are w and v / 4 at every sample.
    linear = lambda f: f[0] @ w + jnp.mean(f[1], axis=(1, 2)) @ v
    expected = 0.5 * gamma * (np.sum(w**2) + 4 * np.sum((v / 4) ** 2))
    np.testing.assert_allclose(r1_penalty(linear, [f0, f1], gamma), expected, rtol=1e-5)
    # Quadratic head D(f) = 1/2 ||f0||^2: grad = f0, so R1 = gamma / 2 E||f0||^2.
    quadratic = lambda f: 0.5 * jnp.sum(f[0] ** 2, axis=1)
    np.testing.assert_allclose(r1_penalty(quadratic, [f0], gamma), 0.5 * gamma * np.mean(np.sum(f0**2, axis=1)), rtol=1e-5)


def test_per_position_head_scores_every_position_with_its_maps_own_mlp():
    """ADD's heads read every token: logit[b, p] = w3 silu(W2 silu(W1 f_p + b1) + b2) + b3 +
    <embed(c_b), h_p> per feature map (its own weights), positions concatenated map by map."""
    rng = np.random.default_rng(0)
    f0 = rng.normal(size=(3, 2, 2, 4)).astype(np.float32)  # 4 positions
    f1 = rng.normal(size=(3, 5)).astype(np.float32)  # a vector: one position
    cond = jnp.array([0, 1, NULL_LABEL])
    head = DiscriminatorHead(hidden=8, num_classes=2, per_position=True)
    params = head.init(jax.random.key(0), [f0, f1], cond)
    logits = head.apply(params, [f0, f1], cond)
    assert logits.shape == (3, 5)
    p = jax.tree.map(np.asarray, params["params"])
    silu = lambda x: x / (1 + np.exp(-x))
    embed = p["Embed_0"]["embedding"][[0, 1, 2]]  # NULL_LABEL takes the extra row
    for b in range(3):
        for i, (f, k) in enumerate([(f0[b].reshape(4, 4), 0), (f1[b][None], 3)]):
            dense = lambda j, x: x @ p[f"Dense_{k + j}"]["kernel"] + p[f"Dense_{k + j}"]["bias"]
            h = silu(dense(1, silu(dense(0, f))))
            want = dense(2, h)[:, 0] + h @ embed[b]
            got = np.asarray(logits[b, :4] if i == 0 else logits[b, 4:])
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_add_with_per_position_heads_averages_the_hinge_over_positions():
    config = config_file("grid25/add")
    config.adversarial.head_per_position = True
    built = build(config)
    objective, frozen = built.objective, built.frozen
    batch = {"x": jnp.asarray(GRID.sample(jax.random.key(0), 8)[0])}
    params = objective.init(jax.random.key(1), batch, frozen)["head"].params
    x_g = batch["x"][::-1] * 0.5
    s_f = 0.1 * SIGMA_DATA
    real = objective.head.apply(params, mixture_features(batch["x"], s_f), None)
    fake = objective.head.apply(params, mixture_features(x_g, s_f), None)
    assert real.shape == (8, len(mixture_features(x_g, s_f)))  # the mixture's features are vectors
    hinge = np.mean(np.maximum(0, 1 - np.asarray(real))) + np.mean(np.maximum(0, 1 + np.asarray(fake)))
    objective = dataclasses.replace(objective, settings=dataclasses.replace(objective.settings, r1_weight=0.0))
    loss, _ = objective.critic_loss({"head": params}, frozen, batch, x_g, None, jax.random.key(3))
    np.testing.assert_allclose(loss, hinge, rtol=1e-5)


def test_only_the_digits_add_config_scores_every_position():
    """Digits ADD collapsed with heads on pooled UNet features (FD-digits 924) and not with a
    head per position (92.9): its config takes them; the mixture configs keep their pooled heads."""
    assert config_file("digits/add").adversarial.head_per_position
    for config in (config_file(name, None) for name in ("grid25/add", "digits_gmm/add", "digits/ladd", "grid25/ladd")):
        assert not config.adversarial.head_per_position


def test_methods_that_need_a_logit_per_sample_reject_per_position_heads():
    for config in (config_file("grid25/fdistill"), config_file("grid25/dmd2")):
        config.dmd.head_per_position = True
        with pytest.raises(ConfigError, match="one discriminator logit per sample"):
            build(config)


# ------------------------------------------------------- the objective's losses
def test_add_discriminator_loss_matches_independent_evaluation(add_setup):
    objective, frozen, batch, trainable = add_setup
    objective = dataclasses.replace(objective, settings=dataclasses.replace(objective.settings, r1_weight=0.5))  # make R1 visible
    head_params = trainable["head"].params
    x_g = batch["x"][::-1] + 0.3  # any stop-gradient fake batch
    s_f = 0.1 * SIGMA_DATA  # feature_sigma x sigma_data, no noise added (ADD's fixed feature network)
    assert np.isclose(objective.feature_time(), s_f, rtol=1e-6)
    head = lambda f: objective.head.apply(head_params, f, None)
    real_f, fake_f = mixture_features(batch["x"], s_f), mixture_features(x_g, s_f)
    hinge = jnp.mean(jax.nn.relu(1.0 - head(real_f))) + jnp.mean(jax.nn.relu(1.0 + head(fake_f)))
    grads = jax.grad(lambda f: jnp.sum(head(f)))(real_f)
    r1 = 0.25 * jnp.mean(sum(jnp.sum(g**2, axis=1) for g in grads))
    loss, metrics = objective.critic_loss({"head": head_params}, frozen, batch, x_g, None, jax.random.key(3))
    np.testing.assert_allclose(metrics["r1"], r1, rtol=1e-5)
    np.testing.assert_allclose(loss, hinge + r1, rtol=1e-5)
    assert float(r1) > 0


def test_add_student_loss_matches_hand_computation(add_setup):
    objective, frozen, batch, trainable = add_setup
    nets = {"head": trainable["head"].params}
    x_g = batch["x"] * 0.9 + 0.1
    rng = jax.random.key(4)
    s_f = 0.1 * SIGMA_DATA
    head = lambda x: objective.head.apply(nets["head"], mixture_features(x, s_f), None)
    adv = -jnp.mean(head(x_g))  # hinge generator loss through the frozen features
    # Distillation: x_t = x̂ + t eps' (EDM), target = E[x0 | x_t] of the exact mixture, weight
    # c(t) = (1 + (t / sigma_data)^2)^(-1/2), d = mean squared error, lambda = 2.5.
    t, eps = objective.distill_noise(derive(rng, "distill"), x_g)
    target = GRID.posterior_mean(x_g + t[:, None] * eps, 1.0, t)
    c = 1.0 / np.sqrt(1.0 + (np.asarray(t) / SIGMA_DATA) ** 2)
    distill = np.mean(c * np.mean((np.asarray(x_g) - np.asarray(target)) ** 2, axis=1))
    np.testing.assert_allclose(objective.distillation_loss(frozen, x_g, None, t, eps), distill, rtol=1e-5)
    loss, metrics = objective.student_loss(nets, frozen, x_g, None, rng)
    np.testing.assert_allclose(metrics["adv_loss"], adv, rtol=1e-5)
    np.testing.assert_allclose(loss, adv + 2.5 * distill, rtol=1e-5)
    # The target is stop-gradient: d/dx̂ of the distillation term is 2 c (x̂ - target) / (B d).
    grad = jax.grad(lambda x: objective.distillation_loss(frozen, x, None, t, eps))(x_g)
    np.testing.assert_allclose(grad, 2 * c[:, None] * (np.asarray(x_g) - np.asarray(target)) / x_g.size, rtol=1e-4, atol=1e-7)
    # The adversarial gradient flows through the teacher's features.
    adv_grad = jax.grad(lambda x: objective.student_loss(nets, frozen, x, None, rng)[1]["adv_loss"])(x_g)
    np.testing.assert_allclose(adv_grad, jax.grad(lambda x: -jnp.mean(head(x)))(x_g), rtol=1e-4, atol=1e-7)
    assert float(jnp.max(jnp.abs(adv_grad))) > 0


def test_ladd_noise_levels_features_and_synthetic_pool():
    built = build(config_file("grid25/ladd"))
    objective = dataclasses.replace(built.objective, settings=dataclasses.replace(built.objective.settings, num_synthetic=64))
    assert objective.settings.distill_weight == 0 and objective.settings.r1_weight == 0 and objective.settings.gan_loss == "hinge"
    # t̂: ln(s / sigma_data) ~ N(m, 1): the paper's logit-normal pi(t; 1, 1) of rectified-flow time
    # by default; the mixtures' configs shift it to m = -1 (a discriminator that can tell modes apart).
    assert registry.default_config("ladd").noise_mean == 1.0 and objective.settings.noise_mean == -1.0
    t = objective.discriminator_time(jax.random.key(0), 20000)
    log_s = np.log(np.asarray(t) / SIGMA_DATA)  # EDM: s = t
    assert abs(log_s.mean() + 1.0) < 0.05 and abs(log_s.std() - 1.0) < 0.05
    # Features: the teacher's at (x_t, t) plus the noise-level column ln(s) / 4.
    x = jnp.asarray(GRID.sample(jax.random.key(1), 8)[0])
    features = objective.head_features({}, built.frozen, x, t[:8], None)
    for got, want in zip(features[:-1], mixture_features(x, t[:8]), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(features[-1][:, 0], np.log(np.asarray(t[:8])) / 4.0, rtol=1e-5)
    # The synthetic pool is the teacher's ODE samples (KD's pair set), and batches are drawn from it.
    rng = jax.random.key(2)
    frozen = objective.prepare(built.frozen, rng)
    sample = lambda p, z, c, k: teacher_ode(objective.teacher, p, z, c, None, "heun", objective.settings.teacher_nfe, k)
    pairs = teacher_pair_set(sample, objective.teacher_prior, built.frozen["teacher"], 64, 0, rng)
    np.testing.assert_allclose(frozen["synthetic"]["x"], pairs["target"], rtol=1e-6)
    drawn = np.asarray(objective.synthetic_batch(frozen, {"x": x}, jax.random.key(3))["x"])
    pool = np.asarray(frozen["synthetic"]["x"])
    assert drawn.shape == x.shape and all(np.any(np.all(pool == row, axis=1)) for row in drawn)
    assert objective.setup_passes == 64 * objective.settings.teacher_nfe
    # student 2 + features of x̂ 2; per discriminator update (5 in the mixtures' configs) student 1 + features 2
    assert objective.passes_per_sample == 4.0 + 3.0 * 5


def test_add_passes_per_sample(add_setup):
    # student fwd + bwd, features of x̂ fwd + bwd, teacher denoiser; discriminator: student + 2 features
    assert add_setup[0].passes_per_sample == 2 + 2 + 1 + 3


# --------------------------------------------------------------- mixture features
@pytest.mark.parametrize("process_name", ["edm", "vp_cosine"])
def test_mixture_features_are_posterior_mean_and_bayes_responsibilities(process_name):
    mix = gm.random(3, 6, 4, num_classes=3)
    process = get_process(process_name)
    teacher = Denoiser(gm.mixture_apply_fn(process), process, "x0")
    rng = np.random.default_rng(0)
    x = rng.normal(scale=3.0, size=(7, 4)).astype(np.float32)
    t = np.full(7, 0.4 if process_name == "vp_cosine" else 1.5, np.float32)
    cond = np.array([0, 1, 2, NULL_LABEL, 0, 1, NULL_LABEL], np.int32)
    mean, resp = teacher.features(mix.params, x, t, cond)
    np.testing.assert_allclose(mean, teacher.x0(mix.params, x, t, cond), rtol=1e-6)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-5)
    alpha, sigma = float(process.alpha(t[0])), float(process.sigma(t[0]))
    for b in range(7):
        dens = np.array([
            mix.weights[k] * multivariate_normal.pdf(x[b], alpha * mix.means[k], alpha**2 * mix.covariances[k] + sigma**2 * np.eye(4))
            * (cond[b] == NULL_LABEL or mix.labels[k] == cond[b])
            for k in range(6)
        ])
        np.testing.assert_allclose(resp[b], dens / dens.sum(), rtol=1e-3, atol=1e-6)


# ------------------------------------------------------------------ config errors
def test_config_errors():
    c = config_file("grid25/add")
    c.adversarial.gan_loss = "wasserstein"
    with pytest.raises(ConfigError, match="gan_loss"):
        build(c)
    c = config_file("grid25/ladd")
    c.adversarial.num_synthetic = -1
    with pytest.raises(ConfigError, match="num_synthetic"):
        build(c)
    c = config_file("grid25/add")
    c.adversarial.init_from_teacher = True
    with pytest.raises(ConfigError, match="init_from_teacher"):
        build(c)
    c = config_file("grid25/add")
    c.eval.nfes = (8,)
    with pytest.raises(ConfigError, match="generator_steps"):
        build(c)


def test_configs_keep_kd_budget():
    """Same data, network, batch and updates as KD; from scratch: no distillation term and ADM's
    label table; digits_gmm's ADD and LADD at a tenth of KD's lr; students of the UNet keep lambda = 2.5."""
    for bench, scratch in (("grid25", True), ("digits_gmm", True), ("digits", False)):
        base = config_file(f"{bench}/kd", None)
        for method in ("add", "ladd"):
            c = config_file(f"{bench}/{method}", None)
            assert c.method == method and tuple(c.eval.nfes) == (1, 4)
            network = {**c.network.to_dict(), "label_init_std": base.network.label_init_std}
            assert (c.batch_size, c.train.num_steps, network) == (base.batch_size, base.train.num_steps, base.network.to_dict())
            assert c.network.label_init_std == (benchmarks.FROM_SCRATCH_LABEL_INIT_STD if scratch else base.network.label_init_std)
            assert c.optim.lr == (1e-4 if bench == "digits_gmm" else base.optim.lr)
            assert bool(c.adversarial.init_from_teacher) is (not scratch)
            if method == "ladd":  # from scratch: lower discriminator noise, 5 discriminator updates
                noise, updates = (-1.0, 5) if scratch else (1.0, 1)
                assert c.adversarial.noise_mean == noise and tuple(map(tuple, c.adversarial.critic_schedule)) == ((0, updates),)
            if method == "add":
                assert float(c.adversarial.distill_weight) == (0.0 if scratch else 2.5)


# --------------------------------------------------------------- protocol checks
@pytest.mark.parametrize("name", ["grid25/add", "grid25/ladd"])
def test_compiles_once_and_resumes(name, tmp_path):
    check_compiles_once_and_resumes(config_file(name), tmp_path, split=10)


def test_cli_smoke(tmp_path):
    check_cli_smoke("grid25/add.py:smoke", tmp_path, "add", (1, 4))
