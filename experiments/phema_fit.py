"""How well EDM2's stored snapshots determine other EMA lengths (post-hoc EMA, ``core/phema.py``).

For a snapshot schedule (two power-function EMAs, sigma_rel 0.05 and 0.10, stored every
``interval`` of a run of ``length``; times in Mi images, only their ratios matter), prints per
target sigma_rel the relative L2 error of the best least-squares profile fit,
||sum_i w_i p_i - p_target|| / ||p_target|| (``fit_error``), and the largest |w_i|. Pure closed
form: no network or data is involved.

The defaults are EDM2's published raw snapshots of the ImageNet-512 XS/S/M runs: 2048 Mi images,
every 64 Mi (32 times x 2 profiles, 64 files); ``--interval 8`` is the spacing the paper trained with.

Usage: python experiments/phema_fit.py [--length 2048] [--interval 64]
"""
from __future__ import annotations

import argparse

import numpy as np

from jaxdistill.core.phema import fit_error, phema_weights, sigma_rel_to_gamma

TARGETS = (0.02, 0.03, 0.04, 0.05, 0.07, 0.085, 0.10, 0.13, 0.15, 0.20, 0.25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=float, default=2048.0, help="training length, Mi images")
    parser.add_argument("--interval", type=float, default=64.0, help="snapshot spacing, Mi images")
    args = parser.parse_args()
    count = int(round(args.length / args.interval))
    times = np.repeat(args.interval * np.arange(1, count + 1), 2)
    gammas = np.tile([sigma_rel_to_gamma(0.05), sigma_rel_to_gamma(0.10)], count)
    print(f"{count} snapshot times x 2 profiles (0.05, 0.10), every {args.interval:g} of {args.length:g} Mi images")
    print("| target sigma_rel | profile fit error | max abs weight |")
    print("|---|---|---|")
    for target in TARGETS:
        gamma = sigma_rel_to_gamma(target)
        weights = phema_weights(times, gammas, gamma)
        error = fit_error(times, gammas, weights, gamma, times.max())
        print(f"| {target:.3f} | {f'{error:.1e}' if error >= 1e-6 else '< 1e-6'} | {np.abs(weights).max():.2f} |")


if __name__ == "__main__":
    main()
