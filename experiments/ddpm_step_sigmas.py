"""Print the noise levels of a paper's DDPM steps, as a ``later_step_sigmas`` override.

    python experiments/ddpm_step_sigmas.py --steps 749,499,249 --sigma-data 0.5

prints the noise levels of steps 2-4 of DMD2's 4-step SDXL grid (DDPM steps 999, 749, 499, 249;
the first is the generator's input) at digits' sigma_data (see ``jaxdistill.diffusion.ddpm_grid``).
"""
from __future__ import annotations

import argparse

from jaxdistill.diffusion.ddpm_grid import SCHEDULES, ddpm_sigma_ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", required=True, help="comma-separated DDPM steps, e.g. 749,499,249")
    parser.add_argument("--sigma-data", type=float, default=1.0, help="the benchmark's data std (digits: 0.5)")
    parser.add_argument("--schedule", choices=SCHEDULES, default="scaled_linear")
    parser.add_argument("--beta-start", type=float, default=0.00085)
    parser.add_argument("--beta-end", type=float, default=0.012)
    parser.add_argument("--num-train-timesteps", type=int, default=1000)
    args = parser.parse_args()
    try:
        steps = [int(s) for s in args.steps.split(",")]
    except ValueError:
        parser.error(f"--steps must be comma-separated integers, got {args.steps!r}")
    sigmas = ddpm_sigma_ratios(
        steps,
        schedule=args.schedule,
        beta_start=args.beta_start,
        beta_end=args.beta_end,
        num_train_timesteps=args.num_train_timesteps,
        sigma_data=args.sigma_data,
    )
    for t, s in zip(steps, sigmas):
        print(f"DDPM step {t}: sigma {s:.4f}")
    print("--config.<method>.later_step_sigmas=\"(" + ", ".join(f"{s:.2f}" for s in sigmas) + ")\"")


if __name__ == "__main__":
    main()
