"""Does the digits_t2i teacher read its prompts? Prints, for a pipeline snapshot (default the committed one):

* caption distances: L2 between the text encoder's whole-caption embeddings of two digits under one
  template, of one digit under two templates, and the mean token norm;
* caption sensitivity: mean |eps(x_t, t, "a handwritten one") - eps(x_t, t, "a handwritten seven")| and
  against the empty prompt, at several t, from the same x_t;
* the denoising loss on a batch of captioned digits with the right captions, the batch's captions
  shuffled, and the empty prompt (equal losses: the UNet ignores the caption).

    python experiments/digits_t2i_prompts.py [--snapshot results/digits_t2i_teacher.npz]

(The snapshot before the token-embedding fix: ``git show 816c982:results/digits_t2i_teacher.npz > old.npz``.)
"""
from __future__ import annotations

import argparse
import json
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from jaxdistill.benchmarks import digits_t2i as bench
from jaxdistill.core.conditioning import TextCondition
from jaxdistill.eval.text_to_image import latent_shape
from jaxdistill.models.hf.teacher import SDTeacher, load_sd_teacher
from jaxdistill.snapshot import restore_folder_snapshot

TIMES = (50, 100, 300, 500, 800, 999)


def caption_distances(sd: SDTeacher) -> dict[str, float]:
    embeds = sd.encode_prompts([bench.caption(d, k) for k in range(len(bench.TEMPLATES)) for d in range(10)])["prompt_embeds"]
    flat = embeds.reshape(len(bench.TEMPLATES), 10, -1)
    digits = np.linalg.norm(flat[:, :, None] - flat[:, None, :], axis=-1)[:, ~np.eye(10, dtype=bool)]
    templates = np.linalg.norm(flat[:, None] - flat[None], axis=-1)[~np.eye(len(bench.TEMPLATES), dtype=bool)]
    return {"two_digits_one_template_mean": float(np.mean(digits)), "two_digits_one_template_min": float(np.min(digits)),
            "one_digit_two_templates_mean": float(np.mean(templates)), "token_norm": float(np.mean(np.linalg.norm(embeds, axis=-1)))}


def caption_sensitivity(sd: SDTeacher, num: int = 64) -> dict[str, dict[str, float]]:
    denoiser, x = sd.denoiser(), jax.random.normal(jax.random.key(0), (num, *latent_shape(sd)))
    eps = {}
    for prompt, name in ((bench.caption(1), "one"), (bench.caption(7), "seven"), ("", "empty")):
        cond = sd.text_condition([prompt] * num).conditional()
        eps[name] = [np.asarray(denoiser.raw(sd.unet_params, x, jnp.full((num,), t, jnp.float32), cond)) for t in TIMES]
    return {str(t): {"one_vs_seven": float(np.mean(np.abs(eps["one"][i] - eps["seven"][i]))),
                     "one_vs_empty": float(np.mean(np.abs(eps["one"][i] - eps["empty"][i]))), "eps_scale": float(np.mean(np.abs(eps["one"][i])))}
            for i, t in enumerate(TIMES)}


def shuffled_caption_losses(sd: SDTeacher, num: int = 256, draws: int = 8) -> dict[str, dict[str, float]]:
    x, y = bench.rgb_digits()
    rng = np.random.default_rng(0)
    pick = rng.choice(len(x), num, replace=False)
    x0 = jnp.asarray(sd.encode_images(x[pick]))
    cond = sd.text_condition([bench.caption(int(d), i % len(bench.TEMPLATES)) for i, d in enumerate(y[pick])])
    conds = {"right": cond.conditional(), "shuffled": TextCondition(cond.embeds[rng.permutation(num)]), "empty": cond.unconditional()}
    denoiser, out = sd.denoiser(), {}
    for t in TIMES:
        times = jnp.full((num,), t, jnp.float32)
        noise = [jax.random.normal(jax.random.key(k), x0.shape) for k in range(draws)]
        out[str(t)] = {name: float(np.mean([jnp.mean(jnp.square(denoiser.raw(sd.unet_params, denoiser.process.add_noise(x0, e, times), times, c) - e)) for e in noise]))
                       for name, c in conds.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snapshot", default=bench.SNAPSHOT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        restore_folder_snapshot(args.snapshot, f"{tmp}/pipeline")
        sd = load_sd_teacher(f"{tmp}/pipeline")
        report = {"snapshot": args.snapshot, "caption_distances": caption_distances(sd), "eps_change": caption_sensitivity(sd), "loss": shuffled_caption_losses(sd)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
