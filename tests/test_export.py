"""`jaxdistill export` and `jaxdistill sample --workdir --prompt` of text-to-image runs (issue 27 section 5;
jaxdistill/export.py, eval/text_to_image.objective_sampler): a LoRA student exports to a diffusers LoRA file
that our importer reads back to the same factors; a full, w-conditioned LCM student (Luo et al. 2023) exports
to a diffusers folder that FlaxStableDiffusionPipeline and load_sd_teacher load with the student's weights and
LCMScheduler's config; sampling a run gives the latents of the objective's own generate. The runs are built
directly (init, random student weights, one checkpoint) on the session's tiny SD 1.5 folder: no training."""
import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistill.build import Run, build
from jaxdistill.cli import main
from jaxdistill.config import load
from jaxdistill.core.rng import derive
from jaxdistill.models.hf import load_sd_teacher
from jaxdistill.models.lora import LORA_FILE_NAME, import_diffusers_lora
from jaxdistill.objectives.lcm import consistency_denoiser
from jaxdistill.train.checkpoint import Checkpointer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = os.path.join(ROOT, "configs", "sd15", "lcm_lora.py") + ":smoke"
SDXL_SPEC = os.path.join(ROOT, "configs", "sdxl", "lcm_lora.py") + ":smoke"


def write_run(workdir: str, folder: str, cache: str, *overrides: str, spec: str = SPEC) -> Run:
    """A run of the LCM-LoRA smoke preset ``spec`` (with ``overrides``) whose student states hold seeded random
    values (LoRA B and the guidance projection non-zero), saved as checkpoint step 1; returned as
    ``load_run`` would read it."""
    config = load(spec, [f"teacher.path={folder}", f"data.path={cache}", *overrides])
    built = build(config)
    batch = jax.tree.map(jnp.asarray, next(built.data_factory(0)))
    trainable = built.objective.init(jax.random.key(0), batch, built.frozen)
    state = trainable["student"]
    leaves, tree = jax.tree.flatten(state.params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(tree, [x + 0.05 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)])
    trainable["student"] = dataclasses.replace(state, params=params, ema=None if state.ema is None else params)  # sampled and exported: the EMA
    with Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False) as ckpt:
        ckpt.save(1, trainable, built.config, force=True)
    return Run(built.config, built, trainable, built.frozen, 1)


@pytest.fixture(scope="module")
def lora_run(sd15_cache, tmp_path_factory) -> tuple[str, Run]:
    workdir = str(tmp_path_factory.mktemp("lora_run") / "run")
    return workdir, write_run(workdir, sd15_cache[0], sd15_cache[1])


@pytest.fixture(scope="module")
def lcm_run(sd15_cache, tmp_path_factory) -> tuple[str, Run]:
    """A full, w-conditioned LCM student (guidance embedding of 8 features)."""
    workdir = str(tmp_path_factory.mktemp("lcm_run") / "run")
    return workdir, write_run(workdir, sd15_cache[0], sd15_cache[1], "lcm.guidance_embedding_dim=8", "lora.rank=0")


