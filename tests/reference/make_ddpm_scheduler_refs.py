"""Final samples of diffusers' own schedulers on an exact Gaussian-mixture denoiser, for
tests/test_ddpm_process.py (not run in CI; needs torch and diffusers, which jaxdistill does not):

    python -m venv /tmp/refenv && /tmp/refenv/bin/pip install torch diffusers numpy
    /tmp/refenv/bin/python tests/reference/make_ddpm_scheduler_refs.py   # writes tests/data/ddpm_scheduler_refs.json

The denoiser is exact: for x = sqrt(abar) x0 + sqrt(1 - abar) eps and x0 drawn from a 3-component
2-D Gaussian mixture, E[x0 | x] in closed form (float64), returned as eps-prediction
eps = (x - sqrt(abar) E[x0 | x]) / sqrt(1 - abar). Each scheduler tells the model its noise level
through its own table: DDIM and DPM-Solver through abar = alphas_cumprod[timestep], Euler through
its (interpolated) sigma, abar = 1 / (1 + sigma^2).

Everything runs in float64 (``float64_run``): the samples, the schedulers' tables (diffusers'
float32 values, widened) and so the step arithmetic; the cast to float32 that Euler's and
DPM-Solver's ``step`` apply to the sample is disabled. In float32, the cosine schedule's first
timestep 999 (alpha = 5e-5, sigma ratio 2e4) loses ~1e-3 to rounding alone (DPM-Solver's
eps -> x0 divides by alpha; Euler's y ~ 2e4 z and its dt = sigma' - sigma): measured, float32
diffusers moves the final samples by up to 1e-3 from these float64 references on cosine and
by < 1e-6 on the linear schedules.

"The same noise in": one standard normal z (seeded numpy) for every case. DDIM and DPM-Solver
start from x = z (init_noise_sigma = 1). Euler works in y = x / sqrt(abar) = x0 + sigma eps and
starts from y = init_noise_sigma z, which is sqrt(1 + sigma_max^2) z (x = z) for ``leading`` and
sigma_max z (x = sqrt(1 - abar) z) for ``linspace`` / ``trailing``. Every scheduler's final
sample is x (= y at sigma 0).

DDIM with ``linspace`` is left out: DDIMScheduler steps from timestep k to k - T // n, which is
not the next of its linspace timesteps (e.g. 999 -> 749, then evaluates at 666), so it does not
integrate along one grid and no sampler on a grid reproduces it.
"""
from __future__ import annotations

import contextlib
import json
import os

import numpy as np
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

