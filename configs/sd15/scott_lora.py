"""SCott (Liu et al. 2024, "SCott: Accelerating Diffusion Models with Stochastic Consistency Distillation") on Stable
Diffusion 1.5: LCM's consistency distillation with a stochastic (SDE) teacher solver (jaxdistill/objectives/
segmented.py) of the SD 1.5 UNet with classifier-free guidance into a LoRA on the same UNet, from a prompt/latent
cache. SCott reports FID 21.9 at 2 steps on MSCOCO-2017 5K with an SD 1.5 teacher (with its adversarial loss, which
is not here).

SCott released no code; it builds on LCM, so everything but the solver is configs/sd15/lcm_lora.py's (diffusers'
LCM-LoRA script): DDIM grid N = 50 (k = 20); guidance w' ~ U[5, 15], our w = 1 + w' ~ U[6, 16]; pseudo-Huber
c = 0.001; no target network; LoRA rank 64 on the LCM-LoRA module set; AdamW lr 1e-4, no weight decay, clipping at
1; batch 12; 1000 updates. The solver: 2 sub-steps of the stochastic DDIM step at eta = 0.5 (the method's
defaults; SCott's own values are not in its public text). Sampling: LCM's multistep sampler.
Departures: a LoRA student (SCott's student form is not stated in the text we read), float32, cached posterior means.

Arguments: none, or `smoke` (seconds on a CPU; a tiny random SD folder and its cache that a test writes, e.g.
tests/test_segmented.py; their paths come from --config.teacher.path / --config.data.path).
Usage (docs/methods/scott.md):
  jaxdistill cache --diffusers sd15/ --prompts prompts.jsonl --images image --out cache/sd15 --resolution 512
  jaxdistill train --config configs/sd15/scott_lora.py --config.teacher.path=sd15/ --config.data.path=cache/sd15 --workdir runs/sd15/scott_lora
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import stable_diffusion
from jaxdistill.models.lora import LCM_LORA_TARGETS


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)
    c = stable_diffusion.student("scott")
    c.scott.w_min, c.scott.w_max = 6.0, 16.0  # the LCM-LoRA script's w' in [5, 15], our w = 1 + w'
    c.lora.rank, c.lora.alpha, c.lora.targets = 64, 64.0, LCM_LORA_TARGETS
    c.batch_size = 12
    c.optim.lr, c.optim.warmup_steps, c.optim.weight_decay, c.optim.grad_clip = 1e-4, 0, 0.0, 1.0
    c.ema_decay = 0.0  # the online LoRA is saved
    c.train.num_steps, c.train.checkpoint_every, c.train.log_every = 1000, 200, 10
    c.eval.nfes = (1, 2, 4)
    if is_smoke:
        stable_diffusion.smoke(c, "sd15")
        c.lora.rank, c.lora.alpha = 2, 2.0
    return c
