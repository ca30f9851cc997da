"""The compiled FSDP train step (mesh data 2 x fsdp 4 on 8 simulated CPU devices) keeps activations
split by example and gathers weights: experiments/fsdp_collectives.py compiles a digits-shape KD step
with a one-block MLP (widths of 32) in a subprocess and counts its collectives."""
import json
import os
import subprocess
import sys

import jax.numpy as jnp

from jaxdistill.models.sharding import constrain_batch, gather_params

SCRIPT = os.path.join(os.path.dirname(__file__), os.pardir, "experiments", "fsdp_collectives.py")


def test_fsdp_step_gathers_weights_and_reduce_scatters_gradients():
    """No all-to-all and no "involuntary full rematerialization" warning; every all-gather gathers a
    parameter for a network pass (at most one per parameter per pass: the count of gather
    constraints); parameters and optimiser state split 4 ways (per-device bytes <= 1.05 x total / 4).

    Gradients in reduce-scatter form: XLA:CPU has no reduce-scatter op (GPU and TPU form it in their
    ReduceScatterCreator pass from an all-reduce whose result is dynamic-sliced). So on CPU the test
    reads the step's HLO right after SPMD partitioning and requires every non-scalar float
    all-reduce over all 8 devices (the weight-gradient reductions) to reach a dynamic-slice to the
    device's fsdp shard."""
    out = subprocess.run(
        [sys.executable, SCRIPT, "--nets", "mlp", "--method", "kd", "--tiny", "--json"], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["all_to_all"] == 0
    assert report["remat_warnings"] == 0
    assert report["fsdp_leaves"] >= report["state_leaves"] - 2  # all but the step counters and scalar state
    assert 0 < report["all_gather"] <= report["gather_constraints"]
    assert report["full_all_reduce"] > 0
    assert report["sliced_full_all_reduce"] == report["full_all_reduce"]
    assert report["reduce_scatter"] == 0  # XLA:CPU: the all-reduce + dynamic-slice form above
    assert report["bytes_ratio"] <= 1.05


def test_constraints_are_the_identity_outside_a_mesh():
    x = jnp.arange(6.0).reshape(3, 2)
    params = {"w": x}
    assert constrain_batch(x) is x
    assert gather_params(params) is params
