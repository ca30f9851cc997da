"""EDM2's power-function EMA and post-hoc EMA reconstruction (jaxdistill.core.phema), checked
against closed forms and against EMAs computed directly from synthetic parameter trajectories."""
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import traverse_util
from protocol_checks import config

from jaxdistill.build import _run_config_problem, build, config_from_json
from jaxdistill.cli import main
from jaxdistill.config import validate
from jaxdistill.core.errors import ConfigError
from jaxdistill.core.phema import (
    SIGMA_REL_MAX,
    PowerEma,
    fit_error,
    gamma_to_sigma_rel,
    phema_weights,
    profile_inner,
    reconstruct,
    sigma_rel_to_gamma,
)
from jaxdistill.core.state import NetState, default_optimizer_config, make_optimizer, update_count
from jaxdistill.models.ports.converted import converted_teacher, load_converted, read_converted, save_converted
from jaxdistill.models.registry import default_network_config, make_network


def step_weights(T: int, gamma: float) -> np.ndarray:
    """Weights of updates 1..T in the power EMA after T updates: the profile's mass on [s-1, s],
    (s^(gamma+1) - (s-1)^(gamma+1)) / T^(gamma+1) (from unrolling beta_t = (1 - 1/t)^(gamma+1))."""
    s = np.arange(1, T + 1, dtype=np.float64)
    return (s ** (gamma + 1) - (s - 1) ** (gamma + 1)) / float(T) ** (gamma + 1)


def test_gamma_and_sigma_rel_match_the_profile_std_and_the_papers_values():
    # EDM2's two training profiles: sigma_rel 0.05 and 0.10 are gamma 16.97 and 6.94 (paper Sec. 3.1).
    assert sigma_rel_to_gamma(0.05) == pytest.approx(16.9722, abs=1e-4)
    assert sigma_rel_to_gamma(0.10) == pytest.approx(6.9372, abs=1e-4)
    t = np.linspace(0.0, 1.0, 400_001)
    for gamma in (0.0, 0.5, 3.0, 6.9372, 16.9722):
        # The std of the density (gamma+1) t^gamma on [0, 1], by quadrature, is sigma_rel.
        p = (gamma + 1) * t**gamma
        mean = np.trapezoid(t * p, t)
        std = math.sqrt(np.trapezoid((t - mean) ** 2 * p, t))
        assert gamma_to_sigma_rel(gamma) == pytest.approx(std, rel=1e-6)
        assert sigma_rel_to_gamma(gamma_to_sigma_rel(gamma)) == pytest.approx(gamma, rel=1e-9, abs=1e-9)
    assert gamma_to_sigma_rel(0.0) == pytest.approx(1 / math.sqrt(12))  # the uniform average
    # sigma_rel peaks at phi^(-5/2) at gamma = phi - 2 (phi the golden ratio).
    phi = (1 + math.sqrt(5)) / 2
    assert gamma_to_sigma_rel(phi - 2) == pytest.approx(SIGMA_REL_MAX, rel=1e-12)
    assert max(gamma_to_sigma_rel(g) for g in np.linspace(-0.99, 5, 2000)) <= SIGMA_REL_MAX
    assert sigma_rel_to_gamma(SIGMA_REL_MAX) == pytest.approx(phi - 2, abs=1e-6)


def test_profile_inner_products_match_quadrature():
    t = np.linspace(0.0, 3.0, 600_001)
    for (ta, ga), (tb, gb) in [((1.0, 6.94), (3.0, 16.97)), ((2.5, 0.3), (1.2, 4.0)), ((3.0, 2.0), (3.0, 2.0))]:
        pa = np.where(t <= ta, (ga + 1) * t**ga / ta ** (ga + 1), 0.0)
        pb = np.where(t <= tb, (gb + 1) * t**gb / tb ** (gb + 1), 0.0)
        assert float(profile_inner(ta, ga, tb, gb)) == pytest.approx(np.trapezoid(pa * pb, t), rel=1e-4)


def _track(rule, thetas, nan_at=()):
    """Drive a NetState through the parameter trajectory ``thetas`` (updates params <- theta_s
    exactly), with a non-finite gradient (a skipped update) before the updates in ``nan_at``."""
    tx = optax.scale_by_schedule(lambda count: -1.0)  # params - grads, with an update count
    state = NetState.create({"w": jnp.zeros(thetas.shape[1])}, tx)
    step = jax.jit(lambda st, g: st.apply_gradients(g, rule)[0])
    for s, theta in enumerate(thetas):
        if s in nan_at:
            state = step(state, {"w": jnp.full(thetas.shape[1], jnp.nan)})
        state = step(state, {"w": state.params["w"] - theta})
    return state


