"""The sampling prior's mean (issue 25): x_{t_max} ~ N(alpha(t_max) mu, sigma(t_max)^2 I) with mu
the data mean, so a mixture far from the origin keeps its weights under the exact teacher."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistill import benchmarks
from jaxdistill.build import build, config_from_json, load_run
from jaxdistill.config import ConfigError, base_config
from jaxdistill.data.sources import ArraySource, MixtureSource, data_mean
from jaxdistill.diffusion import samplers
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.process import EDM, RectifiedFlow
from jaxdistill.models import gaussian_mixture
from jaxdistill.models.gaussian_mixture import GaussianMixture
from jaxdistill.snapshot import restore_snapshot

# Two equal modes on the x axis at 10 and 30: the data mean (20, 0) is a quarter of sigma_max = 80.
SHIFTED = GaussianMixture(means=np.array([[10.0, 0.0], [30.0, 0.0]]), covariances=np.full((2, 2), 1.0))


def right_mode_share(mean) -> float:
    """The share of 8,000 exact-teacher samples (Heun, 63 evaluations) in the mode at x = 30."""
    process = EDM()
    teacher = Denoiser(gaussian_mixture.mixture_apply_fn(process), process, "x0")
    x0_fn = lambda x, t: teacher.x0(SHIFTED.params, x, t)  # noqa: E731
    noise = process.prior_sample(jax.random.key(0), (8000, 2), mean)
    x = samplers.sample_nfe(x0_fn, process, noise, 63, "heun")
    return float(jnp.mean(x[:, 0] > 20.0))


def test_the_data_mean_prior_keeps_the_weights_of_a_mixture_far_from_the_origin():
    share = right_mode_share(SHIFTED.mean)
    # 8,000 samples: the binomial standard error of a share of 0.5 is 0.0056.
    assert abs(share - 0.5) < 0.02
    # the zero-mean prior sends mass to the mode nearer the origin: P(N(0, 80^2) > 20) = 0.40
    assert right_mode_share(None) < 0.43


def test_prior_sample_adds_alpha_times_the_mean_to_the_same_noise():
    rng, mean = jax.random.key(3), np.array([1.0, -2.0, 0.5], np.float32)
    for process in (EDM(), RectifiedFlow()):
        shifted = process.prior_sample(rng, (4, 3), mean)
        plain = process.prior_sample(rng, (4, 3))
        np.testing.assert_allclose(shifted - plain, np.broadcast_to(process.alpha(process.t_max) * mean, (4, 3)), atol=1e-5)
    # at a lower time t the noise is sigma(t) z around alpha(t) mu
    t = 2.5
    np.testing.assert_allclose(EDM().prior_sample(rng, (4, 3), mean, t) - mean, t / 80.0 * EDM().prior_sample(rng, (4, 3)), rtol=1e-5, atol=1e-5)


def test_data_mean_is_exact_for_a_mixture_and_the_record_average_otherwise():
    np.testing.assert_allclose(data_mean(MixtureSource(SHIFTED, 100)), [20.0, 0.0], atol=1e-12)
    x = np.arange(24, dtype=np.float32).reshape(6, 2, 2)
    np.testing.assert_allclose(data_mean(ArraySource(x)), x.mean(0))

    class Records:  # a source that is no ArraySource: averaged over evenly spaced records
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return {"x": x[i], "label": np.int32(-1)}

    np.testing.assert_allclose(data_mean(Records(), max_records=2), (x[0] + x[5]) / 2)


def kd_config(prior_mean: str):
    c = benchmarks.smoke(benchmarks.with_method(base_config(), "kd"))
    c.teacher.kind, c.prior_mean = "mixture", prior_mean
    c.kd.num_pairs, c.kd.teacher_nfe = 64, 3
    return c


@pytest.mark.parametrize("method", ["kd", "dmd2", "teacher"])
def test_every_objective_family_samples_its_prior_around_the_data_mean(method):
    """Student distillation (KD), generator distillation (DMD2, whose generator starts from
    init_sigma when set) and teacher training, built from a config: the data-mean prior is the
    zero-mean one shifted by alpha mu."""
    priors = {}
    for prior_mean in ("data", "zero"):
        c = benchmarks.smoke(benchmarks.with_method(base_config(), method))
        c.prior_mean = prior_mean
        if method != "teacher":
            c.teacher.kind = "mixture"
            benchmarks.without_teacher_weights(c)
            c.eval.nfes = (1,)
        if method == "dmd2":
            c.dmd.init_sigma = 2.5
        built = build(c, source=MixtureSource(SHIFTED, 512))
        priors[prior_mean] = np.asarray(built.objective.prior(jax.random.key(1), 16))
    np.testing.assert_allclose(priors["data"] - priors["zero"], np.broadcast_to([20.0, 0.0], (16, 2)), atol=1e-4)


def test_a_bad_prior_mean_is_a_config_error_and_old_runs_read_back_with_a_zero_mean():
    c = kd_config("median")
    with pytest.raises(ConfigError, match="prior_mean='median'"):
        build(c, source=MixtureSource(SHIFTED, 512))
    saved = base_config().to_dict()
    del saved["prior_mean"]
    saved["eval"]["nfes"] = list(saved["eval"]["nfes"])
    assert config_from_json(saved).prior_mean == "zero"


def test_the_committed_digits_teacher_saved_before_prior_mean_reads_back_with_a_zero_mean(tmp_path):
    restore_snapshot(os.path.join(os.path.dirname(__file__), "..", "results", "digits_teacher.npz"), str(tmp_path / "teacher"))
    run = load_run(str(tmp_path / "teacher"))
    assert run.config.prior_mean == "zero" and run.built.objective.data_mean is None
