"""imagenet64: ImageNet (Deng et al. 2009) downsampled to 64x64x3 (Chrabaszcz et al. 2017), 1,281,167
training images in 1000 classes, read through TFDS (``imagenet_resized/64x64``: ``tfds build`` once,
after downloading the archives by hand; no TensorFlow needed to read it), distilled from NVlabs'
class-conditional EDM teacher (Karras et al. 2022, ADM network; FID 1.36 at 511 NFE with EDM's
stochastic sampler, EDM's README), converted once with

    jaxdistill convert --from edm-pkl edm-imagenet-64x64-cond-adm.pkl --out checkpoints/edm-imagenet-64x64-cond-adm.npz

(pickle: https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/). Students are the teacher's ADM
(``edm_adm``, preset ``imagenet64_cond``). FID on 50,000 samples against the training set
(``configs/fid/imagenet64.py``). TFDS's ``imagenet_resized`` (Chrabaszcz et al.'s downsampling) is
not byte-identical to the ``imagenet-64x64.zip`` EDM's ``dataset_tool.py`` writes and the papers
score against, so FIDs against statistics of one are close to, not equal to, FIDs against the
other. The shared settings and the
``smoke`` preset are in ``jaxdistill.benchmarks.images``.
"""
from __future__ import annotations

from typing import Optional

import ml_collections

from jaxdistill.benchmarks import images, parse_arg, with_method
from jaxdistill.config import base_config

TEACHER = "checkpoints/edm-imagenet-64x64-cond-adm.npz"
# smoke: a tiny ADM with random weights (write_smoke_teacher(); no ADM pickle ships with the tests)
SMOKE_TEACHER = "checkpoints/smoke/edm-adm-tiny-8x8-cond.npz"
SMOKE_NETWORK = images.TINY_ADM


def student(method: str, arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """``method`` with its paper settings distilling EDM's ImageNet-64 teacher into its ADM,
    evaluated at one NFE on 50,000 samples; the config file sets the paper's batch, optimiser,
    EMA and length."""
    is_smoke, _ = parse_arg(arg, generator=True)
    c = with_method(base_config(), method)
    images.edm_base(c, images.tfds_data("imagenet_resized/64x64", True), images.edm_port("edm_adm", "imagenet64_cond"), TEACHER)
    return images.smoke(c, SMOKE_NETWORK, SMOKE_TEACHER) if is_smoke else c


def write_smoke_teacher(path: str = SMOKE_TEACHER) -> str:
    """The smoke preset's teacher: the tiny ADM with random weights (seed 0), in the converted format."""
    return images.write_smoke_teacher(path, SMOKE_NETWORK)
