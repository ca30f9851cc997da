"""Gradient accumulation (``train.microbatches`` = k): every gradient an objective computes is the
mean over k microbatches (rows i, i + k, ... with key fold_in(rng, i)) of the per-microbatch
gradients, checked by hand for teacher training, DMD2's critic and generator updates and
consistency distillation; a split-invariant loss gives k = 2 the update of k = 1; one optimiser and
EMA update per step whatever k; accumulation lowers the compiled step's temporary memory; bad
values and the losses that couple a batch's samples are ConfigErrors naming the field."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from protocol_checks import config as config_file

from jaxdistill.build import build
from jaxdistill.config import ConfigError, validate
from jaxdistill.core.rng import derive
from jaxdistill.objectives.common import microbatch_grad, split_microbatches
from jaxdistill.objectives.denoising import DenoisingObjective

RNG = jax.random.key(7)


def built(name: str, k: int = 1, batch_size: int = 16, width: int = 32, depth: int = 1, **overrides):
    """(objective, frozen, batch) of ``configs/<name>.py:smoke`` with ``train.microbatches = k``,
    a small MLP and a constant learning rate (so the first update moves the parameters)."""
    c = config_file(name)
    c.batch_size, c.train.microbatches, c.optim.warmup_steps, c.optim.decay_steps = batch_size, k, 0, 0
    c.network.width, c.network.depth = width, depth
    for key, value in overrides.items():
        section, field = key.split("__")
        c[section][field] = value
    b = build(c)
    batch = jax.tree.map(jnp.asarray, next(b.data_factory(0)))
    return b.objective, b.frozen, batch


def with_sgd(objective, **extra):
    """``objective`` updating by p <- p - g (SGD, rate 1), so an update's gradient is old - new."""
    return dataclasses.replace(objective, tx=optax.sgd(1.0), **extra)


def applied_grads(old, new):
    return jax.tree.map(lambda a, b: np.asarray(a, np.float64) - np.asarray(b, np.float64), old, new)


def by_hand(loss_fn, params, batched, rng, k):
    """1/k sum_i grad loss_fn(params, batched[i::k], fold_in(rng, i)), one microbatch at a time."""
    grad = jax.jit(lambda p, part, key: jax.grad(loss_fn, has_aux=True)(p, part, key)[0])
    grads = [grad(params, jax.tree.map(lambda a: a[i::k], batched), jax.random.fold_in(rng, i)) for i in range(k)]
    return jax.tree.map(lambda *g: sum(np.asarray(x, np.float64) for x in g) / k, *grads)


def assert_close(a, b, atol=1e-6):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=atol), a, b)


def largest(tree) -> float:
    return max(float(np.max(np.abs(np.asarray(x)))) for x in jax.tree.leaves(tree))


def test_split_is_strided_and_microbatch_grad_of_a_mean_is_the_full_gradient():
    x = jnp.arange(24.0).reshape(12, 2)
    parts = split_microbatches({"x": x}, 3)["x"]
    np.testing.assert_array_equal(parts[1], x[1::3])
    # L = mean_b ||w - x_b||^2 has gradient 2 (w - mean_b x_b) for any split into equal parts
    loss = lambda w, b, rng: (jnp.mean(jnp.sum(jnp.square(w - b["x"]), axis=1)), {"loss": jnp.mean(b["x"][:, 0])})
    w = jnp.array([0.5, -1.0])
    for k in (1, 2, 4):
        grads, metrics = microbatch_grad(loss, w, {"x": x}, RNG, k)
        np.testing.assert_allclose(grads, 2.0 * (w - x.mean(axis=0)), rtol=1e-6)
        np.testing.assert_allclose(metrics["loss"], x[:, 0].mean(), rtol=1e-6)  # a mean metric averages to the batch's


