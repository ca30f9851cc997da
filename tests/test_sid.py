"""SiD / SiDA / SIM: the generator losses and gradients equal the papers' formulas evaluated
with exact mixture scores (autodiff of the log density, independent of the denoiser code);
gradients reach the generator through x_t inside teacher and critic while their parameters
get none; SIM's loss is the gradient of the pseudo-Huber score divergence and SiD with
alpha = 1/2 that of the Fisher divergence (the score-gradient theorem, checked by autodiff of
the divergences of a Gaussian generator); SiDA's adversarial terms match a hand computation;
and the shared protocol checks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from protocol_checks import check_cli_smoke, check_compiles_once_and_resumes, split_settings
from protocol_checks import config as config_file

from jaxdistill import benchmarks
from jaxdistill.build import build
from jaxdistill.config import ConfigError
from jaxdistill.core.rng import derive
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.process import get_process
from jaxdistill.models.gaussian_mixture import GaussianMixture, mixture_apply_fn
from jaxdistill.objectives import registry
from jaxdistill.objectives.sid import ScoreIdentityDistillation, sid_loss, sim_loss

EDM = get_process("edm")
TEACHER = GaussianMixture(means=np.array([[-2.0, 0.0], [2.0, 1.0]]), covariances=np.array([[0.3, 0.2], [0.1, 0.4]]))
CRITIC = GaussianMixture(means=np.array([[-1.0, 0.5], [1.5, -1.0], [0.0, 2.0]]), covariances=np.full((3, 2), 0.5))
PARAMS = {"A": jnp.array([[0.8, 0.3], [-0.2, 1.1]]), "b": jnp.array([0.1, -0.4])}


def linear_generator():
    """G(z) = z A + b, an x0-predicting 'network' that ignores t."""
    apply = lambda params, x, t, cond, *, train=False, rngs=None: x @ params["A"] + params["b"]
    return Denoiser(apply, EDM, "x0"), lambda rng, x: PARAMS


def objective(mode="sid", critic_mixture=CRITIC, **kwargs):
    generator, init = linear_generator()
    mixture = Denoiser(mixture_apply_fn(EDM), EDM, "x0")
    base = dict(init_from_teacher=False, critic_from_teacher=False, alpha=1.2, adv_critic_weight=0.0, adv_generator_weight=0.0)
    settings, rest = split_settings(registry.settings_class(mode), kwargs, base)
    obj = ScoreIdentityDistillation(
        settings=settings,
        generator=generator,
        generator_init_fn=init,
        tx=optax.sgd(0.1),
        event_shape=(2,),
        total_steps=10,
        teacher=mixture,
        critic=mixture,
        critic_init_fn=lambda rng, x: critic_mixture.params,
        tx_critic=optax.sgd(0.1),
        **rest,
    )
    return obj, {"teacher": TEACHER.params}


def exact_score(mixture, x, t):
    """grad_x log p_t(x) by autodiff of the noised mixture's log density."""
    alpha, sigma = EDM.alpha(t)[:, None], EDM.sigma(t)[:, None]
    return jax.grad(lambda y: jnp.sum(mixture.marginal_log_prob(y, alpha, sigma)))(x)


def draws(obj, rng, n):
    """The objective's noise: z (generator input), t and eps, by the same derived keys."""
    z = obj.prior(derive(derive(rng, "sample"), "prior"), n)
    t = obj.sample_t(derive(rng, "time"), n)
    eps = jax.random.normal(derive(rng, "noise"), (n, 2))
    return z, t, eps


def reference_loss(params, obj, rng, n, mode, alpha=1.2, c=1e-3, stop_x_t=False):
    """The papers' per-sample losses in score form on exact scores (EDM: alpha_t = 1, sigma_t = t):
    SiD   (D_T - D_F)^T ((D_T - x_g) - alpha (D_T - D_F)) / (d w),
    SIM   t^2 / w [sqrt(||y||^2 + c^2) - c + y^T (s_F(x_t) + (x_t - x_g) / t^2) / sqrt(||y||^2 + c^2)],
    y = s_T - s_F, D = x_t + t^2 s (Tweedie), w = sg(mean |x_g - D_T|)."""
    z, t, eps = draws(obj, rng, n)
    x_g = z @ params["A"] + params["b"]
    x_t = x_g + t[:, None] * eps
    x_in = jax.lax.stop_gradient(x_t) if stop_x_t else x_t
    s_t, s_f = exact_score(TEACHER, x_in, t), exact_score(CRITIC, x_in, t)
    d_t, d_f = x_in + t[:, None] ** 2 * s_t, x_in + t[:, None] ** 2 * s_f
    w = jax.lax.stop_gradient(jnp.mean(jnp.abs(x_g - d_t), axis=1))
    if mode == "sid":
        per = jnp.sum((d_t - d_f) * ((d_t - x_g) - alpha * (d_t - d_f)), axis=1) / 2 / w
    else:
        y = s_t - s_f
        norm = jnp.sqrt(jnp.sum(y**2, axis=1) + c**2)
        per = t**2 / w * (norm - c + jnp.sum(y * (s_f + (x_t - x_g) / t[:, None] ** 2), axis=1) / norm)
    return jnp.mean(per)


