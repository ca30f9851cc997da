"""DMD2 (Yin et al. 2024, "Improved Distribution Matching Distillation for Fast Image Synthesis") on the digits
text-to-image benchmark (jaxdistill/benchmarks/digits_t2i.py): a four-step generator and a critic ("fake score"), both
the pipeline's UNet started from its weights, distilled from the guided teacher with the GAN head on the critic's
features (jaxdistill/objectives/dmd.py; docs/methods/dmd2.md).

Starts from configs/sd15/dmd2.py (the release's SD 1.5 values). That recipe trains a one-step generator, and its GAN term
only in a second stage resumed from the first at lr 5e-7; the benchmark scores NFE 1, 2 and 4, and its cache carries the
real digits' latents, so the row takes what the release's four-step text-to-image recipe sets (configs/sdxl/dmd2.py,
trained there on SDXL, whose scaled-linear schedule (beta 0.00085 to 0.012, 1000 steps) is this pipeline's too):
  * four generator steps at DDPM steps 999, 749, 499, 249, trained with backward simulation;
  * the GAN term from the first update, on real digit latents: weight 1e-2 critic side, 5e-3 generator side;
  * five critic updates per generator update; generator and critic lr 5e-5, warm-up then the benchmark's cosine decay;
Kept from SD 1.5: the generator is the full UNet (the SDXL recipe's LoRA generator saves memory at 2.6B parameters,
nothing to save at 1M) and the critic too, both from the teacher's weights; AdamW with weight decay 0.01, gradient
clipping at norm 10, no EMA, DM noise levels in [0.02, 0.98], the critic unguided.
Changed for the benchmark: the teacher's guidance is its w = 2 (the releases: 1.75 on SD 1.5, 8 on SDXL, in diffusers'
guidance_scale, the same convention as ours); 500 steps of batch 32 as every row, where a step is one generator update
with its five critic updates (2,500 critic updates in all).

Arguments: none, or `smoke` (2 updates, one critic update each; --config.teacher.path / --config.data.path name a test's
folder and cache, which must hold image latents).
Usage: python experiments/digits_t2i.py --methods dmd2
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import digits_t2i
from jaxdistill.diffusion.process import DDPM

LATER_STEPS = (749, 499, 249)  # DDPM steps of generator steps 2..4 (the release's --num_denoising_step 4); process time t = step + 1


def later_step_sigmas() -> tuple[float, ...]:
    """sigma / alpha of the pipeline's DDPM schedule at ``LATER_STEPS``."""
    s = digits_t2i.SCHEDULER
    schedule = DDPM(s["beta_schedule"], s["beta_start"], s["beta_end"], s["num_train_timesteps"])
    return tuple(float(schedule.sigma(step + 1.0) / schedule.alpha(step + 1.0)) for step in LATER_STEPS)


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)
    c = digits_t2i.student("dmd2", arg)
    c.teacher.guidance = digits_t2i.GUIDANCE
    c.dmd.generator_steps = 4
    c.dmd.later_step_sigmas = later_step_sigmas()
    c.dmd.backward_simulation = True
    c.dmd.critic_schedule = ((0, 1),) if is_smoke else ((0, 5),)
    c.dmd.u_range = (0.02, 0.98)
    c.dmd.gan_critic_weight, c.dmd.gan_generator_weight = 1e-2, 5e-3
    c.optim.lr, c.optim.weight_decay, c.optim.grad_clip = 5e-5, 0.01, 10.0
    c.ema_decay = 0.0  # train_sd.py keeps no EMA
    return c
