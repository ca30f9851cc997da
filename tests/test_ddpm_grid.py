"""Discrete DDPM noise levels (jaxdistill.diffusion.ddpm_grid) and the script that prints them."""
from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pytest

from jaxdistill.diffusion.ddpm_grid import ddpm_sigma_ratios

_SPEC = importlib.util.spec_from_file_location(
    "ddpm_step_sigmas", os.path.join(os.path.dirname(__file__), os.pardir, "experiments", "ddpm_step_sigmas.py")
)
ddpm_step_sigmas = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ddpm_step_sigmas)


def test_stable_diffusions_schedule_spans_its_known_sigma_range():
    # k-diffusion's and diffusers' sigma_min / sigma_max for SD's scaled-linear schedule
    lo, hi = ddpm_sigma_ratios([0, 999])
    assert lo == pytest.approx(0.0292, abs=5e-5) and hi == pytest.approx(14.6146, abs=5e-4)


def test_the_first_linear_step_is_sqrt_beta_over_one_minus_beta_and_levels_scale_with_sigma_data():
    (s0,) = ddpm_sigma_ratios([0], schedule="linear", beta_start=1e-4, beta_end=0.02)
    assert s0 == pytest.approx(np.sqrt(1e-4 / (1 - 1e-4)), rel=1e-12)
    # two steps of a 2-step linear schedule: abar_1 = (1 - b0)(1 - b1)
    (s1,) = ddpm_sigma_ratios([1], schedule="linear", beta_start=0.1, beta_end=0.3, num_train_timesteps=2)
    abar = 0.9 * 0.7
    assert s1 == pytest.approx(np.sqrt((1 - abar) / abar), rel=1e-12)
    unit, half = ddpm_sigma_ratios([749, 499, 249]), ddpm_sigma_ratios([749, 499, 249], sigma_data=0.5)
    assert np.allclose(half, 0.5 * np.asarray(unit), rtol=1e-12)
    assert list(unit) == sorted(unit, reverse=True)  # later DDPM steps are noisier


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(steps=[1000]), r"integers in \[0, 999\], got \[1000\]"),
        (dict(steps=[2.5]), r"got \[2.5\]"),
        (dict(steps=[1], schedule="quadratic"), "schedule must be one of"),
        (dict(steps=[1], beta_start=0.02, beta_end=0.01), "beta_start <= beta_end"),
        (dict(steps=[1], sigma_data=0.0), "sigma_data must be > 0"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    steps = kwargs.pop("steps")
    with pytest.raises(ValueError, match=message):
        ddpm_sigma_ratios(steps, **kwargs)


def test_the_script_prints_dmd2s_sdxl_grid_at_digits_sigma_data_as_a_config_override(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["ddpm_step_sigmas.py", "--steps", "749,499,249", "--sigma-data", "0.5"])
    ddpm_step_sigmas.main()
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == '--config.<method>.later_step_sigmas="(2.04, 0.81, 0.35)"'
    assert "DDPM step 749: sigma 2.0409" in out