@pytest.mark.parametrize("mode", ["sid", "sim"])
def test_loss_and_gradient_match_the_paper_formula_on_exact_scores(mode):
    obj, frozen = objective(mode)
    nets = {"critic": CRITIC.params}
    rng, n = jax.random.key(3), 256
    batch = {"x": jnp.zeros((n, 2))}
    loss_fn = jax.value_and_grad(lambda p: obj.generator_loss(p, nets, frozen, batch, rng, jnp.int32(0))[0])
    ref_fn = jax.value_and_grad(lambda p: reference_loss(p, obj, rng, n, mode))
    (loss, grads), (ref_loss, ref) = jax.jit(loss_fn)(PARAMS), jax.jit(ref_fn)(PARAMS)
    np.testing.assert_allclose(loss, ref_loss, rtol=2e-3, atol=1e-6)
    for k in ("A", "b"):  # float32: scores ~ 1 / t^2 at t down to 0.002 lose a few digits
        np.testing.assert_allclose(grads[k], ref[k], rtol=5e-3, atol=2e-3 * np.abs(ref[k]).max())
        assert np.abs(ref[k]).max() > 1e-3  # a real, non-trivial gradient
    # through x_t inside T and F: the gradient with x_t stopped there is a different one
    stopped = jax.jit(jax.grad(lambda p: reference_loss(p, obj, rng, n, mode, stop_x_t=True)))(PARAMS)
    assert np.abs(stopped["A"] - grads["A"]).max() > 10 * np.abs(grads["A"] - ref["A"]).max() + 1e-3


@pytest.mark.parametrize("mode", ["sid", "sim"])
def test_teacher_and_critic_parameters_get_no_gradient(mode):
    obj, _ = objective(mode)
    batch = {"x": jnp.zeros((64, 2))}

    def loss(teacher_params, critic_params):
        return obj.generator_loss(PARAMS, {"critic": critic_params}, {"teacher": teacher_params}, batch, jax.random.key(1), jnp.int32(0))[0]

    g_teacher, g_critic = jax.jit(jax.grad(loss, argnums=(0, 1)))(TEACHER.params, CRITIC.params)
    leaves = jax.tree.leaves(g_teacher) + jax.tree.leaves(g_critic)
    assert leaves and all(float(jnp.abs(x).max()) == 0.0 for x in leaves)


@pytest.mark.parametrize("mode", ["sid", "sim"])
def test_generator_gradient_vanishes_when_the_critic_is_the_teacher(mode):
    obj, frozen = objective(mode, critic_mixture=TEACHER)
    batch = {"x": jnp.zeros((128, 2))}
    grads = jax.jit(jax.grad(lambda p: obj.generator_loss(p, {"critic": TEACHER.params}, frozen, batch, jax.random.key(0), jnp.int32(0))[0]))(PARAMS)
    for leaf in jax.tree.leaves(grads):
        np.testing.assert_array_equal(leaf, 0.0)