def test_teacher_step_applies_the_mean_of_the_microbatch_gradients():
    objective, frozen, batch = built("grid25/teacher", k=4)
    objective = with_sgd(objective)
    trainable = jax.jit(objective.init)(RNG, batch, frozen)
    new, _ = jax.jit(objective.step)(trainable, frozen, batch, RNG, jnp.int32(0))
    params = trainable["model"].params
    expected = by_hand(objective.loss, params, batch, RNG, 4)
    assert_close(applied_grads(params, new["model"].params), expected)
    # which is not the gradient of the whole batch at the unsplit key
    assert largest(applied_grads(expected, by_hand(objective.loss, params, batch, RNG, 1))) > 1e-3


def test_dmd2_critic_and_generator_updates_accumulate():
    """One DMD2 step (GAN head on the critic, one critic update): the critic and head gradients on
    the generator samples of the whole batch split with it, then the generator's at the updated critic and head."""
    objective, frozen, batch = built("grid25/dmd2", k=2, dmd__critic_schedule=((0, 1),))
    objective = with_sgd(objective, tx_critic=optax.sgd(1.0), tx_head=optax.sgd(1.0))
    assert objective.settings.gan_critic_weight > 0 and objective.settings.gan_generator_weight > 0
    trainable = jax.jit(objective.init)(RNG, batch, frozen)
    rng, step = jax.random.key(1), jnp.int32(3)
    new, _ = jax.jit(objective.step)(trainable, frozen, batch, rng, step)
    nets = {k: trainable[k].params for k in ("critic", "head")}
    critic_rng = jax.random.fold_in(derive(derive(rng, "critic"), "critic_phase"), 0)  # the phase's first update
    x_g, cond = objective.generate_train(trainable["generator"].params, batch, derive(critic_rng, "critic_samples"))
    loss = lambda p, part, key: objective.critic_loss(p, frozen, part["batch"], part["x_g"], part["cond"], key)
    both = {"batch": batch, "x_g": x_g, "cond": cond}
    assert_close(applied_grads(nets, {k: new[k].params for k in nets}), by_hand(loss, nets, both, critic_rng, 2))
    nets = {k: new[k].params for k in ("critic", "head")}
    loss = lambda p, part, key: objective.generator_loss(p, nets, frozen, part, key, step)
    expected = by_hand(loss, trainable["generator"].params, batch, derive(rng, "generator"), 2)
    assert_close(applied_grads(trainable["generator"].params, new["generator"].params), expected)


def test_consistency_distillation_step_accumulates():
    objective, frozen, batch = built("grid25/cd", k=2)
    objective = with_sgd(objective)
    trainable = jax.jit(objective.init)(RNG, batch, frozen)
    step = jnp.int32(5)
    new, _ = jax.jit(objective.step)(trainable, frozen, batch, RNG, step)
    params = trainable["student"].params
    target = trainable["target"] if objective.settings.uses_target_network else params
    loss = lambda p, part, key: objective.loss(p, target, frozen, part, key, step)
    assert_close(applied_grads(params, new["student"].params), by_hand(loss, params, batch, RNG, 2))


@dataclasses.dataclass(frozen=True)
class PerExampleKeys(DenoisingObjective):
    """Teacher training whose noise for example b is drawn with key fold_in(key(3), b's index):
    its loss, a mean over examples, does not depend on how the batch is split."""

    def loss(self, params, batch, rng):
        def one(x, index):
            return super(PerExampleKeys, self).loss(params, {"x": x[None]}, jax.random.fold_in(jax.random.key(3), index))[0]

        loss = jnp.mean(jax.vmap(one)(batch["x"], batch["index"]))
        return loss, {"loss": loss}


