"""TCD-LoRA (Zheng et al. 2024, "Trajectory Consistency Distillation", arXiv 2402.19159; released as the TCD-SD15
LoRA) on Stable Diffusion 1.5: trajectory consistency distillation (jaxdistill/objectives/tcd.py) of the SD 1.5
UNet with classifier-free guidance into a LoRA on the same UNet, from a prompt/latent cache.

The authors released inference code and LoRA weights only (jabir-zheng/TCD), no training settings; TCD builds on
LCM-LoRA, so everything but the method is configs/sd15/lcm_lora.py's (diffusers'
examples/consistency_distillation/train_lcm_distill_lora_sd_wds.py and its README's LCM-LoRA SD 1.5 example):
  * DDIM teacher solver with N = 50 of the 1000 DDPM steps (skipping k = 20; TCDScheduler's original_inference_steps
    default is 50 as well); the target index s_m drawn uniformly on the solver grid at or below the target's index;
  * guidance w' ~ U[5, 15] in x0_c + w' (x0_c - x0_u), our w = 1 + w' ~ U[6, 16]; pseudo-Huber c = 0.001;
  * no target network (the online LoRA student, stop-gradient); the student is not w-conditioned (the TCD LoRAs are
    sampled with guidance_scale 0, TCD README);
  * LoRA rank 64, alpha 64 on the LCM-LoRA module set (jaxdistill.models.lora.LCM_LORA_TARGETS);
  * AdamW lr 1e-4, weight decay 0, gradient clipping at norm 1, constant rate; batch 12; 1000 updates;
  * sampling: strategic stochastic sampling with gamma = 0.3 (the TCD README's and TCDScheduler's eta).
Departures: cached VAE posterior means instead of samples (docs/data.md), float32 (the script: fp16 mixed precision).

Arguments: none, or `smoke` (seconds on a CPU; a tiny random SD folder and its cache that a test writes, e.g.
tests/test_tcd.py; their paths come from --config.teacher.path / --config.data.path).
Usage (docs/methods/tcd.md):
  jaxdistill cache --diffusers sd15/ --prompts prompts.jsonl --images image --out cache/sd15 --resolution 512
  jaxdistill train --config configs/sd15/tcd_lora.py --config.teacher.path=sd15/ --config.data.path=cache/sd15 --workdir runs/sd15/tcd_lora
"""
import ml_collections

from jaxdistill import benchmarks
from jaxdistill.config import base_config
from jaxdistill.models.lora import LCM_LORA_TARGETS

SMOKE_FOLDER, SMOKE_CACHE = "runs/smoke/sd15_tiny", "runs/smoke/sd15_tiny_cache"  # overridden by the tests' tmp paths


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)
    c = benchmarks.with_method(base_config(), "tcd")
    c.teacher.kind = "diffusers"
    c.teacher.path = ""  # required: --config.teacher.path=<diffusers SD 1.5 folder>
    c.data = ml_collections.ConfigDict({"name": "t2i_cache", "path": ""})  # required: --config.data.path=<jaxdistill cache folder>
    c.prior_mean = "zero"
    c.tcd.w_min, c.tcd.w_max = 6.0, 16.0  # the LCM-LoRA script's w' in [5, 15], our w = 1 + w'
    c.lora.rank, c.lora.alpha, c.lora.targets = 64, 64.0, LCM_LORA_TARGETS
    c.batch_size = 12
    c.optim.lr, c.optim.warmup_steps, c.optim.weight_decay, c.optim.grad_clip = 1e-4, 0, 0.0, 1.0
    c.ema_decay = 0.0  # the online LoRA is saved
    c.train.num_steps, c.train.checkpoint_every, c.train.log_every = 1000, 200, 10
    c.train.sample_every = 0  # the engine's plots carry no prompts (objectives/lcm.py)
    c.eval.nfes = (1, 2, 4, 8)
    if is_smoke:
        c.teacher.path, c.data.path = SMOKE_FOLDER, SMOKE_CACHE
        c.lora.rank, c.lora.alpha = 2, 2.0
        c.batch_size = 2
        c.train.num_steps, c.train.checkpoint_every, c.train.log_every = 2, 1, 1
        c.train.async_checkpoint = False
    return c
