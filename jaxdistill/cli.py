"""Command line: ``jaxdistill train | sample | eval | fid-stats | data | cache | snapshot | restore | export | convert | phema | quickstart``.

    jaxdistill train --config configs/grid25/teacher.py:smoke --workdir runs/t [--config.train.num_steps=500]
    jaxdistill sample --workdir runs/t --nfe 4 --num 1000 --out samples.npz
    jaxdistill sample --diffusers sd15/ --prompt "a red fox" --negative-prompt blurry --nfe 25 --guidance 7.5 --out fox.png
    jaxdistill sample --workdir runs/sd15/lcm_lora --prompt "a red fox" --nfe 4 --out fox.png   # a text-to-image run's own sampler
    jaxdistill eval --workdir runs/t [--nfes 1,2,4]
    jaxdistill fid-stats --config CFG --out stats.npz --inception inception_fid.npz   # real data's pool3 mean, covariance
    jaxdistill eval --workdir runs/t --metric fid --fid-stats stats.npz --inception inception_fid.npz  # 50,000 samples
    jaxdistill data --config configs/digits/teacher.py --num 1000 --out digits.npz
    jaxdistill cache --diffusers sd15/ --prompts prompts.jsonl --out cache/sd15 [--images image | --teacher-samples]  # text embeddings (and latents) once
    jaxdistill snapshot --workdir runs/t --out teacher.npz      # a finished run as one file
    jaxdistill restore --snapshot teacher.npz --workdir runs/t2  # ... and back into a run folder
    jaxdistill export --workdir runs/sd15/lcm_lora --out lcm_lora/  # a diffusers LoRA file, or a diffusers folder for a full student
    jaxdistill convert --from dit-pt DiT-XL-2-256x256.pt --out dit_xl2.npz   # no PyTorch needed
    jaxdistill convert --from edm-pkl edm-cifar10-32x32-cond-vp.pkl --out edm_cifar10_cond.npz
    jaxdistill convert --from edm2-pkl edm2-img512-xs-2147483-0.135.pkl --out edm2_xs_fid.npz
    jaxdistill convert --from fid-inception-pth pt_inception-2015-12-05-6726825d.pth --out inception_fid.npz
    jaxdistill phema --snapshots snaps/*.npz --sigma-rel 0.15 --out edm2_xs_0.150.npz  # EDM2 post-hoc EMA
    jaxdistill quickstart
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

from jaxdistill.core.errors import ConfigError
from jaxdistill.core.paths import as_path, is_remote, same_path, write_atomic, write_text_atomic


def _split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate ``--config.key=value`` overrides from the other arguments."""
    rest, overrides = [], []
    it = iter(argv)
    for arg in it:
        if arg.startswith("--config."):
            body = arg[len("--config.") :]
            if "=" not in body:
                value = next(it, None)
                if value is None:
                    raise ConfigError(f"override {arg} has no value")
                body = f"{body}={value}"
            overrides.append(body)
        else:
            rest.append(arg)
    return rest, overrides


def _parse_nfes(text: Optional[str]) -> Optional[list[int]]:
    if text is None:
        return None
    try:
        nfes = [int(x) for x in text.split(",") if x]
    except ValueError:
        raise ConfigError(f"--nfes must be comma-separated integers, got {text!r}") from None
    if not nfes or min(nfes) < 1:
        raise ConfigError(f"--nfes must be positive integers, got {text!r}")
    return nfes


def _file_in_the_way(path: str) -> Optional[str]:
    """The file that keeps ``path`` from being a folder: ``path`` or the nearest existing folder above
    it (None for a remote path: an object store's folders are only name prefixes)."""
    if is_remote(path):
        return None
    found = os.path.abspath(path)
    while not os.path.exists(found):
        found = os.path.dirname(found)
    return None if os.path.isdir(found) else found


def _require_folder(path: str, flag: str) -> None:
    """A ConfigError naming ``flag`` if ``path`` cannot be a folder."""
    blocker = _file_in_the_way(path)
    if blocker:
        raise ConfigError(f"{flag} {path!r}: {blocker!r} is a file, not a folder")


def _output_file(path: str, flag: str) -> str:
    """``path``; a ConfigError naming ``flag`` if it is a folder or a file stands where its folder would be."""
    if as_path(path).is_dir():
        raise ConfigError(f"{flag} {path!r} is a folder; name a file")
    blocker = _file_in_the_way(os.fspath(as_path(path).parent))
    if blocker:
        raise ConfigError(f"{flag} {path!r}: {blocker!r} is a file, not a folder")
    return path


