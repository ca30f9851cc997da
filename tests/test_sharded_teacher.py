"""A checkpointed teacher is restored straight into the frozen shardings the Trainer uses
(``build(mesh=)``), the Trainer leaves it there, ``prepare`` builds the pair set with the sharded
teacher, and the student equals the one-device run (``tests/_sharded_teacher_run.py``, 8 simulated
CPU devices, data 2 x fsdp 4)."""
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def test_teacher_restored_into_fsdp_shardings_distils_like_one_device(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(HERE, "_sharded_teacher_run.py"), str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads([line for line in out.stdout.splitlines() if line.startswith("RESULTS ")][-1][len("RESULTS ") :])
    one, fsdp = results["1dev"], results["data2_fsdp4"]
    assert one["placed_devices"] == [1] and one["placed_fsdp"] == 0
    # every teacher leaf is restored with the Trainer's sharding (the larger ones split 4 ways),
    # spans the 8 devices, and placement returns the very arrays restored: no copy, no host round trip
    assert fsdp["restored_as_target"] and fsdp["restored_fsdp"] > 0 and fsdp["placed_fsdp"] == fsdp["restored_fsdp"]
    assert fsdp["placed_devices"] == [8] and fsdp["unmoved"] == fsdp["num_teacher_leaves"]
    assert fsdp["placed_as_annotated"] > 0  # kernels split where their logical annotation says, not where the heuristic would
    assert fsdp["pairs_sharding_devices"] == 8
    np.testing.assert_allclose(fsdp["pairs"], one["pairs"], rtol=1e-4, atol=1e-5)
    for a, b in zip(fsdp["student"], one["student"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
