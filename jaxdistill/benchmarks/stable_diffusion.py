"""The shared base of the Stable Diffusion configs (``configs/sd15/``, ``configs/sdxl/``): a diffusers
folder as the teacher (on its scheduler's DDPM process), the prompt/latent cache of ``jaxdistill cache``
as the data, the published samplers' zero-mean prior, ``network.remat`` (the teacher UNet's block
remat, off), and no engine sample plots (they draw class
labels, a text-to-image student needs prompts). Both paths are required from the command line
(``--config.teacher.path``, ``--config.data.path``); ``smoke`` points them at the tiny random folder
and cache a test writes (``models.hf.tiny.write_tiny_sd``; the tests override them with their own
paths) and trains 2 updates of batch 2.
"""
from __future__ import annotations

import ml_collections

from jaxdistill.benchmarks import with_method
from jaxdistill.config import base_config

# family -> (tiny folder, its cache) of the smoke presets
SMOKE_PATHS = {
    "sd15": ("runs/smoke/sd15_tiny", "runs/smoke/sd15_tiny_cache"),
    "sdxl": ("runs/smoke/sdxl_tiny", "runs/smoke/sdxl_tiny_cache"),
}


def student(method: str) -> ml_collections.ConfigDict:
    """``method`` with its paper settings on a diffusers teacher and a ``t2i_cache`` (paths empty: required)."""
    c = with_method(base_config(), method)
    c.teacher.kind = "diffusers"
    c.teacher.path = ""
    c.data = ml_collections.ConfigDict({"name": "t2i_cache", "path": ""})
    c.prior_mean = "zero"
    c.network.remat = False  # True: the UNet's blocks are rematerialised in backward passes (docs/precision.md)
    c.train.sample_every = 0
    return c


def smoke(c: ml_collections.ConfigDict, family: str) -> ml_collections.ConfigDict:
    """``c`` on the tiny ``family`` folder and cache ("sd15" or "sdxl"), 2 updates of batch 2, a checkpoint each."""
    c.teacher.path, c.data.path = SMOKE_PATHS[family]
    c.batch_size = 2
    c.train.num_steps, c.train.checkpoint_every, c.train.log_every = 2, 1, 1
    c.train.async_checkpoint = False
    return c
