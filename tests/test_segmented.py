"""Segmented and target-driven consistency distillation (jaxdistill/objectives/segmented.py): Hyper-SD's TSCD
(each target in the point's own segment, mapped to its start; K = 1 is TCD with the target at index 0; the
stage switch inside one compiled step), and (slow) the SD 1.5 smoke preset through `jaxdistill train`."""
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_lcm import SHAPE, text_eps_teacher
from test_tcd import train_smoke

from jaxdistill.core.conditioning import TextCondition
from jaxdistill.objectives.segmented import HyperSD, HyperSDObjective
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


@pytest.mark.slow
def test_the_sd15_hypersd_lora_smoke_preset_trains_both_stages_through_the_cli(sd15_cache, tmp_path):
    folder, cache, _ = sd15_cache
    rows = train_smoke("sd15/hypersd_lora.py", folder, cache, tmp_path / "run")
    assert [r["segments"] for r in rows] == [2.0, 1.0]
