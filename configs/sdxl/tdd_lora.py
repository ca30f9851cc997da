"""Target-driven distillation (Wang et al. 2024, "Target-Driven Distillation: Consistency Distillation with Target
Timestep Selection and Decoupled Guidance", arXiv 2409.01347; released as the TDD SDXL LoRA) on SDXL (Podell et al.
2023): TDD (jaxdistill/objectives/segmented.py) of the SDXL UNet, with its pooled text embedding and time ids, under
classifier-free guidance into a LoRA on the same UNet, from a prompt/latent cache.

Settings: the authors' train/SDXL/train_tdd.sh (RedAIGC/Target-Driven-Distillation), which the method's defaults
already hold: DDIM teacher solver with N = 250 (k = 4); targets from the 4- to 8-step schedules, a 260-index window,
the gamma offset s_ratio = 0.3; 20% of the prompts replaced by the empty one (decoupled guidance); fixed
w' = 3.5 in x0_c + w' (x0_c - x0_u), our w = 4.5; pseudo-Huber c = 0.001; no target network; LoRA rank 64; AdamW
lr 1e-6, weight decay 0, clipping at 1, 500 warm-up updates then constant (the script's defaults); batch 16 x 4
accumulation = 64 (here 64 in one batch); 1024 x 1024 images; 100k updates. Sampling: the README's guidance_scale
1.7 on the student and eta (our gamma) 0.2.
Departures: the LoRA's module set is LCM-LoRA's (the script's LoraConfig is not in the files we read); no
non-equidistant sampling or x0 clipping; float32 (the script: fp16); cached posterior means (docs/data.md).

Arguments: none, or `smoke` (seconds on a CPU; the tiny random "sdxl" folder of jaxdistill.models.hf.tiny.write_tiny_sd
and its cache; their paths come from --config.teacher.path / --config.data.path).
Usage (docs/methods/tdd.md):
  jaxdistill cache --diffusers sdxl/ --prompts prompts.jsonl --images image --out cache/sdxl --resolution 1024
  jaxdistill train --config configs/sdxl/tdd_lora.py --config.teacher.path=sdxl/ --config.data.path=cache/sdxl --workdir runs/sdxl/tdd_lora
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import stable_diffusion
from jaxdistill.models.lora import LCM_LORA_TARGETS


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)
    c = stable_diffusion.student("tdd")
    c.lora.rank, c.lora.alpha, c.lora.targets = 64, 64.0, LCM_LORA_TARGETS
    c.batch_size = 64
    c.optim.lr, c.optim.warmup_steps, c.optim.weight_decay, c.optim.grad_clip = 1e-6, 500, 0.0, 1.0
    c.ema_decay = 0.0  # the online LoRA is saved
    c.train.num_steps, c.train.checkpoint_every, c.train.log_every = 100_000, 5000, 100
    c.eval.nfes = (4, 6, 8)
    if is_smoke:
        stable_diffusion.smoke(c, "sdxl")
        c.lora.rank, c.lora.alpha = 2, 2.0
        c.optim.warmup_steps = 0
    return c
