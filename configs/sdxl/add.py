"""Adversarial Diffusion Distillation (Sauer, Lorenz, Blattmann & Rombach 2023, "Adversarial Diffusion Distillation",
arXiv:2311.17042) of SDXL, SDXL-Turbo's recipe: a 4-step student started from the SDXL UNet, trained against a
discriminator on a frozen DINOv2 plus the paper's distillation loss, from a cache of real images' latents and prompts
(jaxdistill/objectives/adversarial.py; docs/methods/add.md).

Values from the paper:
  * the student is the teacher's UNet, initialised from its weights; its 4 timesteps are the DDPM indices
    {999, 749, 499, 249} (the first pure noise), inputs forward-diffused real latents;
  * the discriminator: a frozen DINOv2 ViT-S (adversarial.dinov2_path, a local folder such as facebook/dinov2-small's)
    reading the VAE-decoded images, with trainable heads on every token of four of its blocks (StyleGAN-T's taps 2, 5,
    8, 11), conditioned by projection on the text (here the SDXL pooled prompt embedding) and on an image embedding
    c_img (DINOv2's class token of the real image the student's input was diffused from;
    adversarial.dinov2_image_condition, the default);
  * hinge loss, R1 penalty gamma = 1e-5 on the heads' inputs, distillation weight lambda = 2.5 with the teacher's x0
    at the re-noised student outputs as target, weighted by c(t) = alpha_t (adversarial.distill_weighting = "alpha");
  * 512 x 512 images (SDXL-Turbo's resolution: 64 x 64 latents, cache with --resolution 512).
Our choices (not stated in the paper): AdamW lr 1e-5 for the student and 2e-5 for the heads, batch 32, 10000 updates,
an unguided teacher target (set --config.teacher.guidance to guide it), sigma_data = 1 (SDXL's latents have about unit
variance after the VAE's scaling factor).

Arguments: none, or `smoke` (seconds on a CPU; a tiny random SDXL folder (write_tiny_sd "sdxl"), its cache and a tiny
DINOv2 (write_tiny_dinov2) that a test writes, e.g. tests/test_adversarial_t2i.py; their paths come from
--config.teacher.path / --config.data.path / --config.adversarial.dinov2_path).
Usage:
  jaxdistill cache --diffusers sdxl/ --prompts prompts.jsonl --images image --out cache/sdxl --resolution 512
  jaxdistill train --config configs/sdxl/add.py --config.teacher.path=sdxl/ --config.data.path=cache/sdxl \
      --config.adversarial.dinov2_path=dinov2-small/ --workdir runs/sdxl/add
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import stable_diffusion
from jaxdistill.diffusion.ddpm_grid import ddpm_sigma_ratios

STUDENT_INDICES = (999, 749, 499, 249)  # ADD's (SDXL-Turbo's) student timesteps
SMOKE_DINOV2 = "runs/smoke/dinov2_tiny"  # overridden by the tests


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)
    c = stable_diffusion.student("add")
    c.sigma_data = 1.0
    a = c.adversarial
    a.generator_steps = len(STUDENT_INDICES)
    a.later_step_sigmas = ddpm_sigma_ratios(STUDENT_INDICES[1:])  # SDXL's scaled-linear schedule; t_0 = t_max is index 999
    a.discriminator, a.dinov2_path, a.dinov2_layers = "dinov2", "", (2, 5, 8, 11)  # required: --config.adversarial.dinov2_path
    a.head_per_position = True  # ADD's heads score every DINOv2 token
    a.distill_weight, a.r1_weight, a.gan_loss, a.distill_weighting = 2.5, 1e-5, "hinge", "alpha"
    a.head_lr = 2e-5
    c.batch_size = 32
    c.optim.lr, c.optim.warmup_steps, c.optim.weight_decay, c.optim.grad_clip = 1e-5, 0, 0.0, 1.0
    c.ema_decay = 0.0
    c.train.num_steps, c.train.checkpoint_every, c.train.log_every = 10000, 1000, 50
    c.eval.nfes = (1, 4)
    if is_smoke:
        stable_diffusion.smoke(c, "sdxl")
        a.dinov2_path = SMOKE_DINOV2
        a.dinov2_layers, a.head_hidden = (1, 3), 8
    return c
