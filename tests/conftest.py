import os
import shutil
import tempfile

import pytest

# Keep the tests on the CPU and off any accelerator a developer machine may have.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# The tests are compile-bound (small networks, few steps), and on CPU most of a compile is
# LLVM optimising code that then runs a few times. Without it (level 0) the suite used 31%
# less CPU time (2454 s -> 1698 s on 2 cores, 2026-12-02); values match the optimised build to
# float32 rounding. Subprocesses inherit it: the helpers append their flags to XLA_FLAGS.
# XLA's older CPU loop emitters (fusion emitters off) compile convolution-heavy steps faster still:
# a digits UNet train step 11.7 -> 5.9 s CPU, two tiny-SD export/sample tests 42.9 -> 32.6 s CPU
# (2026-12-07); MLP steps are unchanged. Rounding differs from the default emitters, so
# tests/smoke_fingerprints.py keeps its own flags and test_smoke_fingerprints compares within a tolerance.
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false".strip()

# Many tests compile the same train step more than once (a straight run and a resumed one, a CLI
# train then eval, subprocesses on simulated meshes). A persistent compilation cache shared by this
# session and its subprocesses turns the repeats into cache hits (test_dmd's TTUR compile-once
# test: 78 s -> 50 s CPU time). It lives in a fresh folder that is removed when the session ends.
_CACHE_DIR = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _CACHE_DIR = tempfile.mkdtemp(prefix="jaxdistill-test-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE_DIR
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")


def pytest_unconfigure(config):
    if _CACHE_DIR is not None:
        shutil.rmtree(_CACHE_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def sd15(tmp_path_factory):
    """A tiny random SD 1.5-like folder (``write_tiny_sd``) and its loaded teacher, shared by every
    module that reads it (tests copy it before changing anything)."""
    from jaxdistill.models.hf import load_sd_teacher, write_tiny_sd

    path = write_tiny_sd(tmp_path_factory.mktemp("sd15") / "sd", "sd15")
    return path, load_sd_teacher(path)


def write_prompts_with_images(root) -> str:
    """``root/prompts.jsonl``: four prompts, each with a random ``IMAGE_SIZE`` image beside it; returns its path."""
    import json

    import numpy as np
    from PIL import Image

    from jaxdistill.models.hf.tiny import IMAGE_SIZE

    rs = np.random.default_rng(0)
    lines = []
    for i, prompt in enumerate(["a cat", "red", "blue sky", "moon"]):
        Image.fromarray(rs.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)).save(root / f"{i}.png")
        lines.append(json.dumps({"prompt": prompt, "image": f"{i}.png"}))
    (root / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    return str(root / "prompts.jsonl")


def cache_args(folder, prompts: str) -> list[str]:
    """`jaxdistill cache` arguments for ``folder`` and the prompt file ``prompts`` (``--out`` to add)."""
    return ["cache", "--diffusers", str(folder), "--prompts", prompts, "--quiet"]


@pytest.fixture(scope="session")
def sd15_cache(sd15, tmp_path_factory):
    """`jaxdistill cache` of four prompts for the ``sd15`` folder: (folder, cache with image latents, text-only cache)."""
    from jaxdistill.cli import main

    folder, _ = sd15
    root = tmp_path_factory.mktemp("sd15_cache")
    common = cache_args(folder, write_prompts_with_images(root))
    images, text = str(root / "images"), str(root / "text")
    assert main([*common, "--images", "image", "--out", images]) == 0 and main([*common, "--out", text]) == 0
    return str(folder), images, text


@pytest.fixture(scope="session")
def sdxl(tmp_path_factory):
    """A tiny random SDXL-like folder (``write_tiny_sd(..., "sdxl")``) and its loaded teacher, shared like ``sd15``."""
    from jaxdistill.models.hf import load_sd_teacher, write_tiny_sd

    path = write_tiny_sd(tmp_path_factory.mktemp("sdxl") / "sd", "sdxl")
    return path, load_sd_teacher(path)


@pytest.fixture(scope="session")
def sdxl_cache(sdxl, tmp_path_factory):
    """`jaxdistill cache` of four prompts and their image latents for the ``sdxl`` folder: (folder, cache)."""
    from jaxdistill.cli import main

    folder, _ = sdxl
    root = tmp_path_factory.mktemp("sdxl_cache")
    cache = str(root / "cache")
    assert main([*cache_args(folder, write_prompts_with_images(root)), "--images", "image", "--out", cache]) == 0
    return str(folder), cache
