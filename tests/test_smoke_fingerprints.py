"""Refactorings leave the numbers alone: a few smoke runs reach the parameters recorded in
tests/data/smoke_fingerprints.json (see tests/smoke_fingerprints.py, which checks all 34 runs
bit for bit). Here the check is to float32 rounding, so another CPU's XLA build still passes."""
import json

import numpy as np
import pytest
from smoke_fingerprints import RECORD, train_entry

RECORDED = json.load(open(RECORD))


@pytest.mark.parametrize("entry", ["grid25/kd.py:smoke", "grid25/cd.py:smoke", "grid25/dmd2.py:smoke", "grid25/sid.py:smoke,4step"])
def test_smoke_run_reaches_the_recorded_parameters(entry, tmp_path):
    found = train_entry(entry, str(tmp_path))
    recorded = RECORDED[entry]
    assert sorted(found) == sorted(recorded)
    for name, fingerprint in found.items():
        want = recorded[name]
        scale = want["param_abs_sum"]
        np.testing.assert_allclose(fingerprint["param_abs_sum"], scale, rtol=1e-5, err_msg=f"{entry} {name}")
        assert abs(fingerprint["param_sum"] - want["param_sum"]) <= 1e-5 * scale, f"{entry} {name}"
