"""DMD2 (Yin et al. 2024, "Improved Distribution Matching Distillation for Fast Image Synthesis") on Stable Diffusion 1.5:
a one-step generator and a critic ("fake score"), both the SD 1.5 UNet started from its weights, distilled from the guided
teacher through the prompt cache (jaxdistill/objectives/dmd.py; docs/methods/dmd2.md).

Values (the official release, tianweiy/DMD2: experiments/sdv1.5/*.sh and main/train_sd.py's argument defaults):
  * stage 1 (laion6.25_sd_baseline_8node_guidance1.75_lr1e-5_seed10_dfake10_from_scratch, FID 9.28 on COCO-2014 30k):
    teacher guidance 1.75 (--real_guidance_scale; the critic unguided, --fake_guidance_scale 1), ten critic updates per
    generator update (--dfake_gen_update_ratio 10), no GAN term, generator and critic lr 1e-5;
  * stage 2 (`gan`: ..._lr5e-7_..._diffusion1000_gan1e-3_..._resume, FID 8.35, resumed from stage 1 for 2k updates): the GAN
    head on the critic's features with generator weight 1e-3 (--gen_cls_loss_weight) and critic weight 1e-2
    (--guidance_cls_loss_weight) on real image latents, lr 5e-7;
  * the generator's input: pure noise at DDPM step 999 (--conditioning_timestep 999), one step;
  * DM noise levels in [0.02, 0.98] of the 1000 steps (--min/max_step_percent);
  * AdamW (PyTorch's defaults: betas (0.9, 0.999), weight decay 0.01), gradient clipping at norm 10, a 500-update linear
    warm-up then constant (--warmup_step default); no EMA; batch 32 per GPU on 64 GPUs = 2048.
Departures: DM noise levels through the Karras map of u ~ U[0.02, 0.98] (the release draws DDPM steps uniformly); the GAN
head reads the critic UNet's mid and up-block features (the release: the mid block only) at the same noise levels;
cached VAE posterior means for the real latents; float32 (the release: bf16 autocast); `gan` starts from the teacher
(the release resumes it from stage 1's checkpoint).

Arguments: comma-separated, any of `gan` (stage 2) and `smoke` (seconds on a CPU: a tiny random SD folder and its cache
that a test writes, e.g. tests/test_dmd2_latent.py; paths from --config.teacher.path / --config.data.path; one critic update
per generator update). Stage 2 needs a cache with image latents (`jaxdistill cache --images FIELD`).
Usage:
  jaxdistill cache --diffusers sd15/ --prompts prompts.jsonl --out cache/sd15 --resolution 512
  jaxdistill train --config configs/sd15/dmd2.py --config.teacher.path=sd15/ --config.data.path=cache/sd15 --workdir runs/sd15/dmd2
"""
import ml_collections

from jaxdistill import benchmarks
from jaxdistill.config import base_config
from jaxdistill.core.errors import ConfigError

SMOKE_FOLDER, SMOKE_CACHE = "runs/smoke/sd15_tiny", "runs/smoke/sd15_tiny_cache"  # overridden by the tests' tmp paths
ARGUMENTS = ("gan", "smoke")


def parse(arg) -> set:
    parts = {p.strip() for p in (arg or "").split(",") if p.strip()}
    if parts - set(ARGUMENTS):
        raise ConfigError(f"bad config argument {arg!r}: expected a comma-separated subset of {ARGUMENTS}")
    return parts


def get_config(arg=None):
    parts = parse(arg)
    c = benchmarks.with_method(base_config(), "dmd2")
    c.teacher.kind = "diffusers"
    c.teacher.path = ""  # required: --config.teacher.path=<diffusers SD 1.5 folder>
    c.teacher.guidance = 1.75
    c.data = ml_collections.ConfigDict({"name": "t2i_cache", "path": ""})  # required: --config.data.path=<jaxdistill cache folder>
    c.prior_mean = "zero"
    c.network.remat = False  # True: the UNet's blocks (generator, critic, teacher) are rematerialised in backward passes (docs/precision.md)
    c.dmd.generator_steps = 1
    c.dmd.critic_schedule = ((0, 10),)
    c.dmd.u_range = (0.02, 0.98)
    c.dmd.gan_critic_weight, c.dmd.gan_generator_weight = 0.0, 0.0
    c.batch_size = 2048
    c.optim.lr, c.optim.warmup_steps, c.optim.weight_decay, c.optim.grad_clip = 1e-5, 500, 0.01, 10.0
    c.ema_decay = 0.0  # train_sd.py keeps no EMA
    c.train.num_steps, c.train.checkpoint_every, c.train.log_every = 39_000, 1000, 50  # the released stage-1 checkpoint: 39k updates
    c.train.sample_every = 0  # the engine's plots carry no prompts
    c.eval.nfes = (1,)
    if "gan" in parts:
        c.dmd.gan_critic_weight, c.dmd.gan_generator_weight = 1e-2, 1e-3
        c.optim.lr = 5e-7
        c.train.num_steps = 2000  # the release resumes these 2k updates from stage 1's checkpoint; here they start from the teacher
    if "smoke" in parts:
        c.teacher.path, c.data.path = SMOKE_FOLDER, SMOKE_CACHE
        c.dmd.critic_schedule = ((0, 1),)
        c.batch_size = 2
        c.optim.warmup_steps = 0
        c.train.num_steps, c.train.checkpoint_every, c.train.log_every = 2, 1, 1
        c.train.async_checkpoint = False
    return c
