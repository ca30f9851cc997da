"""LCM-LoRA (Luo et al. 2023, "LCM-LoRA: A Universal Stable-Diffusion Acceleration Module") on SDXL (Podell et al.
2023): latent consistency distillation (jaxdistill/objectives/lcm.py) of the SDXL UNet, with its pooled text
embedding and time ids, under classifier-free guidance into a LoRA on the same UNet, from a prompt/latent cache.

Values (diffusers' examples/consistency_distillation/train_lcm_distill_lora_sdxl_wds.py, its argument defaults, and
the LCM-LoRA SDXL example of that folder's README_sdxl.md, which passes --resolution=1024 --lora_rank=64
--learning_rate=1e-4 --loss_type=huber --use_fix_crop_and_size --adam_weight_decay=0.0 --max_train_steps=1000
--train_batch_size=12):
  * DDIM teacher solver with N = 50 of the 1000 DDPM steps (skipping k = 20), --num_ddim_timesteps=50;
  * guidance: the script's w' ~ U[3, 15] (its SDXL defaults) in x0_c + w' (x0_c - x0_u), our w = 1 + w' ~ U[4, 16];
  * pseudo-Huber c = 0.001 (elementwise mean), boundary scalings sigma_data = 0.5, timestep scaling 10;
  * no target network (the online LoRA student, stop-gradient); the student is not w-conditioned;
  * LoRA rank 64, alpha 64 on the script's default module list (jaxdistill.models.lora.LCM_LORA_TARGETS);
  * AdamW lr 1e-4, weight decay 0, gradient clipping at norm 1, constant rate; batch 12; 1000 updates;
  * 1024 x 1024 images (the cache's --resolution); --use_fix_crop_and_size: time ids (1024, 1024, 0, 0, 1024, 1024),
    which is what `jaxdistill cache` stores for an SDXL folder.
Departures: the unconditional branch is the empty prompt's embeddings from the cache (the script uses zero prompt and
pooled embeddings), cached VAE posterior means instead of samples (docs/data.md), float32 (the script: fp16).

Arguments: none, or `smoke` (seconds on a CPU; the tiny random "sdxl" folder of jaxdistill.models.hf.tiny.write_tiny_sd
and its cache, e.g. tests/test_tcd.py; their paths come from --config.teacher.path / --config.data.path).
Usage (docs/methods/lcm.md):
  jaxdistill cache --diffusers sdxl/ --prompts prompts.jsonl --images image --out cache/sdxl --resolution 1024
  jaxdistill train --config configs/sdxl/lcm_lora.py --config.teacher.path=sdxl/ --config.data.path=cache/sdxl --workdir runs/sdxl/lcm_lora
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import stable_diffusion
from jaxdistill.models.lora import LCM_LORA_TARGETS


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)
    c = stable_diffusion.student("lcm")
    c.lcm.w_min, c.lcm.w_max = 4.0, 16.0  # the SDXL script's w' in [3, 15], our w = 1 + w'
    c.lora.rank, c.lora.alpha, c.lora.targets = 64, 64.0, LCM_LORA_TARGETS
    c.batch_size = 12
    c.optim.lr, c.optim.warmup_steps, c.optim.weight_decay, c.optim.grad_clip = 1e-4, 0, 0.0, 1.0
    c.ema_decay = 0.0  # the script saves the online LoRA
    c.train.num_steps, c.train.checkpoint_every, c.train.log_every = 1000, 200, 10
    c.eval.nfes = (1, 2, 4)
    if is_smoke:
        stable_diffusion.smoke(c, "sdxl")
        c.lora.rank, c.lora.alpha = 2, 2.0
    return c
