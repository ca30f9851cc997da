"""TCD-LoRA (Zheng et al. 2024, "Trajectory Consistency Distillation", arXiv 2402.19159; released as the TCD-SDXL
LoRA) on SDXL (Podell et al. 2023): trajectory consistency distillation (jaxdistill/objectives/tcd.py) of the SDXL
UNet, with its pooled text embedding and time ids, under classifier-free guidance into a LoRA on the same UNet.

The authors released inference code and LoRA weights only (jabir-zheng/TCD), no training settings. Their
TCD-SDXL-LoRA weights file (h1t/TCD-SDXL-LoRA, pytorch_lora_weights.safetensors) is 394 MB, the size of LCM-LoRA
SDXL's rank-64 file (latent-consistency/lcm-lora-sdxl), consistent with rank 64 on the same module set. Everything
but the method is configs/sdxl/lcm_lora.py's (diffusers' train_lcm_distill_lora_sdxl_wds.py and README_sdxl.md):
  * DDIM teacher solver with N = 50 (skipping k = 20; TCDScheduler's original_inference_steps default is 50);
    the target index s_m drawn uniformly on the solver grid at or below the target's index;
  * guidance w' ~ U[3, 15] in x0_c + w' (x0_c - x0_u), our w = 1 + w' ~ U[4, 16]; pseudo-Huber c = 0.001;
  * no target network (the online LoRA student, stop-gradient); the student is not w-conditioned;
  * LoRA rank 64, alpha 64 on jaxdistill.models.lora.LCM_LORA_TARGETS;
  * AdamW lr 1e-4, weight decay 0, gradient clipping at norm 1, constant rate; batch 12; 1000 updates;
  * 1024 x 1024 images (the cache's --resolution), time ids (1024, 1024, 0, 0, 1024, 1024);
  * sampling: strategic stochastic sampling with gamma = 0.3 (the TCD README's and TCDScheduler's eta).
Departures: as configs/sdxl/lcm_lora.py (empty-prompt unconditional branch, cached posterior means, float32).

Arguments: none, or `smoke` (seconds on a CPU; the tiny random "sdxl" folder of jaxdistill.models.hf.tiny.write_tiny_sd
and its cache, e.g. tests/test_tcd.py; their paths come from --config.teacher.path / --config.data.path).
Usage (docs/methods/tcd.md):
  jaxdistill cache --diffusers sdxl/ --prompts prompts.jsonl --images image --out cache/sdxl --resolution 1024
  jaxdistill train --config configs/sdxl/tcd_lora.py --config.teacher.path=sdxl/ --config.data.path=cache/sdxl --workdir runs/sdxl/tcd_lora
"""
from jaxdistill import benchmarks
from jaxdistill.benchmarks import stable_diffusion
from jaxdistill.models.lora import LCM_LORA_TARGETS


def get_config(arg=None):
    is_smoke, _ = benchmarks.parse_arg(arg)
    c = stable_diffusion.student("tcd")
    c.tcd.w_min, c.tcd.w_max = 4.0, 16.0  # the SDXL LCM-LoRA script's w' in [3, 15], our w = 1 + w'
    c.lora.rank, c.lora.alpha, c.lora.targets = 64, 64.0, LCM_LORA_TARGETS
    c.batch_size = 12
    c.optim.lr, c.optim.warmup_steps, c.optim.weight_decay, c.optim.grad_clip = 1e-4, 0, 0.0, 1.0
    c.ema_decay = 0.0  # the online LoRA is saved
    c.train.num_steps, c.train.checkpoint_every, c.train.log_every = 1000, 200, 10
    c.eval.nfes = (1, 2, 4, 8)
    if is_smoke:
        stable_diffusion.smoke(c, "sdxl")
        c.lora.rank, c.lora.alpha = 2, 2.0
    return c