@pytest.mark.parametrize("sigma_rel", [0.05, 0.10, 0.28])
def test_training_power_ema_is_the_profile_weighted_average_of_the_trajectory(sigma_rel):
    thetas = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
    rule = PowerEma(sigma_rel)
    state = _track(rule, thetas, nan_at=(4, 7))
    assert int(update_count(state.opt_state)) == 12  # skipped updates do not advance the EMA's clock
    expected = step_weights(12, rule.gamma) @ thetas.astype(np.float64)
    np.testing.assert_allclose(state.ema["w"], expected, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(state.ema["w"], _track(rule, thetas).ema["w"], rtol=0, atol=0)


def test_power_ema_weight_is_accurate_in_float32_at_long_runs():
    rule = PowerEma(0.05)
    for t in (1, 2, 10, 1_000, 1_000_000, 10_000_000):
        exact = 1.0 - (1.0 - 1.0 / t) ** (rule.gamma + 1)  # float64
        assert float(rule.weight(jnp.asarray(t, jnp.int32))) == pytest.approx(exact, rel=2e-6)


def test_power_ema_with_the_librarys_optimizer_starts_at_the_first_update():
    params = {"w": jnp.arange(3.0)}
    state = NetState.create(params, make_optimizer(default_optimizer_config()))
    rule = PowerEma(0.1)
    one, _ = state.apply_gradients({"w": jnp.ones(3)}, rule)
    np.testing.assert_array_equal(one.ema["w"], one.params["w"])  # beta_1 = 0
    two, _ = one.apply_gradients({"w": jnp.ones(3)}, rule)
    beta = 0.5 ** (rule.gamma + 1)
    np.testing.assert_allclose(two.ema["w"], beta * one.params["w"] + (1 - beta) * two.params["w"], rtol=1e-6)
    with pytest.raises(ValueError, match="no 'count' field"):
        NetState.create(params, optax.sgd(0.1)).apply_gradients({"w": jnp.ones(3)}, rule)


def test_config_ema_sigma_rel_gives_the_teacher_and_student_objectives_a_power_ema():
    c = config("grid25/teacher")
    assert c.get("ema_sigma_rel") is None and build(c).objective.ema_decay == c.ema_decay  # the default is unchanged
    c.ema_sigma_rel = 0.1
    assert build(c).objective.ema_decay == PowerEma(0.1)  # what apply_gradients reads (tests above)
    saved = c.to_dict()  # a run saved before ema_sigma_rel existed reads back with a constant-decay EMA
    del saved["ema_sigma_rel"]
    assert _run_config_problem(saved) is None and config_from_json(saved).ema_sigma_rel is None
    kd = config("grid25/kd")
    kd.ema_sigma_rel = 0.05
    assert build(kd).objective.ema_decay == PowerEma(0.05)
    kd.ema_sigma_rel = 0.4
    with pytest.raises(ConfigError, match=r"ema_sigma_rel must be in \(0, 0.3003\]"):
        validate(kd)


def _snapshots(thetas, times, gammas):
    """The power EMAs of the trajectory at each (time, gamma): step_weights @ thetas[:time]."""
    return [step_weights(t, g) @ thetas[:t] for t, g in zip(times, gammas)]


def test_reconstruction_from_snapshots_matches_the_directly_computed_target_ema():
    rng = np.random.default_rng(1)
    T, every = 512, 32
    thetas = np.cumsum(rng.normal(size=(T, 4)), axis=0)  # a random-walk trajectory
    times = np.repeat(np.arange(every, T + 1, every), 2)
    gammas = np.tile([sigma_rel_to_gamma(0.05), sigma_rel_to_gamma(0.10)], T // every)
    snaps = _snapshots(thetas, times, gammas)
    for sigma_rel in (0.04, 0.07, 0.15, 0.2):  # fit errors 1.0e-2, 3.8e-3, 9.0e-3, 2.3e-2
        target_gamma = sigma_rel_to_gamma(sigma_rel)
        weights = phema_weights(times, gammas, target_gamma)
        assert weights.sum() == pytest.approx(1.0, abs=1e-12)
        assert fit_error(times, gammas, weights, target_gamma, T) < 0.025
        # Over the trajectory, the combined step weights are the target's.
        combined = sum(w * np.pad(step_weights(t, g), (0, T - t)) for w, t, g in zip(weights, times, gammas))
        target = step_weights(T, target_gamma)
        assert np.abs(combined - target).sum() < 0.03
        got = reconstruct([{"w": s} for s in snaps], weights)["w"]
        want = target @ thetas
        nearest = min(np.abs(s - want).max() for s in snaps)  # the best a single stored snapshot does
        assert np.abs(got - want).max() < 0.05 * nearest


def test_reconstruction_at_a_snapshot_profile_returns_that_snapshot():
    thetas = np.cumsum(np.random.default_rng(2).normal(size=(256, 3)), axis=0)
    times = np.repeat([64, 128, 192, 256], 2)
    gammas = np.tile([sigma_rel_to_gamma(0.05), sigma_rel_to_gamma(0.10)], 4)
    snaps = [{"w": s.astype(np.float32)} for s in _snapshots(thetas, times, gammas)]
    for i in (7, 3):  # the latest 0.10 snapshot; the 0.10 one at 128 (later snapshots get weight 0)
        weights = phema_weights(times, gammas, gammas[i], target_time=times[i])
        np.testing.assert_allclose(weights, np.eye(8)[i], atol=1e-7)
        out = reconstruct(snaps, weights)["w"]
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, snaps[i]["w"], rtol=1e-6, atol=1e-6)


def test_bad_inputs_are_clear_errors():
    for bad in (0.0, -0.1, 0.31, float("nan")):
        with pytest.raises(ConfigError, match="sigma_rel must be in"):
            sigma_rel_to_gamma(bad)
        with pytest.raises(ConfigError, match="sigma_rel must be in"):
            PowerEma(bad)
    with pytest.raises(ConfigError, match="gamma > -1"):
        gamma_to_sigma_rel(-1.0)
    with pytest.raises(ConfigError, match="at least one snapshot"):
        phema_weights([], [], 1.0)
    with pytest.raises(ConfigError, match="2 snapshot times but 1 snapshot gammas"):
        phema_weights([1, 2], [3.0], 1.0)
    with pytest.raises(ConfigError, match="positive and finite"):
        phema_weights([0, 2], [3.0, 3.0], 1.0)
    with pytest.raises(ConfigError, match="target time 3.0 must be in"):
        phema_weights([1, 2], [3.0, 3.0], 1.0, target_time=3)
    with pytest.raises(ConfigError, match="at least one snapshot"):
        reconstruct([], [])
    with pytest.raises(ConfigError, match=r"snapshot 1 is another parameter tree than snapshot 0: it lacks \['a'\] and has extra \['b'\]"):
        reconstruct([{"a": np.ones(2)}, {"b": np.ones(2)}], [0.5, 0.5])
    with pytest.raises(ConfigError, match=r"snapshot 1 has \['a'\] of float64\[3\] where snapshot 0 has float64\[2\]"):
        reconstruct([{"a": np.ones(2)}, {"a": np.ones(3)}], [0.5, 0.5])
    with pytest.raises(ConfigError, match="1 snapshots but 2 weights"):
        reconstruct([{"a": np.ones(2)}], [0.5, 0.5])


def _write_snapshots(folder, profiles, width=8):
    """Converted snapshots of a small MLP, one per (kimg, ema_std), with random parameters."""
    net = dict(default_network_config("mlp"), width=width, depth=1)
    shapes = jax.eval_shape(make_network(ml_collections.ConfigDict(net)).init, jax.random.key(0), jax.ShapeDtypeStruct((1, 2), jnp.float32))
    rng = np.random.default_rng(3)
    paths, trees = [], []
    for kimg, std in profiles:
        tree = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)
        path = str(folder / f"snap-{kimg:07d}-{std:.3f}.npz")
        save_converted(path, tree, net, {"event_shape": [2], "kimg": kimg, "ema_std": std})
        paths.append(path)
        trees.append(tree)
    return paths, trees