def test_split_invariant_loss_gives_the_full_batch_update_with_adam_and_ema():
    objective, frozen, batch = built("grid25/teacher")
    batch = {"x": batch["x"], "index": jnp.arange(batch["x"].shape[0])}
    one = PerExampleKeys(**{f.name: getattr(objective, f.name) for f in dataclasses.fields(objective)})
    trainable = jax.jit(one.init)(RNG, batch, frozen)
    after_one, m1 = jax.jit(one.step)(trainable, frozen, batch, RNG, jnp.int32(0))
    after_two, m2 = jax.jit(dataclasses.replace(one, microbatches=2).step)(trainable, frozen, batch, RNG, jnp.int32(0))
    assert_close(after_one, after_two)  # parameters, Adam moments and EMA
    np.testing.assert_allclose(m1["loss"], m2["loss"], rtol=1e-6)
    assert largest(applied_grads(trainable["model"].params, after_one["model"].params)) > 1e-4  # the update moved them


def update_counts(state) -> set[int]:
    """The optimiser's update counts (Adam's, the schedule's) in ``state``."""
    leaves = jax.tree_util.tree_leaves_with_path(state.opt_state)
    return {int(leaf) for path, leaf in leaves if getattr(path[-1], "name", None) == "count"}


def test_one_optimiser_and_ema_update_per_step_whatever_k():
    objective, frozen, batch = built("grid25/dmd2", k=4, dmd__critic_schedule=((0, 2),))
    trainable = jax.jit(objective.init)(RNG, batch, frozen)
    new, metrics = jax.jit(objective.step)(trainable, frozen, batch, RNG, jnp.int32(0))
    assert update_counts(new["generator"]) == {1} and update_counts(new["critic"]) == update_counts(new["head"]) == {2}
    assert float(metrics["critic_updates"]) == 2.0
    d = objective.ema_decay
    assert_close(new["generator"].ema, jax.tree.map(lambda e, p: d * e + (1 - d) * p, trainable["generator"].ema, new["generator"].params))
    assert largest(applied_grads(trainable["generator"].params, new["generator"].params)) > 1e-5


def temp_bytes(objective, frozen, batch) -> int:
    trainable = objective.init(RNG, batch, frozen)
    compiled = jax.jit(objective.step).lower(trainable, frozen, batch, RNG, jnp.int32(0)).compile()
    return int(compiled.memory_analysis().temp_size_in_bytes)


def test_accumulation_lowers_the_compiled_steps_temporary_memory():
    """Teacher training of a width-256 MLP at batch 4096 (activations dominate): k = 4 keeps one
    1024-example microbatch's activations live."""
    one, frozen, batch = built("grid25/teacher", k=1, batch_size=4096, network__width=256)
    full = temp_bytes(one, frozen, batch)
    four = temp_bytes(dataclasses.replace(one, microbatches=4), frozen, batch)
    assert four < 0.4 * full, (full, four)


@pytest.mark.parametrize(
    "k, batch_size, problem",
    [(0, 16, "integer >= 1"), (-2, 16, "integer >= 1"), (3, 16, "must divide batch_size=16")],
)
def test_bad_microbatches_name_the_field(k, batch_size, problem):
    c = config_file("grid25/teacher")
    c.batch_size, c.train.microbatches = batch_size, k
    with pytest.raises(ConfigError, match=f"train.microbatches.*{problem}"):
        validate(c)


def test_microbatches_must_split_every_devices_share():
    c = config_file("grid25/teacher")
    c.batch_size, c.train.microbatches = 16, 4
    validate(c, num_devices=4)  # each device's 4 examples in 4 microbatches of 1
    c.train.microbatches = 8
    with pytest.raises(ConfigError, match=r"train.microbatches=8 must divide each of the 4 devices' 4 examples"):
        validate(c, num_devices=4)


@pytest.mark.parametrize("method", ["fdistill", "sida"])
def test_batch_coupled_losses_refuse_accumulation(method):
    c = config_file(f"grid25/{method}")
    c.batch_size, c.train.microbatches = 16, 2
    with pytest.raises(ConfigError, match=f"train.microbatches=2 cannot accumulate {method}"):
        build(c)