def gaussian_divergence_gradients(loss_of, divergence_of, sigma=2.0, nodes=16):
    """Generator x_g = 2.5 z A + b ~ N(b, 6.25 A^T A) with the exact score of its noised law
    q_theta,t = N(b, 6.25 A^T A + sigma^2 I) as critic. Returns (grad of E[loss_of] with the critic
    frozen at theta, grad of E_{x_t ~ q_theta,t} divergence_of(s_T - s_q_theta)), both expectations
    over (z, eps) ~ N(0, I_4) by tensor-product Gauss-Hermite quadrature (deterministic)."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    grid = np.stack(np.meshgrid(x, x, x, x, indexing="ij"), -1).reshape(-1, 4)
    weight = np.prod(np.stack(np.meshgrid(w, w, w, w, indexing="ij"), -1).reshape(-1, 4), axis=1) / w.sum() ** 4
    z, eps, weight = (jnp.asarray(a, jnp.float32) for a in (grid[:, :2], grid[:, 2:], weight))
    t = jnp.full((z.shape[0],), sigma)

    def score_q(p, x):
        cov = 6.25 * p["A"].T @ p["A"] + sigma**2 * jnp.eye(2)
        return -jnp.linalg.solve(cov, (x - p["b"]).T).T

    def sample(p):
        x_g = 2.5 * z @ p["A"] + p["b"]
        return x_g, x_g + sigma * eps

    def method(p):
        x_g, x_t = sample(p)
        s_t, s_f = exact_score(TEACHER, x_t, t), score_q(jax.lax.stop_gradient(p), x_t)
        return jnp.sum(weight * loss_of(x_g, x_t + sigma**2 * s_t, x_t + sigma**2 * s_f))

    def divergence(p):
        _, x_t = sample(p)
        return jnp.sum(weight * divergence_of(exact_score(TEACHER, x_t, t) - score_q(p, x_t)))

    return jax.jit(jax.grad(method))(PARAMS), jax.jit(jax.grad(divergence))(PARAMS)


def assert_same_gradient(got, want, tol=5e-3):
    scale = max(float(np.abs(want[k]).max()) for k in ("A", "b"))
    assert scale > 1e-2  # a real, non-trivial gradient
    for k in ("A", "b"):
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=tol * scale)


def test_sim_loss_is_the_gradient_of_the_pseudo_huber_score_divergence():
    """The score-gradient theorem: d(y) + d'(y)^T (s_F - grad log q(x_t | x_g)) with F = sg(q_theta).
    (Dropping the x_t-dependence of d'(y), or using d'(y)^T (s_T - grad log q(x_t | x_g)) instead,
    misses by 9-27% here.)"""
    c, k = 0.3, 1.0 / 2.0**2  # k = alpha / sigma^2
    got, want = gaussian_divergence_gradients(
        lambda x_g, d_t, d_f: sim_loss(x_g, d_t, d_f, jnp.full((x_g.shape[0],), k), c),
        lambda y: jnp.sqrt(jnp.sum(y**2, axis=1) + c**2) - c,
    )
    assert_same_gradient(got, want)


def test_sid_with_alpha_one_half_is_the_gradient_of_the_fisher_divergence():
    """2 d k^2 sid_loss(alpha = 1/2) has the gradient of E ||s_T - s_q||^2 (SIM with d = ||.||^2)."""
    k = 1.0 / 2.0**2
    got, want = gaussian_divergence_gradients(
        lambda x_g, d_t, d_f: 2 * 2 * k**2 * sid_loss(x_g, d_t, d_f, 0.5),
        lambda y: jnp.sum(y**2, axis=1),
    )
    assert_same_gradient(got, want)


def test_generator_input_is_init_sigma_noise():
    obj, _ = objective("sid", generator_steps=2, eval_nfes=(1, 2))
    ts = obj.generator_times()
    np.testing.assert_allclose(ts, [2.5, ((2.5 ** (1 / 7) + EDM.t_min ** (1 / 7)) / 2) ** 7], rtol=1e-5)
    key = jax.random.key(0)
    np.testing.assert_allclose(obj.prior(key, 8), 2.5 * jax.random.normal(key, (8, 2)), rtol=1e-6)
    lo, hi = EDM.t_min ** (1 / 7), EDM.t_max ** (1 / 7)
    sigma = obj.sample_t(key, 4096)  # SiD's tmax = 800 of 1000: u in [0, 0.8] on the Karras interpolation
    assert EDM.t_min <= float(sigma.min()) < 0.01 and 0.95 * (lo + 0.8 * (hi - lo)) ** 7 < float(sigma.max()) <= (lo + 0.8 * (hi - lo)) ** 7


def test_passes_per_sample():
    for mode, passes in (("sid", 9.0), ("sim", 9.0)):
        assert objective(mode)[0].passes_per_sample == passes
    sida = build(config_file("grid25/sida")).objective
    assert sida.passes_per_sample == 9.0 + 2.0 + 4.0  # + critic features: x_t (f + b), real and fake (f + b each)
    guided = objective("sid", guidance=2.0)[0]
    assert guided.passes_per_sample == 11.0  # the guided teacher's forward and backward are two passes each


def test_sida_adversarial_terms_match_a_hand_computation():
    """Generator: mean_b BCE(clip(D(x_t)), 1) * mean_b 1 / w; critic: mean_b lambda(sigma_b) / d *
    [BCE(D(x_real,t), 1) + BCE(D(x_fake,t), 0)] / 2 at the DSM's sigma and noise."""
    built = build(config_file("grid25/sida"))
    obj, frozen = built.objective, built.frozen
    batch = jax.tree.map(jnp.asarray, next(built.data_factory(0)))
    trainable = jax.jit(obj.init)(jax.random.key(0), batch, frozen)
    params = {k: trainable[k].params for k in ("critic", "head")}
    logit = lambda x, t: obj.head.apply(params["head"], obj.critic.features(params["critic"], x, t, None), None)
    bce = lambda l, label: -jnp.log(jax.nn.sigmoid(l) if label else 1.0 - jax.nn.sigmoid(l))
    rng = jax.random.key(4)
    n = batch["x"].shape[0]

    def by_hand(generator_params):
        x_g, _ = obj.generate_train(generator_params, batch, derive(rng, "sample"))
        t = obj.sample_t(derive(rng, "time"), n)
        x_t = x_g + t[:, None] * jax.random.normal(derive(rng, "noise"), x_g.shape)
        w = jnp.maximum(jnp.mean(jnp.abs(x_g - obj.teacher_x0(frozen, x_t, t, None)), axis=1), 1e-5)
        generator = jnp.mean(bce(jnp.clip(logit(x_t, t), -10, 10), 1)) * jnp.mean(1 / w)
        t = EDM.sample_t(derive(rng, "critic_time"), n)
        eps = jax.random.normal(derive(rng, "critic_noise"), x_g.shape)
        sd = obj.critic.sigma_data
        lam = (t**2 + sd**2) / (t * sd) ** 2
        real, fake = logit(batch["x"] + t[:, None] * eps, t), logit(x_g + t[:, None] * eps, t)
        critic = jnp.mean(lam) / 2 * 0.5 * (jnp.mean(bce(real, 1)) + jnp.mean(bce(fake, 0)))
        return x_g, generator, critic

    def by_objective(generator_params, x_g):
        _, gen_metrics = obj.generator_loss(generator_params, params, frozen, batch, rng, jnp.int32(0))
        _, critic_metrics = obj.critic_loss(params, frozen, batch, x_g, None, rng)
        return gen_metrics["adv_generator_loss"], critic_metrics["adv_critic_loss"]

    x_g, want_generator, want_critic = jax.jit(by_hand)(trainable["generator"].params)
    got_generator, got_critic = jax.jit(by_objective)(trainable["generator"].params, x_g)
    np.testing.assert_allclose(got_generator, want_generator, rtol=1e-4)
    np.testing.assert_allclose(got_critic, want_critic, rtol=1e-4)
    assert float(want_generator) > 0 and float(want_critic) > 0