def test_the_phema_command_reconstructs_a_converted_network_from_converted_snapshots(tmp_path, capsys):
    profiles = [(k, s) for k in (1000, 2000, 3000) for s in (0.05, 0.10)]
    paths, trees = _write_snapshots(tmp_path, profiles)
    out = str(tmp_path / "out" / "phema-0.150.npz")
    assert main(["phema", "--snapshots", *paths, "--sigma-rel", "0.15", "--out", out]) == 0
    assert "reconstructed EMA std 0.15 at 3000 kimg from 6 snapshots" in capsys.readouterr().out
    times, gammas = [k for k, _ in profiles], [sigma_rel_to_gamma(s) for _, s in profiles]
    weights = phema_weights(times, gammas, sigma_rel_to_gamma(0.15))
    network, params, info = load_converted(out)  # a converted file of the snapshots' network
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), params, reconstruct(trees, weights))
    assert (info["ema_std"], info["kimg"], info["from"]) == (0.15, 3000.0, "phema")
    assert [p["weight"] for p in info["phema"]] == pytest.approx(weights.tolist())
    # At a stored profile (0.10 at 2000 kimg) the output is that snapshot; later snapshots are not read.
    again = str(tmp_path / "again.npz")
    assert main(["phema", "--snapshots", *paths, "--sigma-rel", "0.1", "--kimg", "2000", "--out", again]) == 0
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), load_converted(again)[1], trees[3])


