"""DMD2 (Yin et al. 2024, "Improved Distribution Matching Distillation for Fast Image Synthesis") on SDXL: a four-step
generator trained with backward simulation, as a LoRA on the SDXL UNet (the release's LoRA variant), a full critic
("fake score") started from the UNet, and the GAN head on the critic's features with real image latents
(jaxdistill/objectives/dmd.py; docs/methods/dmd2.md).

Values (the official release, tianweiy/DMD2: experiments/sdxl/
sdxl_cond999_8node_lr5e-5_denoising4step_diffusion1000_gan5e-3_guidance8_noinit_noode_backsim_scratch_lora.sh and
main/train_sd.py's argument defaults; main/sd_unified_model.py for the LoRA's modules):
  * four generator steps at DDPM steps 999, 749, 499, 249 (--num_denoising_step 4 --denoising_timestep 1000), the input of a
    drawn step made by the generator's own chain from noise (--backward_simulation); here the sigma ratios of steps
    749, 499, 249 under SDXL's scaled-linear schedule (beta 0.00085 to 0.012) are ``later_step_sigmas``;
  * teacher guidance 8 (--real_guidance_scale; the critic unguided), five critic updates per generator update
    (--dfake_gen_update_ratio 5), GAN weights 5e-3 generator side (--gen_cls_loss_weight) and 1e-2 critic side
    (--guidance_cls_loss_weight), DM noise levels in [0.02, 0.98] of the 1000 steps;
  * generator LoRA rank 64, alpha 8 (--lora_rank / --lora_alpha defaults) on the attention projections, feed-forwards,
    proj_in/out, ResNet convolutions and time projections, down/upsampler convolutions; the critic trained in full;
  * generator and critic lr 5e-5, AdamW (PyTorch's defaults: betas (0.9, 0.999), weight decay 0.01), gradient clipping
    at norm 10, a linear warm-up over 500 iterations then constant; no EMA; batch 2 per GPU on 64 GPUs = 128; 1024 x 1024
    images (128 x 128 latents); the released LoRA checkpoint after 16k iterations (FID 19.68 in experiments/sdxl/README.md).
  * Counting: a release iteration is one critic update with a generator update every fifth; a step here is one generator
    update with its five critic updates: 16k iterations are 3200 steps, the warm-up 100.
Departures: as configs/sd15/dmd2.py (Karras map of the DM noise levels, the GAN head on mid and up features, cached
posterior means, float32); the negative branch of guidance is the cached empty prompt's encoding (the release feeds
SDXL zero text embeddings there).

Arguments: none, or `smoke` (seconds on a CPU: a tiny random SDXL folder (write_tiny_sd(path, "sdxl")) and its cache
with images; paths from --config.teacher.path / --config.data.path; one critic update per generator update).
Usage:
  jaxdistill cache --diffusers sdxl/ --prompts prompts.jsonl --images image --out cache/sdxl --resolution 1024
  jaxdistill train --config configs/sdxl/dmd2.py --config.teacher.path=sdxl/ --config.data.path=cache/sdxl --workdir runs/sdxl/dmd2
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import stable_diffusion
from jaxdistill.diffusion.process import DDPM

DMD2_LORA_TARGETS = (  # PEFT's target_modules of main/sd_unified_model.py as patterns over the Flax UNet's module paths
    r"(^|/)(to_q|to_k|to_v|to_out_0)$",
    r"(^|/)proj_(in|out)$",
    r"ff/net_0/proj$",
    r"ff/net_2$",
    r"resnets_\d+/(conv1|conv2|conv_shortcut|time_emb_proj)$",
    r"(down|up)samplers_0/conv$",
)
SDXL_SCHEDULE = DDPM("scaled_linear", 0.00085, 0.012, 1000)
LATER_STEPS = (749, 499, 249)  # DDPM steps of generator steps 2..4; process time t = step + 1


def sigma_ratio(step: int) -> float:
    """sigma / alpha of SDXL's schedule at DDPM step ``step``."""
    t = float(step + 1)
    return float(SDXL_SCHEDULE.sigma(t) / SDXL_SCHEDULE.alpha(t))


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)
    c = stable_diffusion.student("dmd2")
    c.teacher.guidance = 8.0
    c.dmd.generator_steps = 4
    c.dmd.later_step_sigmas = tuple(sigma_ratio(s) for s in LATER_STEPS)
    c.dmd.backward_simulation = True
    c.dmd.critic_schedule = ((0, 5),)
    c.dmd.u_range = (0.02, 0.98)
    c.dmd.gan_critic_weight, c.dmd.gan_generator_weight = 1e-2, 5e-3
    c.lora.rank, c.lora.alpha, c.lora.targets = 64, 8.0, DMD2_LORA_TARGETS
    c.batch_size = 128
    c.optim.lr, c.optim.warmup_steps, c.optim.weight_decay, c.optim.grad_clip = 5e-5, 100, 0.01, 10.0
    c.ema_decay = 0.0  # train_sd.py keeps no EMA
    c.train.num_steps, c.train.checkpoint_every, c.train.log_every = 3200, 100, 10
    c.eval.nfes = (1, 2, 4)
    if is_smoke:
        stable_diffusion.smoke(c, "sdxl")
        c.dmd.critic_schedule = ((0, 1),)
        c.lora.rank, c.lora.alpha = 2, 2.0
        c.optim.warmup_steps = 0
    return c
