"""SwiftBrush (Nguyen & Tran 2024, "SwiftBrush: One-Step Text-to-Image Diffusion Model with Variational Score
Distillation") on the digits text-to-image benchmark (jaxdistill/benchmarks/digits_t2i.py): a one-step student started
from the pipeline's UNet, trained by VSD against a critic that is a LoRA on the teacher, from the captions only (method
`swiftbrush`, jaxdistill/objectives/dmd.py; docs/methods/swiftbrush.md). The cache's image latents are never read.

From configs/sd15/swiftbrush.py (the release's values) with the benchmark's budget (500 updates of 32, as every row; a
step is one student update with its one critic update) and these changes:
  * guidance w = 2, the benchmark's, on the teacher and the critic alike (the release: 4.5, diffusers' guidance_scale,
    the same convention as ours);
  * the critic LoRA rank 8, alpha 13.5 on to_q / to_v (the release: 64, 108, kept at the same alpha / rank; rank 64 is
    the full width of this UNet's 64-channel kernels), as the LCM-LoRA row takes rank 8;
  * no EMA of the student (the release: 0.9999, which over 500 updates would keep 0.9999^500 = 95% of the teacher's
    weights in the scored student); the benchmark's warm-up and cosine decay (the release: constant).
Kept: the student is the full UNet at lr 1e-6, the critic LoRA at lr 1e-3, Adam without weight decay, gradient clipping
at norm 1, the generator gradient sigma_t^2 (eps_T - eps_F), DM noise levels in [0.02, 0.98], pure noise at step 999 as
the input. A one-step student: scored at NFE 1 only.

Arguments: none, or `smoke` (2 updates; --config.teacher.path / --config.data.path name a test's folder and cache).
Usage: python experiments/digits_t2i.py --methods swiftbrush
"""
from jaxdistill.benchmarks import digits_t2i

SWIFTBRUSH_CRITIC_TARGETS = (r"(^|/)(to_q|to_v)$",)  # the release's LoraConfig target_modules


def get_config(arg=None):
    c = digits_t2i.student("swiftbrush", arg)
    c.teacher.guidance = digits_t2i.GUIDANCE
    c.dmd.critic_lr = 1e-3
    c.lora.critic_rank, c.lora.critic_alpha, c.lora.critic_targets = 8, 8 * 108.0 / 64, SWIFTBRUSH_CRITIC_TARGETS
    c.optim.lr, c.optim.weight_decay, c.optim.grad_clip = 1e-6, 0.0, 1.0
    c.ema_decay = 0.0
    c.eval.nfes = (1,)
    return c
