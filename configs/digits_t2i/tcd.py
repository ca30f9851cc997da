"""TCD (Zheng et al. 2024, "Trajectory Consistency Distillation", arXiv 2402.19159) on the digits text-to-image
benchmark (jaxdistill/benchmarks/digits_t2i.py): trajectory consistency distillation (jaxdistill/objectives/tcd.py) of
the pipeline's guided UNet into a LoRA on the same UNet, sampled by strategic stochastic sampling.

From configs/sd15/tcd_lora.py (TCD releases no training settings; it takes LCM-LoRA's) with the benchmark's budget
(500 updates of 32, as every row) and the LCM-LoRA row's changes for a teacher of 4x4x4 latents
(configs/digits_t2i/lcm_lora.py), so the two rows differ only in the method:
  * LoRA rank 8, alpha 8 (the SD 1.5 config: 64, 64; rank 64 is the full width of this UNet's 64-channel kernels) on
    the same modules;
  * the teacher's guidance fixed at the benchmark's w = 2 (the SD 1.5 config draws w in [6, 16], far past where this
    tiny teacher is trained to guide);
  * lr 5e-4 (the SD 1.5 config's 1e-4 is set for a pretrained SD 1.5), the benchmark's warm-up and cosine decay;
Kept: the DDIM teacher solver on N = 50 of the 1000 DDPM steps, pseudo-Huber c = 0.001, the online LoRA as target
(stop-gradient), no EMA, gradient clipping at 1, weight decay 0, and sampling with gamma = 0.3 (the TCD README's and
TCDScheduler's default eta); the student is not w-conditioned and samples without guidance, as the TCD LoRAs.

Arguments: none, or `smoke` (2 updates; --config.teacher.path / --config.data.path name a test's folder and cache).
Usage: python experiments/digits_t2i.py --methods tcd
"""
from jaxdistill.benchmarks import digits_t2i
from jaxdistill.models.lora import LCM_LORA_TARGETS


def get_config(arg=None):
    c = digits_t2i.student("tcd", arg)
    c.tcd.w_min = c.tcd.w_max = digits_t2i.GUIDANCE
    c.lora.rank, c.lora.alpha, c.lora.targets = 8, 8.0, LCM_LORA_TARGETS
    c.optim.lr, c.optim.weight_decay, c.optim.grad_clip = 5e-4, 0.0, 1.0
    c.ema_decay = 0.0  # the online LoRA is saved
    return c
