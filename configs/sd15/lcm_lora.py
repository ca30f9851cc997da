"""LCM-LoRA (Luo et al. 2023, "LCM-LoRA: A Universal Stable-Diffusion Acceleration Module") on Stable Diffusion 1.5:
latent consistency distillation (Luo et al. 2023, "Latent Consistency Models", Alg. 1; jaxdistill/objectives/lcm.py)
of the SD 1.5 UNet with classifier-free guidance into a LoRA on the same UNet, from a prompt/latent cache.

Values (diffusers' examples/consistency_distillation/train_lcm_distill_lora_sd_wds.py, its argument defaults, and the
LCM-LoRA SD 1.5 example of that folder's README, which passes --lora_rank=64 --loss_type=huber --adam_weight_decay=0.0
--train_batch_size=12 --max_train_steps=1000 --resolution=512):
  * DDIM teacher solver with N = 50 of the 1000 DDPM steps (skipping k = 20), --num_ddim_timesteps=50;
  * guidance: the script's w' ~ U[5, 15] in x0_c + w' (x0_c - x0_u), our w = 1 + w' ~ U[6, 16] (the LCM paper's
    omega in [2, 14] with (1 + omega) x0_c - omega x0_u is our [3, 15], the lcm section's default);
  * pseudo-Huber c = 0.001 (elementwise mean), boundary scalings sigma_data = 0.5, timestep scaling 10;
  * no target network (the online LoRA student, stop-gradient); the student is not w-conditioned;
  * LoRA rank 64, alpha 64 (scale 1) on attention projections, feed-forwards, proj_in/out, ResNet convolutions and
    time projections, down/upsampler convolutions (the script's default module list);
  * AdamW lr 1e-4 (the script's default; the README's LoRA example passes 1e-6), betas (0.9, 0.999), eps 1e-8,
    weight decay 0, gradient clipping at norm 1, constant rate; batch 12; 1000 updates.
Departures: cached VAE posterior means instead of samples (docs/data.md), float32 (the script: fp16 mixed precision).

Arguments: none, or `smoke` (seconds on a CPU; a tiny random SD folder and its cache that a test writes, e.g.
tests/test_lcm.py; their paths come from --config.teacher.path / --config.data.path).
Usage (docs/methods/lcm.md):
  jaxdistill cache --diffusers sd15/ --prompts prompts.jsonl --images image --out cache/sd15 --resolution 512
  jaxdistill train --config configs/sd15/lcm_lora.py --config.teacher.path=sd15/ --config.data.path=cache/sd15 --workdir runs/sd15/lcm_lora
"""
import ml_collections

from jaxdistill import benchmarks
from jaxdistill.config import base_config

LCM_LORA_TARGETS = (
    r"(^|/)(to_q|to_k|to_v|to_out_0)$",
    r"ff/net_0/proj$",
    r"ff/net_2$",
    r"(^|/)proj_(in|out)$",
    r"resnets_\d+/(conv1|conv2|conv_shortcut|time_emb_proj)$",
    r"(down|up)samplers_0/conv$",
)
SMOKE_FOLDER, SMOKE_CACHE = "runs/smoke/sd15_tiny", "runs/smoke/sd15_tiny_cache"  # overridden by the tests' tmp paths


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)
    c = benchmarks.with_method(base_config(), "lcm")
    c.teacher.kind = "diffusers"
    c.teacher.path = ""  # required: --config.teacher.path=<diffusers SD 1.5 folder>
    c.data = ml_collections.ConfigDict({"name": "t2i_cache", "path": ""})  # required: --config.data.path=<jaxdistill cache folder>
    c.prior_mean = "zero"
    c.network.remat = False  # True: the UNet's blocks are rematerialised in the backward pass (docs/precision.md)
    c.lcm.w_min, c.lcm.w_max = 6.0, 16.0  # the script's w' in [5, 15], our w = 1 + w'
    c.lora.rank, c.lora.alpha, c.lora.targets = 64, 64.0, LCM_LORA_TARGETS
    c.batch_size = 12
    c.optim.lr, c.optim.warmup_steps, c.optim.weight_decay, c.optim.grad_clip = 1e-4, 0, 0.0, 1.0
    c.ema_decay = 0.0  # the script saves the online LoRA
    c.train.num_steps, c.train.checkpoint_every, c.train.log_every = 1000, 200, 10
    c.train.sample_every = 0  # the engine's plots carry no prompts (objectives/lcm.py)
    c.eval.nfes = (1, 2, 4)
    if is_smoke:
        c.teacher.path, c.data.path = SMOKE_FOLDER, SMOKE_CACHE
        c.lora.rank, c.lora.alpha = 2, 2.0
        c.batch_size = 2
        c.train.num_steps, c.train.checkpoint_every, c.train.log_every = 2, 1, 1
        c.train.async_checkpoint = False
    return c
