"""The networks' logical axis annotations in the state shardings (``mesh.state_shardings`` with
``Built.annotated`` and ``mesh.logical_axis_rules``), on an abstract data 2 x fsdp 4 mesh: a
DMD2 state (generator with EMA, critic, unannotated GAN head) of a one-block MLP (width 32,
hidden 64) and a frozen teacher of the same network. Sharded training itself is covered by
test_engine's 1-vs-8-device runs and test_sharded_teacher's restore, which pass the annotations."""
import math

import jax
import pytest
from jax.sharding import AbstractMesh
from jax.sharding import PartitionSpec as P

from jaxdistill import benchmarks
from jaxdistill.benchmarks import grid25
from jaxdistill.build import build, config_from_json, make_process, network_denoiser
from jaxdistill.config import base_config
from jaxdistill.train import mesh as mesh_lib

MESH = AbstractMesh((2, 4), ("data", "fsdp"))
MIN_SIZE = 16
HIDDEN_KERNEL = ("MLPBlock_0", "Dense_0", "kernel")  # [32, 64], annotated ("embed", "mlp")


@pytest.fixture(scope="module")
def run():
    """(built, abstract trainable, abstract frozen) of the DMD2 run; nothing is computed."""
    config = grid25.student("dmd2", "smoke")
    config.network = benchmarks.mlp(width=32, depth=1)
    denoiser, init = network_denoiser(config, make_process(config), "edm")
    example = jax.ShapeDtypeStruct((1, 2), jax.numpy.float32)
    built = build(config, teacher=(denoiser, jax.eval_shape(init, jax.random.key(0), example)))
    batch = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), next(iter(built.data_factory(0))))
    abstract = jax.eval_shape(built.objective.init, jax.random.key(0), batch, built.frozen)
    return built, abstract, built.frozen


def specs(tree, built, rules=None) -> dict[str, P]:
    """'/'-joined leaf path -> PartitionSpec under the engine's shardings of ``tree``."""
    rules = mesh_lib.logical_rules(built.config.mesh) if rules is None else rules
    shardings = mesh_lib.state_shardings(tree, MESH, min_fsdp_size=MIN_SIZE, annotated=built.annotated, logical_axis_rules=rules)
    return {mesh_lib.key_path_str(path): s.spec for path, s in jax.tree_util.tree_leaves_with_path(shardings)}


def heuristic(tree) -> dict[str, P]:
    return {mesh_lib.key_path_str(path): mesh_lib.fsdp_spec(leaf.shape, 4, MIN_SIZE) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def test_an_annotated_kernel_is_split_where_its_annotation_says_in_params_moments_ema_and_teacher(run):
    built, abstract, frozen = run
    got = {**specs(abstract, built), **specs(frozen, built)}
    kernel = "/".join(HIDDEN_KERNEL)
    copies = [
        f"{net}/{part}/{kernel}"
        for net, parts in (("generator", ("params/params", "opt_state/1/0/mu/params", "opt_state/1/0/nu/params", "ema/params")),
                           ("critic", ("params/params", "opt_state/1/0/mu/params", "opt_state/1/0/nu/params")))
        for part in parts
    ] + [f"teacher/params/{kernel}"]
    assert all(path in got for path in copies)
    # "embed" (rows) over fsdp, where the heuristic takes the larger "mlp" dimension
    assert mesh_lib.fsdp_spec((32, 64), 4, MIN_SIZE) == P(None, "fsdp")
    assert {got[path] for path in copies} == {P("fsdp", None)}


def test_unannotated_leaves_other_networks_and_old_configs_keep_the_heuristic(run):
    built, abstract, frozen = run
    got, expected = specs(abstract, built), heuristic(abstract)
    logical = {mesh_lib.key_path_str(p)[len("params/"):]: s for p, s in jax.tree_util.tree_leaves_with_path(built.annotated[0].logical)}
    unannotated = [k for k in got if k.startswith("generator/") and any(k.endswith(name) for name, s in logical.items() if s == P())]
    assert len(unannotated) >= 4 * 9 and all(got[k] == expected[k] for k in unannotated)  # biases, norms: params, mu, nu, EMA
    head = [k for k in got if k.startswith("head/")]  # its Dense_0/kernel shares the student's path suffix
    assert head and all(got[k] == expected[k] for k in head)
    differs = [k for k in got if got[k] != expected[k]]
    assert differs and all(k.endswith("kernel") for k in differs)
    # per-device bytes stay within 5% of an even split
    leaves = jax.tree.leaves(abstract)
    total = sum(x.size * x.dtype.itemsize for x in leaves)
    shardings = jax.tree.leaves(mesh_lib.state_shardings(abstract, MESH, min_fsdp_size=MIN_SIZE, annotated=built.annotated,
                                                         logical_axis_rules=mesh_lib.logical_rules(built.config.mesh)))
    held = sum(math.prod(s.shard_shape(x.shape)) * x.dtype.itemsize for x, s in zip(leaves, shardings))
    assert held <= 1.05 * total / 4
    # a run saved before mesh.logical_axis_rules existed reads back with no rules: the heuristic everywhere
    saved = base_config().to_dict()
    del saved["mesh"]["logical_axis_rules"]
    assert mesh_lib.logical_rules(config_from_json(saved).mesh) == ()
    assert specs(abstract, built, rules=()) == expected


def test_a_rule_whose_mesh_axis_does_not_divide_the_dimension_falls_back_to_the_heuristic(run):
    built, abstract, _ = run
    rules = (("io", "fsdp"), ("embed", "fsdp"))  # "io" is the data's 2 coordinates
    assert mesh_lib.annotated_spec(P("io", "embed"), (2, 32), MESH, rules) is None
    assert mesh_lib.annotated_spec(P("io", "embed"), (8, 32), MESH, rules) == P("fsdp", None)
    got, expected = specs(abstract, built, rules), heuristic(abstract)
    assert got["generator/params/params/Dense_0/kernel"] == expected["generator/params/params/Dense_0/kernel"] == P(None, "fsdp")
    assert got["generator/params/params/Dense_1/kernel"] == expected["generator/params/params/Dense_1/kernel"] == P("fsdp", None)
    assert got["generator/params/params/" + "/".join(HIDDEN_KERNEL)] == P("fsdp", None)  # the rules that divide still apply


def test_a_tree_that_differs_from_the_network_in_one_shape_gets_no_annotation(run):
    built, abstract, _ = run
    params = dict(abstract["generator"].params["params"])
    params["Dense_1"] = {"bias": jax.ShapeDtypeStruct((3,), jax.numpy.float32), "kernel": jax.ShapeDtypeStruct((32, 3), jax.numpy.float32)}
    other = {"other": {"params": params}}
    assert specs(other, built) == heuristic(other)
