"""LCM-LoRA (Luo et al. 2023, "LCM-LoRA: A Universal Stable-Diffusion Acceleration Module") on the digits
text-to-image benchmark (jaxdistill/benchmarks/digits_t2i.py): latent consistency distillation
(jaxdistill/objectives/lcm.py) of the pipeline's guided UNet into a LoRA on the same UNet.

From configs/sd15/lcm_lora.py (the diffusers script's settings) with the benchmark's budget and these changes
for a teacher of 4x4x4 latents: LoRA rank 8, alpha 8, on the same modules; the teacher's guidance fixed at the
benchmark's w = 2 (the script samples w' in [5, 15] for SD 1.5, far past where this tiny teacher is trained to
guide); lr 5e-4 (the script's 1e-4 is set for a pretrained SD 1.5).

Arguments: none, or `smoke` (2 updates; --config.teacher.path / --config.data.path name a test's folder and cache).
Usage: python experiments/digits_t2i.py --methods lcm_lora
"""
import importlib.util
import os

from jaxdistill.benchmarks import digits_t2i

_SD15 = importlib.util.spec_from_file_location("sd15_lcm_lora", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sd15", "lcm_lora.py"))


def get_config(arg=None):
    c = digits_t2i.student("lcm", arg)
    sd15 = importlib.util.module_from_spec(_SD15)
    _SD15.loader.exec_module(sd15)
    c.lcm.w_min = c.lcm.w_max = digits_t2i.GUIDANCE
    c.lora.rank, c.lora.alpha, c.lora.targets = 8, 8.0, sd15.LCM_LORA_TARGETS
    c.optim.lr, c.optim.weight_decay, c.optim.grad_clip = 5e-4, 0.0, 1.0
    c.ema_decay = 0.0  # the script saves the online LoRA
    return c
