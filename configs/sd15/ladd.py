"""Latent Adversarial Diffusion Distillation (Sauer, Boesel, Dockhorn, Blattmann, Esser & Rombach 2024, "Fast
High-Resolution Image Synthesis with Latent Adversarial Diffusion Distillation", arXiv:2403.12015) adapted to
Stable Diffusion 1.5: a 4-step student started from the SD 1.5 UNet, trained against heads on the frozen teacher's own
UNet features of re-noised latents, from a cache of the teacher's own samples (LADD's synthetic data)
(jaxdistill/objectives/adversarial.py; docs/methods/ladd.md).

The paper distils SD3 (an MMDiT rectified flow; SD3-Turbo); SD 1.5 is a DDPM UNet, so its values are carried over:
  * student timesteps: the paper's rectified-flow t in {1, 0.75, 0.5, 0.25} become the DDPM indices {999, 749, 499,
    249} (the first pure noise), inputs forward-diffused cached latents; the student is the teacher's UNet, started
    from its weights;
  * discriminator: trainable heads on the teacher's features of re-noised real and fake latents (here the UNet's mid
    and up block outputs, every position; the paper taps its transformer blocks' tokens), conditioned on the noise
    level and on the text (here the mean of the prompt's token embeddings: SD 1.5 has no pooled embedding; SD3's
    heads read its pooled one);
  * re-noising level: the paper's logit-normal pi(t; m = 1, s = 1) of rectified-flow time, i.e. ln(s / sigma_data) ~
    N(1, 1) (sigma_data = 1: SD's scaled latents have about unit variance);
  * synthetic data: the teacher's own samples for the prompts as the "real" data, i.e. a cache written with
    `jaxdistill cache --teacher-samples` (the teacher's guided samples stored as the records' latents; the run reads
    them, adversarial.num_synthetic = 0); a text-only cache is refused;
  * hinge loss, no distillation loss, no R1 term.
Our choices (not in the paper, or SD3-specific there): AdamW lr 1e-5 for the student and 2e-5 for the heads, batch 32,
10000 updates, 512 x 512 images (SD 1.5's resolution: 64 x 64 latents); the synthetic data drawn with DDIM at 25 steps
and guidance 7.5 (the cache's defaults, as `jaxdistill sample --diffusers`).

Arguments: none, or `smoke` (seconds on a CPU; a tiny random SD 1.5 folder (write_tiny_sd "sd15") and its cache that a
test writes, e.g. tests/test_adversarial_t2i.py; their paths come from --config.teacher.path / --config.data.path).
Usage:
  jaxdistill cache --diffusers sd15/ --prompts prompts.txt --teacher-samples --out cache/sd15_teacher --resolution 512
  jaxdistill train --config configs/sd15/ladd.py --config.teacher.path=sd15/ --config.data.path=cache/sd15_teacher --workdir runs/sd15/ladd
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import stable_diffusion
from jaxdistill.diffusion.ddpm_grid import ddpm_sigma_ratios

STUDENT_INDICES = (999, 749, 499, 249)  # the paper's t in {1, 0.75, 0.5, 0.25} as DDPM indices


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)
    c = stable_diffusion.student("ladd")
    c.sigma_data = 1.0
    a = c.adversarial
    a.generator_steps = len(STUDENT_INDICES)
    a.later_step_sigmas = ddpm_sigma_ratios(STUDENT_INDICES[1:])  # SD 1.5's scaled-linear schedule; t_0 = t_max is index 999
    a.noise_mean, a.noise_std = 1.0, 1.0
    a.num_synthetic = 0  # the data are the teacher's samples: a `jaxdistill cache --teacher-samples`
    a.head_per_position = True
    a.distill_weight, a.r1_weight, a.gan_loss = 0.0, 0.0, "hinge"
    a.head_lr = 2e-5
    c.batch_size = 32
    c.optim.lr, c.optim.warmup_steps, c.optim.weight_decay, c.optim.grad_clip = 1e-5, 0, 0.0, 1.0
    c.ema_decay = 0.0
    c.train.num_steps, c.train.checkpoint_every, c.train.log_every = 10000, 1000, 50
    c.eval.nfes = (1, 4)
    if is_smoke:
        stable_diffusion.smoke(c, "sd15")
        a.head_hidden = 8
    return c
