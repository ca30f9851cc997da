"""Hyper-SD's trajectory-segmented consistency distillation (Ren et al. 2024, "Hyper-SD: Trajectory Segmented
Consistency Model for Efficient Image Synthesis", §3.1; released as the Hyper-SD15 LoRAs) on Stable Diffusion 1.5:
TSCD (jaxdistill/objectives/segmented.py) of the SD 1.5 UNet with classifier-free guidance into a LoRA on the
same UNet, from a prompt/latent cache, with the number of segments falling 8 -> 4 -> 2 -> 1 over four equal stages.

Hyper-SD reports no training script or settings beyond the stages; everything but the method is
configs/sd15/lcm_lora.py's (diffusers' LCM-LoRA script): DDIM teacher solver with N = 50 (k = 20); guidance
w' ~ U[5, 15] in x0_c + w' (x0_c - x0_u), our w = 1 + w' ~ U[6, 16]; no target network; LoRA rank 64, alpha 64 on
the LCM-LoRA module set; AdamW lr 1e-4, no weight decay, clipping at 1, constant rate; batch 12; 1000 updates (250
per stage). The loss is the MSE of Hyper-SD §3.1 (its adversarial term, human feedback and one-step DMD stage are
not here). Sampling: deterministic trajectory steps (gamma = 0; Hyper-SD's README samples its multistep LoRAs with
DDIM, trailing spacing; ours are LCM's sampling times, the segments' edges at nfe = 1, 2, 4, 8).

Arguments: none, or `smoke` (seconds on a CPU; a tiny random SD folder and its cache that a test writes, e.g.
tests/test_segmented.py; their paths come from --config.teacher.path / --config.data.path).
Usage (docs/methods/hypersd.md):
  jaxdistill cache --diffusers sd15/ --prompts prompts.jsonl --images image --out cache/sd15 --resolution 512
  jaxdistill train --config configs/sd15/hypersd_lora.py --config.teacher.path=sd15/ --config.data.path=cache/sd15 --workdir runs/sd15/hypersd_lora
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import stable_diffusion
from jaxdistill.models.lora import LCM_LORA_TARGETS


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)
    c = stable_diffusion.student("hypersd")
    c.hypersd.w_min, c.hypersd.w_max = 6.0, 16.0  # the LCM-LoRA script's w' in [5, 15], our w = 1 + w'
    c.lora.rank, c.lora.alpha, c.lora.targets = 64, 64.0, LCM_LORA_TARGETS
    c.batch_size = 12
    c.optim.lr, c.optim.warmup_steps, c.optim.weight_decay, c.optim.grad_clip = 1e-4, 0, 0.0, 1.0
    c.ema_decay = 0.0  # the online LoRA is saved
    c.train.num_steps, c.train.checkpoint_every, c.train.log_every = 1000, 250, 10
    c.eval.nfes = (1, 2, 4, 8)
    if is_smoke:
        stable_diffusion.smoke(c, "sd15")
        c.lora.rank, c.lora.alpha = 2, 2.0
        c.hypersd.segments = (2, 1)  # one update per stage: both stages run in the smoke's 2 updates
    return c
