"""Check `jaxdistill export` of a full, w-conditioned LCM student (Luo et al. 2023) against PyTorch diffusers.

Needs torch importable beside the project's venv, e.g. (no torch in the venv itself):

    pip install --target /tmp/export_torch /opt/wheels/torch-*.whl sympy networkx mpmath
    PYTHONPATH=/tmp/export_torch:. python experiments/export_diffusers_check.py

It writes a tiny random SD 1.5 folder (``write_tiny_sd``) and a two-prompt cache, a run of the
LCM-LoRA smoke preset with LCM's guidance embedding (8 features) and no LoRA whose student holds
seeded random weights (one checkpoint, no training), and exports it with ``jaxdistill export``
(torch importable: the export also writes PyTorch weights through diffusers'
``load_flax_weights_in_pytorch_model``). Printed:

* the timesteps of ``LCMScheduler.from_pretrained(out, subfolder="scheduler").set_timesteps(nfe)``
  against the objective's ``sampling_times(nfe)[:-1] - 1``;
* the largest difference between our network's output (diffusers' Flax UNet + our guidance
  embedding) and PyTorch's ``UNet2DConditionModel`` loaded from the exported PyTorch weights, with
  ``timestep_cond`` = diffusers' LCM guidance embedding of w (diffusers 0.35's own ``from_flax=True``
  route fails on any Flax UNet: it converts, then reads the msgpack again as a PyTorch file).
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_run(root: str):
    """(folder, workdir, run): the tiny SD folder, and the w-conditioned LCM run with random student weights."""
    from PIL import Image

    from jaxdistill.build import Run, build
    from jaxdistill.config import load
    from jaxdistill.data.prompts import open_prompts
    from jaxdistill.data.t2i_cache import teacher_encoders, write_cache
    from jaxdistill.models.hf import load_sd_teacher, write_tiny_sd
    from jaxdistill.models.hf.tiny import IMAGE_SIZE
    from jaxdistill.train.checkpoint import Checkpointer

    folder = write_tiny_sd(os.path.join(root, "sd"), "sd15")
    rs = np.random.default_rng(0)
    lines = []
    for i, prompt in enumerate(["a cat", "blue sky"]):
        Image.fromarray(rs.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)).save(os.path.join(root, f"{i}.png"))
        lines.append(json.dumps({"prompt": prompt, "image": f"{i}.png"}))
    with open(os.path.join(root, "prompts.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    cache = os.path.join(root, "cache")
    write_cache(cache, open_prompts(os.path.join(root, "prompts.jsonl"), image_field="image"), teacher_encoders(load_sd_teacher(folder)), with_images=True, progress=False)
    overrides = [f"teacher.path={folder}", f"data.path={cache}", "lcm.guidance_embedding_dim=8", "lora.rank=0"]
    built = build(load(os.path.join(ROOT, "configs", "sd15", "lcm_lora.py") + ":smoke", overrides))
    trainable = built.objective.init(jax.random.key(0), jax.tree.map(jnp.asarray, next(built.data_factory(0))), built.frozen)
    state = trainable["student"]
    leaves, tree = jax.tree.flatten(state.params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(tree, [x + 0.05 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    trainable["student"] = dataclasses.replace(state, params=params, ema=None if state.ema is None else params)  # exported: the EMA
    workdir = os.path.join(root, "run")
    with Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False) as ckpt:
        ckpt.save(1, trainable, built.config, force=True)
    return folder, workdir, Run(built.config, built, trainable, built.frozen, 1)


def main() -> None:
    import torch
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler, UNet2DConditionModel

    from jaxdistill.cli import main as cli
    from jaxdistill.models.hf import load_sd_teacher

    root = tempfile.mkdtemp(prefix="export_check_")
    folder, workdir, run = write_run(root)
    out = os.path.join(root, "export")
    assert cli(["export", "--workdir", workdir, "--out", out]) == 0
    objective = run.built.objective
    scheduler = LCMScheduler.from_pretrained(out, subfolder="scheduler")
    for nfe in (1, 2, 4, 8):
        scheduler.set_timesteps(nfe)
        ours = (np.asarray(objective.sampling_times(nfe))[:-1] - 1).astype(int).tolist()
        print(f"nfe {nfe}: LCMScheduler timesteps {scheduler.timesteps.tolist()}, ours {ours}, equal {scheduler.timesteps.tolist() == ours}")
    sd = load_sd_teacher(out)
    x = jax.random.normal(jax.random.key(3), (2, 8, 8, 4))
    k, w = np.array([499.0, 899.0], np.float32), np.array([3.0, 8.5], np.float32)
    cond = sd.text_condition(["a cat", "x"]).conditional()
    flax_out = np.asarray(sd.network.apply(sd.unet_params, x, jnp.stack([jnp.asarray(k), jnp.asarray(w)], axis=1), cond))
    emb = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, torch.tensor(w - 1.0), embedding_dim=8)
    inputs = dict(sample=torch.tensor(np.transpose(np.asarray(x), (0, 3, 1, 2))), timestep=torch.tensor(k),
                  encoder_hidden_states=torch.tensor(np.asarray(cond.embeds)), timestep_cond=emb)
    unet = UNet2DConditionModel.from_pretrained(out, subfolder="unet")
    with torch.no_grad():
        torch_out = np.transpose(unet(**inputs).sample.numpy(), (0, 2, 3, 1))
        without_w = np.transpose(unet(**{**inputs, "timestep_cond": torch.zeros_like(emb)}).sample.numpy(), (0, 2, 3, 1))
    print(f"UNet output, PyTorch (exported weights) vs ours: max abs difference {np.max(np.abs(torch_out - flax_out)):.2e} "
          f"(output scale {np.max(np.abs(flax_out)):.2f}; the w embedding moves it by {np.max(np.abs(torch_out - without_w)):.2e})")


if __name__ == "__main__":
    main()