def test_a_lora_student_exports_to_a_diffusers_lora_file_that_reads_back_to_its_factors(sd15, lora_run, tmp_path):
    folder, teacher = sd15
    workdir, run = lora_run
    out = tmp_path / "lora"
    assert main(["export", "--workdir", workdir, "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["README.md", "jaxdistill_export.json", LORA_FILE_NAME, "scheduler"]
    lora, spec = import_diffusers_lora(out / LORA_FILE_NAME, teacher.unet_params["params"]["unet"])
    ours = run.trainable["student"].eval_params["params"]["unet"]
    assert spec.rank == 2 and spec.scale == 1.0  # the smoke preset's alpha = rank: nothing folded into B
    assert jax.tree.structure(lora) == jax.tree.structure(ours)
    jax.tree.map(np.testing.assert_array_equal, lora, jax.device_get(ours))
    assert all(np.any(np.asarray(b["lora_B"])) for b in jax.tree.leaves(lora, is_leaf=lambda d: isinstance(d, dict) and "lora_B" in d))
    info = json.loads((out / "jaxdistill_export.json").read_text())
    assert (info["kind"], info["method"], info["step"], info["base"]) == ("lora", "lcm", 1, os.path.abspath(folder))
    scheduler = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler == info["scheduler"] and scheduler["_class_name"] == "LCMScheduler"


def test_a_full_lcm_student_exports_to_a_diffusers_folder_with_its_unet_and_lcms_scheduler(sd15, lcm_run, tmp_path):
    """FlaxStableDiffusionPipeline loads the folder (diffusers has no Flax LCMScheduler, hence scheduler=None;
    the tiny folder has no safety checker) with the student's UNet weights; load_sd_teacher reads the guidance
    projection too and computes the student's network output exactly; the other components are the teacher's."""
    from diffusers import FlaxStableDiffusionPipeline

    folder, teacher = sd15
    workdir, run = lcm_run
    out = tmp_path / "lcm"
    assert main(["export", "--workdir", workdir, "--out", str(out)]) == 0
    student = jax.device_get(run.trainable["student"].eval_params)
    pipe, params = FlaxStableDiffusionPipeline.from_pretrained(str(out), scheduler=None, safety_checker=None, feature_extractor=None)
    assert pipe.unet.config.cross_attention_dim == teacher.network.module.unet.cross_attention_dim
    jax.tree.map(np.testing.assert_array_equal, params["unet"], student["params"]["unet"])
    exported = load_sd_teacher(str(out))
    jax.tree.map(np.testing.assert_array_equal, exported.unet_params, student)
    x = jax.random.normal(jax.random.key(3), (2, 8, 8, 4))
    tw = jnp.array([[500.0, 3.0], [900.0, 8.0]])
    cond = teacher.text_condition(["a cat", "x"]).conditional()
    ours = consistency_denoiser(exported.denoiser()).apply_fn(exported.unet_params, x, tw, cond)  # LCM's f of the exported UNet
    np.testing.assert_array_equal(ours, run.built.objective.student.apply_fn(student, x, tw, cond))
    other_w = consistency_denoiser(exported.denoiser()).apply_fn(exported.unet_params, x, tw.at[:, 1].set(12.0), cond)
    assert np.max(np.abs(np.asarray(other_w - ours))) > 1e-3  # the exported guidance projection is live
    unet_config = json.loads((out / "unet" / "config.json").read_text())
    assert unet_config["time_cond_proj_dim"] == 8 and unet_config["sample_size"] == teacher.network.module.unet.sample_size
    index = json.loads((out / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers", "LCMScheduler"]
    for name in ("vae", "text_encoder", "tokenizer"):
        for file in os.listdir(os.path.join(folder, name)):
            assert (out / name / file).read_bytes() == open(os.path.join(folder, name, file), "rb").read()


def test_lcms_scheduler_config_is_lcmschedulers_with_the_objectives_steps(sd15, lcm_run):
    """The LCMScheduler config: the teacher's DDPM schedule and prediction type, original_inference_steps = N
    (diffusers' LCMScheduler.set_timesteps(nfe) then visits the objective's sampling_times(nfe)[:-1] - 1:
    tests/test_lcm.py::test_lcm_sampling_times_are_lcmschedulers_timesteps), timestep scaling 10."""
    teacher_config = sd15[1].info.configs["scheduler"]
    objective = lcm_run[1].built.objective
    config = objective.diffusers_scheduler_config(teacher_config)
    assert config["_class_name"] == "LCMScheduler"
    assert {k: config[k] for k in ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps", "prediction_type")} == {
        k: teacher_config[k] for k in ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps", "prediction_type")
    }
    assert (config["original_inference_steps"], config["timestep_scaling"]) == (50, 10.0)
    k = config["num_train_timesteps"] // config["original_inference_steps"]
    origin = (np.arange(1, config["original_inference_steps"] + 1) * k - 1)[::-1]  # LCMScheduler's lcm_origin_timesteps
    for nfe in (1, 2, 4):
        picked = origin[np.floor(np.linspace(0, len(origin), nfe, endpoint=False)).astype(int)]  # its inference_indices
        np.testing.assert_array_equal(np.asarray(objective.sampling_times(nfe))[:-1] - 1, picked)


def test_sample_workdir_gives_the_objectives_own_latents_and_reads_guidance_as_w(sd15, lcm_run, tmp_path):
    """`sample --workdir --prompt`: the latents are objective.generate's from the objective's prior at --seed,
    the prompts' TextCondition and --guidance as the w-conditioned student's w; the images their VAE decoding."""
    _, teacher = sd15
    prompts, nfe, seed, w = ["a cat", "blue sky"], 2, 3, 3.0
    workdir, run = lcm_run
    args = ["sample", "--workdir", workdir, "--nfe", str(nfe), "--seed", str(seed), "--guidance", str(w), "--quiet",
            "--out", str(tmp_path / "grid.png"), "--npz", str(tmp_path / "grid.npz")]
    assert main([*args, "--prompt", prompts[0], "--prompt", prompts[1]]) == 0
    arrays = np.load(tmp_path / "grid.npz")
    objective = dataclasses.replace(run.built.objective, guidance=w)
    rng = jax.random.key(seed)
    noise = objective.prior(rng, 2)
    cond = teacher.text_condition(prompts)
    generate = jax.jit(lambda tr, fr, z, c, r: objective.generate(tr, fr, z, c, nfe=nfe, rng=r))
    latents = generate(run.trainable, run.frozen, noise, cond, jax.random.fold_in(derive(rng, "sampler"), 0))
    np.testing.assert_array_equal(arrays["latents"], latents)
    np.testing.assert_array_equal(arrays["images"], teacher.decode_latents(latents))
    assert os.path.isfile(tmp_path / "grid.png")


@pytest.mark.parametrize("case, names", [
    ("no_checkpoint", ["no checkpoints in"]),
    ("not_empty", ["is not empty"]),
    ("a_file", ["is a file"]),
])
def test_bad_export_is_one_line_exit_2_and_writes_nothing(lora_run, tmp_path, capsys, case, names):
    out = tmp_path / "out"
    workdir = lora_run[0]
    if case == "no_checkpoint":
        workdir = str(tmp_path / "empty")
        os.makedirs(workdir)
    elif case == "not_empty":
        out.mkdir()
        (out / "old.txt").write_text("old")
    else:
        out.write_text("old")
    capsys.readouterr()
    assert main(["export", "--workdir", workdir, "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and all(name in lines[0] for name in names), lines
    if case == "not_empty":
        assert os.listdir(out) == ["old.txt"] and (out / "old.txt").read_text() == "old"
    elif case == "a_file":
        assert out.read_text() == "old"
    else:
        assert not out.exists()
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


@pytest.mark.parametrize("extra, message", [
    (["--guidance", "3"], "--guidance: this lcm student takes no guidance input"),
    (["--nfe", "51"], "--nfe 51: the LCM sampler takes 1 to num_ddim_timesteps=50 steps"),
])
def test_sample_workdir_refuses_what_the_students_sampler_cannot_take(lora_run, tmp_path, capsys, extra, message):
    """LCM-LoRA has no w input; LCM's sampler picks at most N = 50 of its training indices."""
    capsys.readouterr()
    assert main(["sample", "--workdir", lora_run[0], "--prompt", "a cat", *extra, "--out", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not os.listdir(tmp_path)


@pytest.mark.slow  # ~20 s (the SDXL cache and an LCM step); the SD 1.5 LoRA export runs in every CI pass
def test_an_sdxl_lora_student_exports_keys_diffusers_maps_to_its_kernels_and_names_the_xl_pipeline(sdxl, sdxl_cache, tmp_path):
    """The SDXL LCM-LoRA smoke preset with alpha = 2 rank: the file reads back (our importer, scale 1) to the factors with
    B scaled by alpha / r = 2; each key's PyTorch module, renamed by diffusers' own PyTorch -> Flax key mapping
    (``rename_key``, ``rename_key_and_reshape_tensor``), is the Flax kernel the factors adapt, with PyTorch's weight layout
    [out, in(, kh, kw)]; the info JSON and README name the base and StableDiffusionXLPipeline."""
    from diffusers.models.modeling_flax_pytorch_utils import rename_key, rename_key_and_reshape_tensor
    from flax import traverse_util
    from safetensors.numpy import load_file

    folder, teacher = sdxl
    workdir = str(tmp_path / "run")
    run = write_run(workdir, folder, sdxl_cache[1], "lora.alpha=4.0", spec=SDXL_SPEC)
    out = tmp_path / "lora"
    assert main(["export", "--workdir", workdir, "--out", str(out)]) == 0
    unet = teacher.unet_params["params"]["unet"]
    lora, spec = import_diffusers_lora(out / LORA_FILE_NAME, unet)
    ours = traverse_util.flatten_dict(jax.device_get(run.trainable["student"].eval_params["params"]["unet"]))
    back = traverse_util.flatten_dict(lora)
    assert spec.rank == 2 and spec.alpha == 2.0 and set(back) == set(ours)
    for key, value in ours.items():
        np.testing.assert_allclose(back[key], 2.0 * value if key[-1] == "lora_B" else value, rtol=1e-6)
    kernels = {k: v for k, v in traverse_util.flatten_dict(unet).items() if k[-1] == "kernel"}
    tensors = load_file(out / LORA_FILE_NAME)
    assert len(tensors) == 2 * len({k[:-1] for k in ours})
    for name, a in tensors.items():
        if not name.endswith(".lora_A.weight"):
            continue
        module = name[len("unet."):-len(".lora_A.weight")]
        b = tensors[f"unet.{module}.lora_B.weight"]
        torch_weight = np.zeros((b.shape[0], a.shape[1], *a.shape[2:]), np.float32)  # PyTorch's [out, in(, kh, kw)]
        flax_key, flax_weight = rename_key_and_reshape_tensor(tuple(rename_key(f"{module}.weight").split(".")), torch_weight, kernels)
        assert flax_key in kernels and flax_weight.shape == kernels[flax_key].shape, (name, flax_key)
        assert (*flax_key[:-1], "lora_A") in ours
    assert {a.ndim for a in tensors.values()} == {2, 4}  # Linear and Conv2d modules (LCM-LoRA's resnets)
    info = json.loads((out / "jaxdistill_export.json").read_text())
    assert (info["kind"], info["method"], info["base"], info["pipeline"]) == ("lora", "lcm", os.path.abspath(folder), "StableDiffusionXLPipeline")
    assert info["lora"]["scale_folded_into_B"] == 2.0 and info["scheduler"]["_class_name"] == "LCMScheduler"
    assert "diffusers.StableDiffusionXLPipeline.from_pretrained" in (out / "README.md").read_text()


@pytest.mark.slow
def test_a_full_sdxl_lcm_student_exports_to_a_folder_the_xl_pipeline_and_load_sd_teacher_read_with_its_unet(sdxl, sdxl_cache, tmp_path):
    """A full, w-conditioned SDXL LCM student: FlaxStableDiffusionXLPipeline loads the folder with the student's UNet
    (both text encoders and tokenizers the teacher's), and load_sd_teacher computes the student's output exactly,
    with the prompts' pooled embeddings and time ids. Two SDXL UNet passes op by op: slow."""
    from diffusers import FlaxStableDiffusionXLPipeline

    folder, teacher = sdxl
    workdir = str(tmp_path / "run")
    run = write_run(workdir, folder, sdxl_cache[1], "lcm.guidance_embedding_dim=8", "lora.rank=0", spec=SDXL_SPEC)
    out = tmp_path / "lcm"
    assert main(["export", "--workdir", workdir, "--out", str(out)]) == 0
    student = jax.device_get(run.trainable["student"].eval_params)
    pipe, params = FlaxStableDiffusionXLPipeline.from_pretrained(str(out), scheduler=None)
    assert pipe.unet.config.addition_embed_type == "text_time" and pipe.unet.config.time_cond_proj_dim == 8
    jax.tree.map(np.testing.assert_array_equal, params["unet"], student["params"]["unet"])
    for name in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae"):
        for file in os.listdir(os.path.join(folder, name)):
            assert (out / name / file).read_bytes() == open(os.path.join(folder, name, file), "rb").read()
    info = json.loads((out / "jaxdistill_export.json").read_text())
    assert (info["kind"], info["pipeline"]) == ("pipeline", "StableDiffusionXLPipeline")
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == "StableDiffusionXLPipeline"
    exported = load_sd_teacher(str(out))
    assert exported.sdxl
    jax.tree.map(np.testing.assert_array_equal, exported.unet_params, student)
    x = jax.random.normal(jax.random.key(3), (2, 8, 8, 4))
    tw = jnp.array([[500.0, 3.0], [900.0, 8.0]])
    cond = teacher.text_condition(["a cat", "x"]).conditional()
    assert cond.pooled is not None and cond.time_ids is not None
    ours = consistency_denoiser(exported.denoiser()).apply_fn(exported.unet_params, x, tw, cond)
    np.testing.assert_array_equal(ours, run.built.objective.student.apply_fn(student, x, tw, cond))