OUT = os.path.join(os.path.dirname(__file__), os.pardir, "data", "ddpm_scheduler_refs.json")
SCHEDULES = {
    "linear": dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02),
    "scaled_linear": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    "cosine": dict(beta_schedule="squaredcos_cap_v2"),
}
SPACINGS = ("leading", "linspace", "trailing")
STEPS = (4, 10, 25)
STEPS_OFFSET = 1  # Stable Diffusion's; read by "leading" only
# name -> (scheduler class, extra config); the test maps each name to a library sampler and grid end
VARIANTS = {
    "ddim": (DDIMScheduler, dict(set_alpha_to_one=True, clip_sample=False)),
    "ddim_alpha_one_false": (DDIMScheduler, dict(set_alpha_to_one=False, clip_sample=False)),
    "euler": (EulerDiscreteScheduler, dict()),
    "dpmpp_2m": (DPMSolverMultistepScheduler, dict(algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero")),
    "dpmpp_2m_sigma_min": (DPMSolverMultistepScheduler, dict(algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="sigma_min")),
    "dpmpp_2m_sigma_min_no_lof": (
        DPMSolverMultistepScheduler,
        dict(algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="sigma_min", lower_order_final=False),
    ),
}


def make_mixture(rng: np.random.Generator) -> dict:
    """Three 2-D components with full covariances and unequal weights."""
    means = np.array([[-1.5, 0.5], [1.0, 1.2], [0.3, -1.4]])
    covs = []
    for _ in range(3):
        a = rng.normal(size=(2, 2)) * 0.3
        covs.append(a @ a.T + 0.05 * np.eye(2))
    return {"means": means, "covariances": np.stack(covs), "weights": np.array([0.5, 0.3, 0.2])}


def posterior_mean(mix: dict, x: np.ndarray, alpha: float, sigma: float) -> np.ndarray:
    """E[x0 | x] for x = alpha x0 + sigma eps: sum_k r_k(x) (mu_k + alpha S_k C_k^-1 (x - alpha mu_k)), C_k = alpha^2 S_k + sigma^2 I."""
    logs, means = [], []
    for mu, cov, w in zip(mix["means"], mix["covariances"], mix["weights"]):
        c = alpha**2 * cov + sigma**2 * np.eye(len(mu))
        d = x - alpha * mu
        sol = np.linalg.solve(c, d.T).T
        logs.append(np.log(w) - 0.5 * np.sum(d * sol, axis=1) - 0.5 * np.linalg.slogdet(c)[1])
        means.append(mu + alpha * sol @ cov)
    logs = np.stack(logs, 1)
    r = np.exp(logs - logs.max(1, keepdims=True))
    r /= r.sum(1, keepdims=True)
    return np.einsum("bk,kbd->bd", r, np.stack(means))


@contextlib.contextmanager
def float64_run(sched):
    """Widen ``sched``'s float tables to float64 and make ``tensor.to(torch.float32)`` a no-op on
    float64 tensors (the schedulers' step-time cast) while the context lasts."""
    for name in ("sigmas", "alphas_cumprod", "final_alpha_cumprod", "alpha_t", "sigma_t", "lambda_t"):
        value = getattr(sched, name, None)
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            setattr(sched, name, value.to(torch.float64))
    original = torch.Tensor.to

    def to(self, *args, **kwargs):
        if self.dtype == torch.float64 and torch.float32 in (*args, kwargs.get("dtype")):
            return self
        return original(self, *args, **kwargs)

    torch.Tensor.to = to
    try:
        yield
    finally:
        torch.Tensor.to = original


def eps_model(mix: dict, x: torch.Tensor, abar: float) -> torch.Tensor:
    alpha, sigma = np.sqrt(abar), np.sqrt(1.0 - abar)
    x0 = posterior_mean(mix, x.numpy(), alpha, sigma)
    return torch.from_numpy((x.numpy() - alpha * x0) / sigma)


def run(variant: str, schedule: str, spacing: str, n: int, mix: dict, z: np.ndarray) -> np.ndarray:
    cls, extra = VARIANTS[variant]
    sched = cls(num_train_timesteps=1000, timestep_spacing=spacing, steps_offset=STEPS_OFFSET, prediction_type="epsilon", **SCHEDULES[schedule], **extra)
    sched.set_timesteps(n)
    x = torch.from_numpy(z) * float(sched.init_noise_sigma)
    with float64_run(sched):
        return _loop(sched, x, mix)


def _loop(sched, x: torch.Tensor, mix: dict) -> np.ndarray:
    for i, t in enumerate(sched.timesteps):
        if isinstance(sched, EulerDiscreteScheduler):
            abar = 1.0 / (1.0 + float(sched.sigmas[i]) ** 2)
            eps = eps_model(mix, sched.scale_model_input(x, t), abar)
        else:
            eps = eps_model(mix, x, float(sched.alphas_cumprod[int(t)]))
        x = sched.step(eps, t, x).prev_sample
        assert x.dtype == torch.float64
    return x.numpy()


def main() -> None:
    rng = np.random.default_rng(0)
    mix = make_mixture(rng)
    z = rng.standard_normal((8, 2))
    cases = []
    for variant in VARIANTS:
        for schedule in SCHEDULES:
            for spacing in SPACINGS:
                if variant.startswith("ddim") and spacing == "linspace":
                    continue
                for n in STEPS:
                    x = run(variant, schedule, spacing, n, mix, z)
                    cases.append({"scheduler": variant, "schedule": schedule, "spacing": spacing, "steps": n, "samples": np.round(x, 8).tolist()})
    import diffusers

    data = {
        "diffusers": diffusers.__version__,
        "steps_offset": STEPS_OFFSET,
        "mixture": {k: v.tolist() for k, v in mix.items()},
        "z": z.tolist(),
        "cases": cases,
    }
    with open(OUT, "w") as f:
        json.dump(data, f, separators=(",", ":"))
    print(f"wrote {len(cases)} cases to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
