"""Check a LoRA exported by jaxdistill against PyTorch diffusers' own loader.

Run with the project's venv (jax, flax, diffusers' Flax UNet) and name a second venv with torch,
diffusers 0.35.2, peft and safetensors (no jax needed there):

    python experiments/lora_diffusers_check.py --torch-python /tmp/torchvenv/bin/python

Flax side: a tiny FlaxUNet2DConditionModel with seeded random weights; a LoRA (rank 4, alpha 8)
on the modules LCM-LoRA adapts (attention q/k/v/out, feed-forward, proj_in/out, ResNet convs and
time projections, down/upsampler convs), its B drawn at random so the update is not zero; the
merged UNet's output, the base weights in PyTorch's names and layout, and the exported
pytorch_lora_weights.safetensors go to a temporary folder. Torch side (this script again, with
--torch-side FOLDER): UNet2DConditionModel of the same config loads the base weights strictly,
a StableDiffusionPipeline around it (no VAE or text encoder) loads the LoRA file with
``pipe.load_lora_weights(folder)`` through PEFT, and the outputs are compared: the base (the weight conversion)
and the LoRA UNet (PEFT's unmerged x W + s (x A) B against our merged W + s A B); and the weights
diffusers' ``fuse_lora`` makes against our merged weights.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

CONFIG = dict(
    sample_size=16, in_channels=4, out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), block_out_channels=(32, 64), layers_per_block=2,
    attention_head_dim=8, cross_attention_dim=32,
)
TARGETS = (
    r"(to_q|to_k|to_v|to_out_0)$", r"ff/net_0/proj$", r"ff/net_2$", r"proj_(in|out)$",
    r"resnets_\d+/(conv1|conv2|conv_shortcut|time_emb_proj)$", r"(down|up)samplers_0/conv$",
)


def torch_state_dict(params) -> dict[str, np.ndarray]:
    """Flax UNet parameters in PyTorch's names and layouts (the inverse of diffusers' PyTorch -> Flax conversion)."""
    from flax import traverse_util

    from jaxdistill.models.lora import torch_module_path

    out = {}
    for path, value in traverse_util.flatten_dict(params).items():
        value = np.asarray(value, np.float32)
        name = torch_module_path(path)
        if path[-1] == "kernel":
            value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
            out[f"{name}.weight"] = value
        elif path[-1] in ("scale", "embedding"):
            out[f"{name}.weight"] = value
        else:
            out[f"{name}.{path[-1]}"] = value
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def flax_side(folder: str) -> None:
    import jax
    from diffusers import FlaxUNet2DConditionModel
    from flax import traverse_util
    from safetensors.numpy import save_file

    from jaxdistill.models.lora import LORA_FILE_NAME, LoraSpec, export_diffusers_lora, init_lora, merge

    model = FlaxUNet2DConditionModel(**CONFIG)
    params = jax.jit(model.init_weights)(jax.random.key(0))
    spec = LoraSpec(rank=4, alpha=8.0, targets=TARGETS)
    lora = traverse_util.flatten_dict(init_lora(params, spec, jax.random.key(1)))
    for i, k in enumerate(sorted(lora)):
        if k[-1] == "lora_B":
            lora[k] = 0.05 * jax.random.normal(jax.random.key(100 + i), lora[k].shape)
    lora = traverse_util.unflatten_dict(lora)
    rng = np.random.default_rng(0)
    inputs = dict(
        sample=rng.standard_normal((2, 4, 16, 16)).astype(np.float32),  # NCHW, as both UNets take it
        timestep=np.array([10, 500], np.int32),
        encoder_hidden_states=rng.standard_normal((2, 7, 32)).astype(np.float32),
    )
    sample, timestep, text = (jax.numpy.asarray(inputs[k]) for k in ("sample", "timestep", "encoder_hidden_states"))
    apply = jax.jit(lambda p: model.apply({"params": p}, sample, timestep, text).sample)
    merged = merge(params, lora, spec)
    outputs = dict(flax_base=np.asarray(apply(params)), flax_merged=np.asarray(apply(merged)))
    export_diffusers_lora(lora, spec, os.path.join(folder, LORA_FILE_NAME))
    save_file(torch_state_dict(params), os.path.join(folder, "base.safetensors"))
    save_file(torch_state_dict(merged), os.path.join(folder, "merged.safetensors"))
    save_file({**inputs, **outputs}, os.path.join(folder, "io.safetensors"))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({**CONFIG, "adapted_modules": len(traverse_util.flatten_dict(lora)) // 2}, f)


def torch_side(folder: str) -> None:
    import diffusers
    import peft
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from safetensors.torch import load_file

    diffusers.utils.logging.set_verbosity_error()
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    adapted = config.pop("adapted_modules")
    unet = UNet2DConditionModel(**config).eval()
    unet.load_state_dict(load_file(os.path.join(folder, "base.safetensors")), strict=True)
    io = load_file(os.path.join(folder, "io.safetensors"))

    # A StableDiffusionPipeline around the UNet (no VAE or text encoder: the file holds UNet keys only).
    pipe = StableDiffusionPipeline(
        vae=None, text_encoder=None, tokenizer=None, unet=unet, scheduler=DDIMScheduler(clip_sample=False, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    def run() -> np.ndarray:
        with torch.no_grad():
            return unet(io["sample"], io["timestep"], io["encoder_hidden_states"]).sample.numpy()

    base = run()
    pipe.load_lora_weights(folder)  # reads folder/pytorch_lora_weights.safetensors
    lora_layers = [m for m in unet.modules() if isinstance(m, peft.tuners.lora.LoraLayer)]
    scalings = sorted({s for m in lora_layers for s in m.scaling.values()})
    with_lora = run()
    pipe.fuse_lora()
    fused = run()
    ours = load_file(os.path.join(folder, "merged.safetensors"))
    theirs = {k.replace(".base_layer.", "."): v for k, v in unet.state_dict().items() if ".lora_" not in k}
    assert theirs.keys() == ours.keys()
    weight_gap = max(float((theirs[k] - ours[k]).abs().max()) for k in ours)
    flax_base, flax_merged = io["flax_base"].numpy(), io["flax_merged"].numpy()
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, peft {peft.__version__}")
    print(f"PEFT LoRA layers in the torch UNet: {len(lora_layers)} (exported modules: {adapted}); PEFT scalings {scalings}")
    print(f"output scale max|flax merged|: {np.abs(flax_merged).max():.3g}; LoRA effect max|flax merged - flax base|: {np.abs(flax_merged - flax_base).max():.3g}")
    print(f"weights: max|diffusers fuse_lora weight - our merged weight| over all {len(ours)} tensors = {weight_gap:.3g}")
    print(f"base:  max|torch - flax| = {np.abs(base - flax_base).max():.3g}")
    print(f"LoRA (PEFT unmerged) vs flax merged: max|diff| = {np.abs(with_lora - flax_merged).max():.3g}")
    print(f"LoRA (fuse_lora) vs flax merged:     max|diff| = {np.abs(fused - flax_merged).max():.3g}")
    print(f"LoRA update (torch LoRA - torch base) vs (flax merged - flax base): max|diff| = {np.abs((with_lora - base) - (flax_merged - flax_base)).max():.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", default="/tmp/torchvenv/bin/python", help="python of a venv with torch, diffusers 0.35.2 and peft")
    parser.add_argument("--torch-side", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_side:
        torch_side(args.torch_side)
        return
    with tempfile.TemporaryDirectory() as folder:
        flax_side(folder)
        subprocess.run([args.torch_python, os.path.abspath(__file__), "--torch-side", folder], check=True, env={**os.environ, "PYTHONPATH": ""})


if __name__ == "__main__":
    sys.exit(main())
