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
from jaxdistill import benchmarks
from jaxdistill.benchmarks import stable_diffusion
from jaxdistill.models.lora import LCM_LORA_TARGETS


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)
    c = stable_diffusion.student("tcd")
    c.tcd.w_min, c.tcd.w_max = 6.0, 16.0  # the LCM-LoRA script's w' in [5, 15], our w = 1 + w'
    c.lora.rank, c.lora.alpha, c.lora.targets = 64, 64.0, LCM_LORA_TARGETS
    c.batch_size = 12
    c.optim.lr, c.optim.warmup_steps, c.optim.weight_decay, c.optim.grad_clip = 1e-4, 0, 0.0, 1.0
    c.ema_decay = 0.0  # the online LoRA is saved
    c.train.num_steps, c.train.checkpoint_every, c.train.log_every = 1000, 200, 10
    c.eval.nfes = (1, 2, 4, 8)
    if is_smoke:
        stable_diffusion.smoke(c, "sd15")
        c.lora.rank, c.lora.alpha = 2, 2.0
    return c
