"""cifar10: CIFAR-10 (Krizhevsky 2009), the 50,000 32x32x3 training images in 10 classes, read through
TFDS (``tfds build cifar10`` once; no TensorFlow needed to read it), distilled from NVlabs' EDM
teachers (Karras et al. 2022, DDPM++ "VP" networks, 55.7M parameters; FID 1.79 conditional, 1.97
unconditional at 35 NFE, EDM's Table 2), converted once with

    jaxdistill convert --from edm-pkl edm-cifar10-32x32-cond-vp.pkl --out checkpoints/edm-cifar10-32x32-cond-vp.npz

(pickles: https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/). Students are the teacher's DDPM++
(``edm_ddpmpp``, preset ``cifar10_cond`` / ``cifar10_uncond``). FID on 50,000 samples against the
training set (``configs/fid/cifar10.py``). The shared settings and the ``smoke`` preset are in
``jaxdistill.benchmarks.images``.
"""
from __future__ import annotations

from typing import Optional

import ml_collections

from jaxdistill.benchmarks import images, parse_arg, with_method
from jaxdistill.config import base_config

TEACHERS = {True: "checkpoints/edm-cifar10-32x32-cond-vp.npz", False: "checkpoints/edm-cifar10-32x32-uncond-vp.npz"}
PRESETS = {True: "cifar10_cond", False: "cifar10_uncond"}
# smoke: a tiny DDPM++ with random weights (write_smoke_teacher())
SMOKE_TEACHER = "checkpoints/smoke/edm-ddpmpp-tiny-8x8-cond.npz"
SMOKE_NETWORK = images.TINY_DDPMPP


def student(method: str, arg: Optional[str] = None, conditional: bool = True) -> ml_collections.ConfigDict:
    """``method`` with its paper settings distilling EDM's CIFAR-10 teacher (``conditional`` or not)
    into its DDPM++, evaluated at one NFE on 50,000 samples; the config file sets the paper's batch,
    optimiser, EMA and length."""
    is_smoke, _ = parse_arg(arg, generator=True)
    c = with_method(base_config(), method)
    images.edm_base(c, images.tfds_data("cifar10", conditional), images.edm_port("edm_ddpmpp", PRESETS[conditional]), TEACHERS[conditional])
    return images.smoke(c, SMOKE_NETWORK, SMOKE_TEACHER) if is_smoke else c


def write_smoke_teacher(path: str = SMOKE_TEACHER) -> str:
    """The smoke preset's teacher: the tiny DDPM++ with random weights (seed 0), in the converted format."""
    return images.write_smoke_teacher(path, SMOKE_NETWORK)