def test_the_phema_command_refuses_bad_snapshots_with_one_line_errors(tmp_path, capsys):
    paths, _ = _write_snapshots(tmp_path, [(1000, 0.05), (2000, 0.10)])
    (tmp_path / "wide").mkdir()
    wide, _ = _write_snapshots(tmp_path / "wide", [(3000, 0.05)], width=16)
    bare = str(tmp_path / "bare.npz")
    save_converted(bare, {"params": {"w": np.ones(2, np.float32)}}, {"name": "mlp"}, {"event_shape": [2]})
    other = str(tmp_path / "other.npz")  # the same network config, other parameters
    save_converted(other, {"params": {"w": np.ones(2, np.float32)}}, load_converted(paths[0])[2]["network"], {"event_shape": [2], "kimg": 3000, "ema_std": 0.1})
    out = str(tmp_path / "out.npz")
    cases = [
        ([*paths, wide[0]], "0.1", "per differing field: {'width': (16, 8)}"),
        ([*paths, other], "0.1", "the snapshots do not hold the same parameters: snapshot 2 is another parameter tree than snapshot 0: it lacks ['params/ConditionEmbedding_0"),
        ([*paths, bare], "0.1", "records no EMA profile"),
        ([*paths, str(tmp_path / "missing.npz")], "0.1", "no converted snapshot file"),
        (paths, "0.4", "sigma_rel must be in (0, 0.3003]"),
        ([paths[0], paths[0]], "0.1", "a snapshot is given twice"),
    ]
    for snaps, sigma_rel, message in cases:
        assert main(["phema", "--snapshots", *snaps, "--sigma-rel", sigma_rel, "--out", out]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert not os.path.exists(out)
    assert main(["phema", "--snapshots", *paths, "--sigma-rel", "0.1", "--out", paths[1]]) == 2
    assert "is one of the snapshots" in capsys.readouterr().err


def test_converted_edm2_snapshots_reconstruct_into_a_converted_edm2_teacher(tmp_path, capsys):
    """The chain a user runs: ``convert --from edm2-pkl`` (the tiny EDM2 pickle of test_edm2_port,
    its name carrying 2147 kimg and std 0.130), then ``phema`` over snapshots of that network."""
    pkl = os.path.join(os.path.dirname(__file__), "data", "edm2_tiny-0002147-0.130.pkl")
    base = str(tmp_path / "base.npz")
    assert main(["convert", "--from", "edm2-pkl", pkl, "--out", base]) == 0
    network, info, arrays = read_converted(base)
    assert (info["kimg"], info["ema_std"]) == (2147, 0.13)
    profiles = [(1000, 0.05), (1000, 0.10), (2147, 0.05), (2147, 0.10)]
    paths, flats = [], []
    for i, (kimg, std) in enumerate(profiles):
        flat = {k: (v * (1.0 + 0.1 * i)).astype(v.dtype) for k, v in arrays.items()}  # distinct snapshots of one network
        paths.append(str(tmp_path / f"snap-{kimg:07d}-{std:.3f}.npz"))
        save_converted(paths[-1], traverse_util.unflatten_dict(flat, sep="/"), network, {**info, "kimg": kimg, "ema_std": std})
        flats.append(flat)
    out = str(tmp_path / "edm2_0.130.npz")
    assert main(["phema", "--snapshots", *paths, "--sigma-rel", "0.13", "--out", out]) == 0
    capsys.readouterr()
    teacher, params, got = converted_teacher(out)  # shapes checked against the EDM2 port
    assert (got["ema_std"], got["kimg"], got["sigma_data"], got["event_shape"]) == (0.13, 2147.0, info["sigma_data"], info["event_shape"])
    weights = phema_weights([k for k, _ in profiles], [sigma_rel_to_gamma(s) for _, s in profiles], sigma_rel_to_gamma(0.13))
    want = reconstruct(flats, weights)
    flat_params = {"/".join(k.key for k in path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
    for key, value in want.items():
        np.testing.assert_allclose(flat_params[key], value, rtol=1e-6, atol=1e-7)

