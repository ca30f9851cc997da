"""The batched critic phase of the generator methods (issue 26 §5) is the per-update formulation:
the generator samples of every critic update come from one vmapped generator forward, and the GAN
head reads real and fake samples in one feature pass, yet the critic and head parameters after a
step equal those of the previous formulation (a generator forward per update, separate real and
fake head passes) computed by hand, in both ``critic_loop`` modes and with a varying schedule."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from protocol_checks import config as config_file

from jaxdistill.build import build
from jaxdistill.core.rng import derive
from jaxdistill.objectives.dmd import DistributionMatching
from jaxdistill.objectives.generator import critic_updates


@dataclasses.dataclass(frozen=True)
class SeparatePasses(DistributionMatching):
    """The previous formulation of the head's loss: one feature pass for real, one for fake."""

    def real_fake_logits(self, params, frozen, real_t, fake_t, t, cond):
        return self.head_logits(params, frozen, real_t, t, cond), self.head_logits(params, frozen, fake_t, t, cond)


@pytest.fixture(scope="module")
def two_step_dmd2():
    """grid25 DMD2 (MLP critic + GAN head, batch 64, constant lr) with a two-step generator trained
    by backward simulation, so each critic update's samples take two generator forwards; its batch
    and initial states."""
    config = config_file("grid25/dmd2", "smoke,2step")
    config.optim.warmup_steps = config.optim.decay_steps = 0
    config.batch_size = 64
    built = build(config)
    assert built.objective.settings.generator_steps == 2 and built.objective.settings.backward_simulation
    batch = jax.tree.map(jnp.asarray, next(built.data_factory(0)))
    return built, batch, jax.jit(built.objective.init)(jax.random.key(0), batch, built.frozen)


def with_critic_phase(obj, loop: str, schedule: tuple):
    """``obj`` with another critic loop and schedule (the optimisers' lr is constant, so their clock does not matter)."""
    return dataclasses.replace(obj, settings=dataclasses.replace(obj.settings, critic_loop=loop, critic_schedule=schedule))


def per_update_reference(obj, trainable, frozen, batch, rng, step):
    """n(step) critic updates as before batching: each draws its own samples with ``generate_train``."""
    reference = SeparatePasses(**{f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    update = jax.jit(reference.critic_update)
    state = trainable
    for i in range(int(critic_updates(obj.settings.critic_schedule, step))):
        key = jax.random.fold_in(derive(derive(rng, "critic"), "critic_phase"), i)
        x_g, cond = reference.generate_train(trainable["generator"].params, batch, derive(key, "critic_samples"))
        state, _ = update(state, frozen, batch, jax.lax.stop_gradient(x_g), cond, key)
    return state


# unrolled: all samples drawn up front, updates beyond n(step) discarded; loop with a constant
# schedule: drawn up front, indexed in the loop; loop with a varying one: drawn inside the loop.
@pytest.mark.parametrize("loop,schedule", [("unrolled", ((0, 2), (5, 1))), ("loop", ((0, 2),)), ("loop", ((0, 2), (5, 1)))])
def test_batched_critic_phase_equals_the_per_update_formulation(two_step_dmd2, loop, schedule):
    built, batch, trainable = two_step_dmd2
    obj = with_critic_phase(built.objective, loop, schedule)
    assert obj.loops_critic_updates == (loop == "loop")
    rng = jax.random.key(3)
    step_fn = jax.jit(obj.step)
    for step in (0, 6):  # n = 2, then 1 under the varying schedule
        out, metrics = step_fn(trainable, built.frozen, batch, rng, jnp.int32(step))
        manual = per_update_reference(obj, trainable, built.frozen, batch, rng, step)
        assert float(metrics["critic_updates"]) == int(critic_updates(schedule, step))
        for name in ("critic", "head"):
            # Adam's first steps are ~lr * sign(g) (lr 2e-3): float-rounding differences of the
            # batched passes in near-zero gradient entries show up to ~2e-5 in the parameters.
            for a, b in zip(jax.tree.leaves(out[name].params), jax.tree.leaves(manual[name].params)):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
            assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(out[name].params), jax.tree.leaves(trainable[name].params)))


def test_critic_samples_are_each_updates_own_draw_and_real_fake_logits_the_two_separate_passes(two_step_dmd2):
    built, batch, trainable = two_step_dmd2
    obj = built.objective
    assert obj.head is not None and obj.num_classes == 0
    params = trainable["generator"].params
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(5), i))(jnp.arange(3))
    batched = jax.jit(obj.critic_samples)(params, batch, keys)
    one = jax.jit(lambda key: obj.generate_train(params, batch, derive(key, "critic_samples"))[0])
    assert batched.shape == (3, *batch["x"].shape)
    for i in range(3):
        np.testing.assert_allclose(batched[i], one(keys[i]), rtol=1e-5, atol=1e-6)
    assert not np.allclose(batched[0], batched[1])  # fresh samples per update

    nets = {k: trainable[k].params for k in ("critic", "head")}
    t = obj.sample_t(jax.random.key(6), batch["x"].shape[0])
    real, fake = batch["x"] + 0.1, batched[0]
    pair = jax.jit(lambda r, f: obj.real_fake_logits(nets, built.frozen, r, f, t, None))(real, fake)
    separate = jax.jit(lambda x: obj.head_logits(nets, built.frozen, x, t, None))
    np.testing.assert_allclose(pair[0], separate(real), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pair[1], separate(fake), rtol=1e-5, atol=1e-6)


def test_passes_per_sample_counts_a_generator_forward_per_critic_update(two_step_dmd2):
    """Batching moves the critic phase's generator forwards, it does not remove them: per critic
    update 1 + (K - 1) generator forwards, critic forward + backward, 4 head feature passes."""
    obj = with_critic_phase(two_step_dmd2[0].objective, "unrolled", ((0, 3),))
    sim = 1  # K - 1 backward-simulation forwards, K = 2
    assert obj.passes_per_sample == pytest.approx((2 + sim + 1 + 1 + 2) + 3 * (1 + sim + 2 + 4))