def test_configs_keep_kd_budget():
    for bench, scratch in (("grid25", True), ("digits_gmm", True), ("digits", False)):
        base = config_file(f"{bench}/kd", None)
        for method in ("sid", "sida", "sim"):
            c = config_file(f"{bench}/{method}", None)
            assert c.method == method and tuple(c.eval.nfes) == (1,)
            # Same architecture; from scratch, ADM's label table (and on digits_gmm a tenth of KD's lr).
            network = {**c.network.to_dict(), "label_init_std": base.network.label_init_std}
            assert (c.batch_size, c.train.num_steps, network) == (base.batch_size, base.train.num_steps, base.network.to_dict())
            assert c.network.label_init_std == (benchmarks.FROM_SCRATCH_LABEL_INIT_STD if scratch else base.network.label_init_std)
            assert c.optim.lr == (1e-4 if bench == "digits_gmm" else base.optim.lr)
            paper_alpha = 1.0 if method == "sida" else 1.2
            assert float(c.sid.alpha) == (1.0 if (bench, method) == ("grid25", "sid") else paper_alpha)
            assert bool(c.sid.init_from_teacher) is bool(c.sid.critic_from_teacher) is (not scratch)
            if not scratch:
                assert (c.teacher.kind, c.teacher.workdir) == ("checkpoint", "runs/digits/teacher")
            assert (float(c.sid.adv_generator_weight) > 0) is (method == "sida")


def test_compiles_once_and_resumes(tmp_path):
    check_compiles_once_and_resumes(config_file("grid25/sid"), tmp_path, split=10)


def test_cli_smoke(tmp_path):
    check_cli_smoke("grid25/sid.py:smoke", tmp_path, "sid", (1,))


@pytest.mark.parametrize(
    "method, override, message",
    [
        ("sid", {"adv_generator_weight": 0.1}, "adversarial weights"),
        ("sim", {"huber_c": 0.0}, "huber_c"),
        ("sid", {"init_sigma": 100.0}, "init_sigma"),
        ("sida", {"init_from_teacher": True}, "init_from_teacher"),
    ],
)
def test_bad_configs_are_rejected(method, override, message):
    config = config_file(f"grid25/{method}")
    for k, v in override.items():
        config.sid[k] = v
    with pytest.raises(ConfigError, match=message):
        build(config)
