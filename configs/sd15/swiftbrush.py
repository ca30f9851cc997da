"""SwiftBrush (Nguyen & Tran 2024, "SwiftBrush: One-Step Text-to-Image Diffusion Model with Variational Score
Distillation"): a one-step student started from the teacher's UNet, trained by VSD against a critic that is a LoRA on
the teacher, from prompts only (method `swiftbrush`, jaxdistill/objectives/dmd.py; docs/methods/swiftbrush.md).

For an SD 1.x / 2.x folder with eps prediction; the release distils stable-diffusion-2-1-base (512 x 512).
Values (the official release, VinAIResearch/SwiftBrush: README.md's training command and train_swiftbrush.py):
  * guidance 4.5 (--guidance_scale) on the teacher and on the LoRA critic alike, the generator gradient
    sigma_t^2 (eps_T - eps_F) (method `swiftbrush`'s critic_guidance and score_weight);
  * the critic: a LoRA of rank 64, alpha 108 (--lora_rank 64 --lora_alpha 108) on the attention projections to_q and to_v
    (LoraConfig target_modules), lr 1e-3 (--learning_rate_lora); one critic update per student update;
  * the student: the full UNet, lr 1e-6 (--learning_rate), EMA (--use_ema: diffusers' EMAModel, decay 0.9999 by default);
  * Adam (betas (0.9, 0.999), eps 1e-8, no weight decay; the script's defaults), gradient clipping at norm 1, constant
    rate, no warm-up; batch 16 per process (--train_batch_size 16); the student's input is pure noise at step 999.
  * DM noise levels: DDPM steps uniform in [20, 981); here the Karras map of u ~ U[0.02, 0.98] (as for vsd).
Departures: the critic's denoising loss is the plain eps-prediction error at the process's training noise levels with
the prompts' condition (the release weights it by alpha_t^2, draws steps uniformly in [0, 1000) and drops the prompt
10% of the time); float32. The release trains 3 epochs of its prompt set: set train.num_steps to
3 x (number of prompts) / batch_size.

Arguments: none, or `smoke` (seconds on a CPU: a tiny random SD folder and its text-only cache that a test writes,
e.g. tests/test_dmd2_latent.py; paths from --config.teacher.path / --config.data.path).
Usage:
  jaxdistill cache --diffusers sd21base/ --prompts prompts.txt --out cache/sd21base --resolution 512
  jaxdistill train --config configs/sd15/swiftbrush.py --config.teacher.path=sd21base/ --config.data.path=cache/sd21base --workdir runs/swiftbrush
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import stable_diffusion

SWIFTBRUSH_CRITIC_TARGETS = (r"(^|/)(to_q|to_v)$",)


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)
    c = stable_diffusion.student("swiftbrush")
    c.teacher.guidance = 4.5
    c.dmd.critic_lr = 1e-3
    c.lora.critic_rank, c.lora.critic_alpha, c.lora.critic_targets = 64, 108.0, SWIFTBRUSH_CRITIC_TARGETS
    c.batch_size = 16
    c.optim.lr, c.optim.warmup_steps, c.optim.weight_decay, c.optim.grad_clip = 1e-6, 0, 0.0, 1.0
    c.ema_decay = 0.9999
    c.train.checkpoint_every, c.train.log_every = 10_000, 100  # --checkpointing_steps 10000
    c.eval.nfes = (1,)
    if is_smoke:
        stable_diffusion.smoke(c, "sd15")
        c.lora.critic_rank, c.lora.critic_alpha = 2, 2.0
    return c