def _make_folder_of(path: str) -> None:
    """Create the folder of the output file ``path`` (and the folders above it) if missing."""
    as_path(path).parent.mkdir(parents=True, exist_ok=True)


def _require_nfes(run, nfes: Sequence[int], flag: str) -> None:
    """A ConfigError naming ``flag`` if the run's generator cannot take one of ``nfes``."""
    for nfe in nfes:
        problem = run.nfe_problem(nfe)
        if problem:
            raise ConfigError(f"{flag} {nfe}: {problem}")


def cmd_train(args, overrides: list[str]) -> int:
    import jax

    from jaxdistill import config as config_lib
    from jaxdistill.build import build
    from jaxdistill.train.engine import Trainer
    from jaxdistill.train.mesh import make_mesh, maybe_initialize_distributed

    _require_folder(args.workdir, "--workdir")
    config = config_lib.load(args.config, overrides)
    maybe_initialize_distributed(config.distributed)
    mesh = make_mesh(config_lib.validate(config, num_devices=jax.device_count()).mesh)  # mesh errors name the config field
    built = build(config, mesh=mesh)  # a checkpointed teacher is restored straight into its shardings on the mesh
    trainer = Trainer(built.objective, built.frozen, config, args.workdir, built.data_factory, mesh=mesh, show_progress=not args.quiet, probe=built.probe, annotated=built.annotated)
    result = trainer.train()
    status = "interrupted" if result.interrupted else "finished"
    print(f"{status} at step {result.step}; checkpoint in {as_path(args.workdir) / 'checkpoints'}")
    if result.last_metrics:
        print("last metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in result.last_metrics.items()))
    return 0


def cmd_sample(args, overrides: list[str]) -> int:
    import jax
    import numpy as np

    from jaxdistill.build import load_run
    from jaxdistill.plots import save_sample_figure
    from jaxdistill.train.sampling import generate_samples

    if (args.workdir is None) == (args.diffusers is None):
        raise ConfigError("sample needs one of --workdir RUN (a trained run) or --diffusers DIR (text-to-image from a Stable Diffusion folder)")
    if args.diffusers is not None:
        return cmd_sample_text(args)
    if args.prompt:
        return cmd_sample_run_text(args)
    text_only = [flag for flag in TEXT_SAMPLE_DEFAULTS if getattr(args, flag[2:].replace("-", "_")) not in (None, [])]
    if text_only:
        raise ConfigError(f"{', '.join(text_only)} go with --prompt (a text-to-image run) or --diffusers DIR")
    args.num = 1000 if args.num is None else args.num
    args.nfe = 1 if args.nfe is None else args.nfe
    if args.num < 1 or args.nfe < 1:
        raise ConfigError(f"--num and --nfe must be positive, got --num {args.num} --nfe {args.nfe}")
    out = _output_file(args.out or os.fspath(as_path(args.workdir) / f"samples_nfe{args.nfe}.npz"), "--out")
    run = load_run(args.workdir, args.step)
    if run.config.teacher.kind == "diffusers":
        raise ConfigError(f"{args.workdir!r} is a text-to-image run: give --prompt TEXT and --out GRID.png")
    _require_nfes(run, [args.nfe], "--nfe")
    samples = generate_samples(
        run.built.objective, run.trainable, run.frozen, args.num, nfe=args.nfe, rng=jax.random.key(args.seed)
    )
    _make_folder_of(out)
    out = out if out.endswith(".npz") else out + ".npz"  # as np.savez names a file
    with as_path(out).open("wb") as f:
        np.savez(f, x=samples)
    png = os.path.splitext(out)[0] + ".png"
    save_sample_figure(samples, png, title=f"{run.config.method} nfe={args.nfe} step {run.step}")
    print(f"wrote {args.num} samples to {out} and a plot to {png}")
    return 0


TEXT_SAMPLE_DEFAULTS = {
    "--prompt": [], "--negative-prompt": [], "--guidance": 7.5, "--sampler": "ddim", "--num-per-prompt": 1, "--batch-size": 8, "--npz": None,
}  # the options of 'sample --diffusers' and their defaults (with --workdir they need --prompt; --sampler is --diffusers' only)


def cmd_sample_text(args) -> int:
    """``sample --diffusers DIR --prompt ...``: an image grid PNG (and optionally an .npz) of guided samples."""

    from jaxdistill.eval import text_to_image
    from jaxdistill.models.hf.folder import check_folder, scheduler_settings
    from jaxdistill.models.hf.teacher import load_sd_teacher

    if args.num is not None or args.step is not None:
        raise ConfigError("--num and --step go with --workdir; with --diffusers give --prompt and --num-per-prompt")
    for flag, default in TEXT_SAMPLE_DEFAULTS.items():
        name = flag[2:].replace("-", "_")
        setattr(args, name, default if getattr(args, name) is None else getattr(args, name))
    nfe = 25 if args.nfe is None else args.nfe
    text_to_image.check_request(args.prompt, args.negative_prompt, nfe, args.sampler, args.num_per_prompt, args.batch_size)
    _check_grid_outputs(args)
    scheduler = scheduler_settings(check_folder(args.diffusers).configs["scheduler"])  # the folder's JSON files only
    text_to_image.timesteps(scheduler, args.sampler, nfe)  # too many steps for the schedule: said before the weights are read
    sd = load_sd_teacher(args.diffusers)
    result = text_to_image.generate(
        sd, args.prompt, args.negative_prompt, nfe=nfe, guidance=args.guidance, sampler=args.sampler, seed=args.seed,
        num_per_prompt=args.num_per_prompt, batch_size=args.batch_size, progress=not args.quiet,
    )
    _write_grid(args, result, args.num_per_prompt)
    extra = f" and the arrays to {args.npz}" if args.npz else ""
    print(f"wrote {len(result.images)} images ({args.sampler}, nfe {nfe}, guidance {args.guidance:g}) as a grid to {args.out}{extra}")
    return 0


def cmd_sample_run_text(args) -> int:
    """``sample --workdir RUN --prompt ...``: a text-to-image run's student with its objective's own
    sampler and prior, the teacher folder's text encoder(s) and VAE around it: a grid PNG (and an .npz)."""
    import dataclasses

    import jax

    from jaxdistill.build import load_run
    from jaxdistill.eval import text_to_image
    from jaxdistill.models.hf.teacher import load_sd_teacher

    for flag, value in (("--num", args.num), ("--sampler", args.sampler)):
        if value is not None:
            raise ConfigError(f"{flag} does not go with --workdir --prompt: a run samples with its own sampler, --num-per-prompt images per prompt")
    nfe, per_prompt, batch_size = 1 if args.nfe is None else args.nfe, args.num_per_prompt or 1, args.batch_size or 8
    text_to_image.check_request(args.prompt, args.negative_prompt, nfe, "ddim", per_prompt, batch_size)
    _check_grid_outputs(args)
    run = load_run(args.workdir, args.step)
    if run.config.teacher.kind != "diffusers":
        raise ConfigError(f"--prompt samples runs distilled from a diffusers folder (teacher.kind='diffusers'); {args.workdir!r} has teacher.kind={run.config.teacher.kind!r}")
    objective = run.built.objective
    if args.guidance is not None:
        if not getattr(objective, "guidance_input", False):
            raise ConfigError(f"--guidance: this {run.config.method} student takes no guidance input (only a w-conditioned one does, e.g. lcm.guidance_embedding_dim > 0)")
        objective = dataclasses.replace(objective, guidance=float(args.guidance))
    sd = load_sd_teacher(run.config.teacher.path)
    rng = jax.random.key(args.seed)
    probe = sd.text_condition([""])
    try:  # only traced: a bad nfe is said before anything is sampled
        jax.eval_shape(lambda: objective.generate(run.trainable, run.frozen, objective.prior(rng, 1), probe, nfe=nfe, rng=rng))
    except ValueError as err:
        raise ConfigError(f"--nfe {nfe}: {err}") from None
    result = text_to_image.generate(
        sd, args.prompt, args.negative_prompt, nfe=nfe, guidance=0.0, seed=args.seed, num_per_prompt=per_prompt, batch_size=batch_size,
        sample_latents=text_to_image.objective_sampler(objective, run.trainable, run.frozen, nfe=nfe, seed=args.seed),
        noise=objective.prior(rng, len(args.prompt) * per_prompt), progress=not args.quiet,
    )
    _write_grid(args, result, per_prompt)
    print(f"wrote {len(result.images)} images of the {run.config.method} student (step {run.step}, nfe {nfe}) as a grid to {args.out}" + (f" and the arrays to {args.npz}" if args.npz else ""))
    return 0


def _check_grid_outputs(args) -> None:
    """--out must name a .png file and --npz (if given) an .npz file that can be written."""
    if args.out is None or not args.out.endswith(".png"):
        raise ConfigError(f"--out must name the grid's .png file, got {args.out!r}")
    _output_file(args.out, "--out")
    if args.npz is not None:
        if not args.npz.endswith(".npz"):
            raise ConfigError(f"--npz must name an .npz file, got {args.npz!r}")
        _output_file(args.npz, "--npz")


def _write_grid(args, result, num_per_prompt: int) -> None:
    """The grid PNG (one row per prompt when there are several images per prompt) and the optional .npz."""
    import numpy as np

    from jaxdistill.eval import text_to_image
    from jaxdistill.plots import save_image_grid

    if args.npz is not None:
        arrays = dict(images=result.images, latents=result.latents, prompts=np.asarray(result.prompts), negative_prompts=np.asarray(result.negative_prompts))
        write_atomic(args.npz, lambda f: np.savez(f, **arrays))
    save_image_grid(result.images, args.out, text_to_image.grid_columns(len(args.prompt), num_per_prompt))


def _write_json(path: str, report: dict) -> None:
    """Write ``report`` to ``path`` through a temporary file in its folder, so a failure leaves ``path`` as it was."""
    write_text_atomic(path, json.dumps(report, indent=2))


def cmd_eval_fid(args) -> int:
    import numpy as np

    from jaxdistill.build import load_run
    from jaxdistill.eval import fid

    num = fid.NUM_SAMPLES if args.num is None else args.num
    nfes = _parse_nfes(args.nfes)
    if args.fid_stats is None:
        raise ConfigError("--metric fid needs --fid-stats STATS.npz (write one with 'jaxdistill fid-stats --config CFG --out STATS.npz')")
    out = _output_file(args.out or os.fspath(as_path(args.workdir) / "fid.json"), "--out")
    features, digest = fid.load_features(args.inception, args.batch)
    stats = fid.load_stats(args.fid_stats, digest)
    run = load_run(args.workdir, args.step)
    nfes = list(nfes or run.built.objective.eval_nfes)
    _require_nfes(run, nfes, "--nfes")
    fid.inception_input(np.zeros((1, *run.built.objective.event_shape), np.float32))  # FID needs images: say so before sampling
    generate = fid.run_generator(run, args.batch)
    by_nfe = fid.evaluate_fid(generate, nfes, num, stats, features, args.batch)
    report = {"method": run.config.method, "benchmark": run.config.data.name, "step": run.step, "num_samples": num,
              "fid_stats": os.fspath(as_path(args.fid_stats)), "fid_stats_info": stats["info"], "inception_sha256": digest,
              "by_nfe": {str(k): v for k, v in by_nfe.items()}}
    _write_json(out, report)
    for nfe, values in by_nfe.items():
        print(f"NFE {nfe}: " + ", ".join(f"{k}={v:.4g}" for k, v in values.items()))
    print(f"wrote {out}")
    return 0


def cmd_eval(args, overrides: list[str]) -> int:
    from jaxdistill.build import load_run
    from jaxdistill.eval.benchmark import evaluate_run, format_table

    if args.num is not None and args.num < 1:
        raise ConfigError(f"--num must be a positive number of samples per NFE, got {args.num}")
    if args.batch < 1:
        raise ConfigError(f"--batch must be positive, got {args.batch}")
    if args.metric == "fid":
        return cmd_eval_fid(args)
    if args.fid_stats or args.inception:
        raise ConfigError("--fid-stats and --inception go with --metric fid")
    nfes = _parse_nfes(args.nfes)
    out = _output_file(args.out or os.fspath(as_path(args.workdir) / "eval.json"), "--out")
    run = load_run(args.workdir, args.step)
    _require_nfes(run, nfes or [], "--nfes")
    report = evaluate_run(run, nfes=nfes, num_samples=args.num)
    _make_folder_of(out)
    as_path(out).write_text(json.dumps(report, indent=2))
    print(format_table(report))
    print(f"wrote {out}")
    return 0


def cmd_fid_stats(args, overrides: list[str]) -> int:
    import numpy as np

    from jaxdistill import config as config_lib
    from jaxdistill.data.sources import make_source
    from jaxdistill.eval import fid

    if (args.num is not None and args.num < 1) or args.batch < 1:
        raise ConfigError(f"--num and --batch must be positive, got --num {args.num} --batch {args.batch}")
    _output_file(args.out, "--out")
    config = config_lib.apply_overrides(config_lib.load_config_file(args.config), overrides)  # only its data section is read
    if "data" not in config:
        raise ConfigError(f"config {args.config} has no data section")
    features, digest = fid.load_features(args.inception, args.batch)
    try:
        source = make_source(config.data)
    except (ValueError, KeyError, ImportError, OSError) as err:
        raise ConfigError(f"data section of {args.config}: {type(err).__name__}: {err}") from None
    num = len(source) if args.num is None else min(args.num, len(source))
    fid.inception_input(np.zeros((1, *np.shape(source[0]["x"])), np.float32))  # FID needs images: say so before the pass
    pool3, _ = fid.features_of(fid.image_batches(source, num, args.batch), features)
    info = {"config": args.config, "data": config.data.to_dict(), "inception_sha256": digest}
    fid.save_stats(args.out, pool3, info, keep_features=args.keep_features)
    print(f"wrote the pool3 mean and covariance of {num} images of data source {config.data.name!r} to {args.out}")
    return 0


def cmd_data(args, overrides: list[str]) -> int:
    import numpy as np

    from jaxdistill import config as config_lib
    from jaxdistill.data.sources import make_source

    if args.num < 1:
        raise ConfigError(f"--num must be positive, got {args.num}")
    _output_file(args.out, "--out")
    config = config_lib.load(args.config, overrides)
    source = make_source(config.data)
    n = min(args.num, len(source))
    records = [source[i] for i in range(n)]
    x = np.stack([r["x"] for r in records])
    labels = np.asarray([r["label"] for r in records], np.int32)
    write_atomic(args.out if args.out.endswith(".npz") else args.out + ".npz", lambda f: np.savez(f, x=x, label=labels))  # as np.savez names a file
    print(f"wrote {n} samples of shape {x.shape[1:]} from data source {config.data.name!r} to {args.out}")
    return 0


TEACHER_SAMPLING = {"--teacher-nfe": 25, "--guidance": 7.5, "--sampler": "ddim", "--seed": 0}  # 'cache --teacher-samples' defaults, as 'sample --diffusers'


def cmd_cache(args, overrides: list[str]) -> int:
    from jaxdistill.data.prompts import open_prompts
    from jaxdistill.data.t2i_cache import teacher_encoders, write_cache
    from jaxdistill.models.hf.teacher import load_sd_teacher

    for flag, value in (("--batch-size", args.batch_size), ("--shard-size", args.shard_size), ("--resolution", args.resolution)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be positive, got {value}")
    sampling = {"--teacher-nfe": args.teacher_nfe, "--guidance": args.guidance, "--sampler": args.sampler, "--seed": args.seed}
    if not args.teacher_samples and any(v is not None for v in sampling.values()):
        raise ConfigError(f"{next(k for k, v in sampling.items() if v is not None)} sets how the teacher samples: it needs --teacher-samples")
    _require_folder(args.out, "--out")
    prompts = open_prompts(args.prompts, field=args.prompt_field, image_field=args.images)
    sd = load_sd_teacher(args.diffusers)
    encoders = teacher_encoders(sd, args.resolution)
    samples = None
    if args.teacher_samples:
        from jaxdistill.eval.text_to_image import teacher_samples

        chosen = {k: v if v is not None else TEACHER_SAMPLING[k] for k, v in sampling.items()}
        samples = teacher_samples(
            sd, nfe=chosen["--teacher-nfe"], guidance=chosen["--guidance"], sampler=chosen["--sampler"], seed=chosen["--seed"],
            resolution=encoders.settings["resolution"],
        )
    manifest = write_cache(
        args.out, prompts, encoders, batch_size=args.batch_size, shard_size=args.shard_size, with_images=args.images is not None,
        dtype=args.dtype, teacher_samples=samples, process_index=args.process_index, process_count=args.process_count, progress=not args.quiet,
    )
    done = sum(os.path.isfile(os.path.join(args.out, name)) for name in manifest["shards"])
    print(f"{args.out}: {done} of {len(manifest['shards'])} shards of {manifest['num_records']} prompts written (manifest: {os.path.join(args.out, 'manifest.json')})")
    return 0


def cmd_snapshot(args, overrides: list[str]) -> int:
    from jaxdistill.snapshot import save_snapshot

    _output_file(args.out, "--out")
    save_snapshot(args.workdir, args.out, step=args.step)
    print(f"wrote the {'latest checkpoint' if args.step is None else f'checkpoint step {args.step}'} of {args.workdir} to {args.out}")
    return 0


def cmd_restore(args, overrides: list[str]) -> int:
    from jaxdistill.snapshot import restore_snapshot

    _require_folder(args.workdir, "--workdir")
    restore_snapshot(args.snapshot, args.workdir)
    print(f"restored {args.snapshot} into {args.workdir}")
    return 0


def cmd_export(args, overrides: list[str]) -> int:
    from jaxdistill.build import load_run
    from jaxdistill.export import describe, export_run, refuse_existing

    _require_folder(args.out, "--out")
    refuse_existing(args.out)
    run = load_run(args.workdir, args.step)
    print(describe(export_run(run, args.out), run))
    return 0


def cmd_convert(args, overrides: list[str]) -> int:
    from jaxdistill.models.ports.convert import convert_checkpoint

    _output_file(args.out, "--out")
    if same_path(args.out, args.src):
        raise ConfigError(f"--out {args.out!r} is the input {args.src!r}; name another file")
    if args.kind != "dit-pt" and (args.size or args.num_heads or args.no_ema):
        raise ConfigError(f"--size, --num-heads and --no-ema apply to --from dit-pt only; {args.src!r} is read as {args.kind}")
    if args.kind != "edm2-pkl" and args.ema is not None:
        raise ConfigError(f"--ema applies to --from edm2-pkl only; {args.src!r} is read as {args.kind}")
    options = dict(size=args.size, num_heads=args.num_heads, use_ema=not args.no_ema) if args.kind == "dit-pt" else {}
    options.update({"ema": args.ema} if args.ema is not None else {})
    print(convert_checkpoint(args.kind, args.src, args.out, **options))
    return 0


def cmd_phema(args, overrides: list[str]) -> int:
    from jaxdistill.models.ports.phema_snapshots import reconstruct_snapshots

    _output_file(args.out, "--out")
    if any(same_path(args.out, snapshot) for snapshot in args.snapshots):
        raise ConfigError(f"--out {args.out!r} is one of the snapshots; name another file")
    print(reconstruct_snapshots(args.snapshots, args.sigma_rel, args.out, kimg=args.kimg))
    return 0


def cmd_quickstart(args, overrides: list[str]) -> int:
    from jaxdistill.quickstart import DEFAULT_METHOD, run_quickstart

    if overrides:
        raise ConfigError("quickstart takes no --config.* overrides; use 'train' for custom runs")
    run_quickstart(args.workdir, fast=args.fast, method=args.method or DEFAULT_METHOD)
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxdistill", description="Diffusion distillation in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a teacher or distil a student (config overrides: --config.key=value)")
    p.add_argument("--config", required=True, help="configs/<dataset>/<method>.py[:preset]")
    p.add_argument("--workdir", required=True, help="run directory: checkpoints, metrics.jsonl, samples/")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="draw samples from a trained run, or text-to-image samples from a diffusers folder (--diffusers, --prompt)")
    p.add_argument("--workdir", default=None, help="a trained run")
    p.add_argument("--diffusers", default=None, help="instead of --workdir: a diffusers Stable Diffusion folder, sampled from --prompt")
    p.add_argument("--nfe", type=int, default=None, help="network evaluations per sample (default: 1 for a run, 25 for --diffusers)")
    p.add_argument("--num", type=int, default=None, help="samples of a run (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step", type=int, default=None, help="the checkpoint step to read (default: the latest)")
    p.add_argument("--out", default=None, help="output .npz (a .png plot is written beside it); with --diffusers: the image grid .png")
    p.add_argument("--prompt", action="append", default=[], help="with --diffusers, or --workdir of a text-to-image run: a prompt (repeat for more)")
    p.add_argument("--negative-prompt", action="append", default=[], help="with --diffusers: one for every prompt, or one per prompt (default: the empty prompt)")
    p.add_argument("--guidance", type=float, default=None, help="with --diffusers: classifier-free guidance w, diffusers' guidance_scale (default 7.5); with --workdir: a w-conditioned student's w (default: its eval.guidance)")
    p.add_argument("--sampler", default=None, help="with --diffusers: ddim (default), dpmpp_2m or euler (diffusers' DDIM, DPM-Solver++(2M), Euler schedulers)")
    p.add_argument("--num-per-prompt", type=int, default=None, help="with --diffusers: images per prompt (default 1; one grid row per prompt)")
    p.add_argument("--batch-size", type=int, default=None, help="with --diffusers: images per sampler call (default 8)")
    p.add_argument("--npz", default=None, help="with --diffusers: also write the images, latents and prompts to this .npz")
    p.add_argument("--quiet", action="store_true", help="with --diffusers: no progress bar")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("eval", help="metrics vs NFE for a trained run (JSON)")
    p.add_argument("--workdir", required=True)
    p.add_argument("--nfes", default=None, help="comma-separated NFEs (default: the objective's own)")
    p.add_argument("--num", type=int, default=None, help="samples per NFE (default: config.eval.num_samples)")
    p.add_argument("--out", default=None, help="output JSON (default: WORKDIR/eval.json, or WORKDIR/fid.json; missing folders are created)")
    p.add_argument("--step", type=int, default=None, help="the checkpoint step to read (default: the latest)")
    p.add_argument("--metric", choices=("benchmark", "fid"), default="benchmark",
                   help="benchmark: the benchmark's metrics (default); fid: FID, Inception score (and precision/recall) on the FID Inception's features, 50,000 samples per NFE unless --num")
    p.add_argument("--fid-stats", default=None, help="with --metric fid: the real data's statistics (from 'jaxdistill fid-stats')")
    p.add_argument("--inception", default=None, help="with --metric fid: converted FID Inception weights (default: $JAXDISTILL_INCEPTION)")
    p.add_argument("--batch", type=int, default=250, help="with --metric fid: images per batch, generated and scored, split over the devices")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("fid-stats", help="pool3 mean and covariance of a config's data under the FID Inception network (.npz)")
    p.add_argument("--config", required=True, help="a config whose data section names the images (e.g. configs/fid/cifar10.py); nothing else of it is read")
    p.add_argument("--out", required=True, help="output .npz (written only when complete)")
    p.add_argument("--num", type=int, default=None, help="images to use (default: all of the data source)")
    p.add_argument("--inception", default=None, help="converted FID Inception weights (default: $JAXDISTILL_INCEPTION)")
    p.add_argument("--batch", type=int, default=250, help="images per batch, split over the devices")
    p.add_argument("--keep-features", action="store_true", help="also store the features (for precision/recall in 'eval --metric fid')")
    p.set_defaults(func=cmd_fid_stats)

    p = sub.add_parser("data", help="dump real samples of a config's data source")
    p.add_argument("--config", required=True)
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("cache", help="encode prompts (and images) once with a diffusers model's text encoder and VAE: shards + manifest.json for data.name='t2i_cache'")
    p.add_argument("--diffusers", required=True, help="a diffusers Stable Diffusion folder (1.x, 2.x or XL; its text encoders and VAE are used)")
    p.add_argument("--prompts", required=True, help="a text file (one prompt a line), a .jsonl file, or tfds:NAME[:SPLIT]")
    p.add_argument("--out", required=True, help="the cache folder (a rerun with the same arguments finishes it)")
    p.add_argument("--prompt-field", default=None, help="JSONL / TFDS field of the prompt (default: prompt or caption / caption)")
    p.add_argument("--images", default=None, metavar="FIELD", help="also encode the images under this JSONL / TFDS field into VAE latents")
    p.add_argument("--resolution", type=int, default=None, help="image side the latents are encoded at (default: the UNet's sample size times the VAE's factor)")
    p.add_argument("--batch-size", type=int, default=64, help="prompts (images) per encoder call")
    p.add_argument("--shard-size", type=int, default=1024, help="records per shard file (SD 1.5 in float32: ~240 MB of embeddings)")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="storage dtype of embeddings and latents")
    p.add_argument("--teacher-samples", action="store_true", help="store the teacher's own samples for the prompts as the latents (LADD's synthetic data)")
    p.add_argument("--teacher-nfe", type=int, default=None, help="with --teacher-samples: sampler steps (default 25)")
    p.add_argument("--guidance", type=float, default=None, help="with --teacher-samples: classifier-free guidance w against the empty prompt, diffusers' guidance_scale (default 7.5)")
    p.add_argument("--sampler", default=None, help="with --teacher-samples: ddim (default), dpmpp_2m or euler (as 'sample --diffusers')")
    p.add_argument("--seed", type=int, default=None, help="with --teacher-samples: record i's noise is drawn from fold_in(key(seed), i) (default 0)")
    p.add_argument("--process-index", type=int, default=None, help="this process's index: it writes shards i, i+n, ... (default: jax.process_index())")
    p.add_argument("--process-count", type=int, default=None, help="the number of processes writing the cache (default: jax.process_count())")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("snapshot", help="write a run's latest checkpoint (every network state) to one .npz")
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--step", type=int, default=None, help="the checkpoint step to read (default: the latest)")
    p.set_defaults(func=cmd_snapshot)

    p = sub.add_parser("restore", help="write a snapshot back as a run folder (an empty --workdir)")
    p.add_argument("--snapshot", required=True, help="a .npz written by 'jaxdistill snapshot'")
    p.add_argument("--workdir", required=True)
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("export", help="write a text-to-image run's student for diffusers: a LoRA file (LoRA students) or a diffusers folder (full students)")
    p.add_argument("--workdir", required=True, help="a run distilled from a diffusers Stable Diffusion folder (teacher.kind='diffusers')")
    p.add_argument("--out", required=True, help="a new or empty folder (written whole or not at all)")
    p.add_argument("--step", type=int, default=None, help="the checkpoint step to read (default: the latest)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("convert", help="convert a published checkpoint (DiT .pt, EDM / EDM2 .pkl, FID Inception .pth) into a jaxdistill .npz, without PyTorch")
    p.add_argument("--from", dest="kind", required=True, choices=("dit-pt", "edm-pkl", "fid-inception-pth", "edm2-pkl"), help="the checkpoint's kind")
    p.add_argument("src", metavar="IN", help="the published checkpoint file")
    p.add_argument("--out", required=True, help="output .npz (written only if every check passes)")
    p.add_argument("--size", default=None, help="the DiT size it must be, e.g. XL/2 (default: inferred from the shapes)")
    p.add_argument("--num-heads", type=int, default=None, help="attention heads of a DiT that is no named size")
    p.add_argument("--no-ema", action="store_true", help="from a DiT training checkpoint, take 'model' instead of 'ema'")
    p.add_argument("--ema", default=None, help="from an EDM2 pickle, the entry holding the network (default: ema); the EMA profile is the file's")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("phema", help="reconstruct an EDM2 power-function EMA of any length from converted EDM2 snapshots (post-hoc EMA)")
    p.add_argument("--snapshots", nargs="+", required=True, help="converted EDM2 snapshots (jaxdistill convert --from edm2-pkl of <prefix>-<kimg>-<std>.pkl)")
    p.add_argument("--sigma-rel", type=float, required=True, help="the EMA's relative std to reconstruct, in (0, 0.3003], e.g. 0.10")
    p.add_argument("--kimg", type=float, default=None, help="the training time to reconstruct at (default: the latest snapshot's)")
    p.add_argument("--out", required=True, help="output converted .npz (written only if every check passes)")
    p.set_defaults(func=cmd_phema)

    p = sub.add_parser("quickstart", help="train a teacher, distil a 1-step student, print quality vs NFE")
    p.add_argument("--workdir", default="runs/quickstart")
    p.add_argument("--fast", action="store_true", help="a much shorter run (seconds), for smoke tests")
    p.add_argument("--method", default=None, help="the student's method (default: consistency distillation, cd)")
    p.set_defaults(func=cmd_quickstart)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from jaxdistill.train.checkpoint import CheckpointError

    argv = list(sys.argv[1:] if argv is None else argv)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # a run's network "my_networks:Denoiser" imports from where it was trained, as with `python -m`
    try:
        rest, overrides = _split_overrides(argv)
        args = make_parser().parse_args(rest)
        if overrides and args.command not in ("train", "data", "fid-stats", "quickstart"):
            raise ConfigError(f"'{args.command}' takes no --config.* overrides")
        return args.func(args, overrides)
    except (ConfigError, CheckpointError) as err:
        message = " ".join(str(err).splitlines())
        print(f"jaxdistill: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
