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
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()

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


@pytest.fixture(scope="session")
def sd15_cache(sd15, tmp_path_factory):
    """`jaxdistill cache` of four prompts for the ``sd15`` folder: (folder, cache with image latents, text-only cache)."""
    import json

    import numpy as np
    from PIL import Image

    from jaxdistill.cli import main
    from jaxdistill.models.hf.tiny import IMAGE_SIZE

    folder, _ = sd15
    root = tmp_path_factory.mktemp("sd15_cache")
    rs = np.random.default_rng(0)
    lines = []
    for i, prompt in enumerate(["a cat", "red", "blue sky", "moon"]):
        Image.fromarray(rs.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)).save(root / f"{i}.png")
        lines.append(json.dumps({"prompt": prompt, "image": f"{i}.png"}))
    (root / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    images, text = str(root / "images"), str(root / "text")
    common = ["cache", "--diffusers", str(folder), "--prompts", str(root / "prompts.jsonl"), "--quiet"]
    assert main([*common, "--images", "image", "--out", images]) == 0 and main([*common, "--out", text]) == 0
    return str(folder), images, text
