"""What the real-image benchmarks (``cifar10``, ``imagenet64``) share: a TFDS dataset read through
``tfds.data_source`` (no TensorFlow), a teacher converted from NVlabs' published EDM pickles
(Karras et al. 2022, ``jaxdistill convert --from edm-pkl``), the EDM port of that teacher's network
for the students (who start from its weights where the paper's do), the EDM process with
sigma_data = 0.5 and the published samplers' zero-mean prior, FID on 50,000 samples.

The ``smoke`` preset (tests and CI, offline, seconds on a CPU) keeps every method setting and
swaps what needs a download or a GPU: 64 mock records of the same TFDS dataset
(``tfds.testing.mock_data``, the dataset's own features) box-filtered to 8x8, a tiny EDM network
of the same architecture as teacher (the benchmark's ``SMOKE_TEACHER``, written by its
``write_smoke_teacher``), batches of 8, 2 updates, critic updates compiled once (``critic_loop``).

Warm-up (100 updates) and gradient clipping (global norm 1) are the base config's unless a config
file sets the paper's.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxdistill.models.ports.converted import save_converted
from jaxdistill.models.registry import default_network_config, make_network
from jaxdistill.objectives import registry

FID_SAMPLES = 50_000  # FID against the training set's statistics, as every paper here reports it
SMOKE_IMAGE_SIZE, SMOKE_EXAMPLES = 8, 64
# The smoke presets' networks: the published architectures at one resolution level, one block, no
# attention, 8x8x3 (their published conditioning: labels, DDPM++'s augmentation labels, dropout).
# Compiling a train step dominates a smoke run, and it grows with the network's block count: the
# DMD2 step compiles in half the time of a two-level DDPM++ with attention.
TINY_DDPMPP = dict(
    name="edm_ddpmpp", preset=None, num_classes=10, model_channels=4, channel_mult=(1,), channel_mult_emb=1, num_blocks=1,
    attn_resolutions=(), dropout=0.13, augment_dim=9,
)
TINY_ADM = dict(name="edm_adm", preset=None, num_classes=1000, model_channels=8, channel_mult=(1,), num_blocks=1, attn_resolutions=(), dropout=0.1)


def edm_port(name: str, preset: str) -> ml_collections.ConfigDict:
    """The EDM port ``name`` (``edm_ddpmpp`` / ``edm_adm``) with the published ``preset``'s fields."""
    net = default_network_config(name)
    net.preset = preset
    return net


def tfds_data(dataset: str, conditional: bool) -> ml_collections.ConfigDict:
    """The training split of ``dataset`` through ``tfds.data_source`` (``tfds build <dataset>`` once)."""
    return ml_collections.ConfigDict(
        {"name": "tfds", "dataset": dataset, "split": "train", "image_key": "image", "label_key": "label" if conditional else None, "data_dir": None}
    )


def ema_decay(halflife_images: float, batch_size: int) -> float:
    """EDM's EMA half-life in images as a per-update decay: ``0.5 ** (batch / half-life)``."""
    return 0.5 ** (batch_size / halflife_images)


def edm_base(c: ml_collections.ConfigDict, data: ml_collections.ConfigDict, network: ml_collections.ConfigDict, teacher_path: str) -> ml_collections.ConfigDict:
    """``c`` on ``data`` distilling the converted EDM teacher at ``teacher_path`` into ``network``."""
    c.data = data
    c.network = network
    c.teacher.kind, c.teacher.path = "converted", teacher_path
    c.process = ml_collections.ConfigDict({"name": "edm"})  # sigma in [0.002, 80], EDM's teachers
    c.prediction = "edm"
    c.sigma_data = 0.5
    c.prior_mean = "zero"  # x_T ~ N(0, 80^2 I), the published samplers' prior
    c.eval.nfes = (1,)
    c.eval.num_samples = FID_SAMPLES
    c.train.sample_every = 0  # a plot of 2,000 images every 1,000 updates costs more than it shows; `jaxdistill sample`
    return c


def smoke(c: ml_collections.ConfigDict, network: dict, teacher_path: str) -> ml_collections.ConfigDict:
    """``c`` shrunk to seconds offline (module docstring): mock TFDS records at 8x8, a tiny
    conditional EDM ``network`` and its teacher file at ``teacher_path``, 2 updates of 8."""
    c.data.mock_examples = SMOKE_EXAMPLES
    c.data.image_size = SMOKE_IMAGE_SIZE
    c.data.label_key = "label"  # the tiny teachers are class-conditional, whatever the full config's
    c.network = ml_collections.ConfigDict(network)
    c.teacher.path = teacher_path
    c.batch_size = 8
    c.train.num_steps = 2
    c.train.log_every = 1
    c.train.checkpoint_every = 2
    c.train.sample_every = 0
    c.train.num_plot_samples = 16
    c.optim.warmup_steps = 1
    c.optim.decay_steps = 0
    c.eval.num_samples = 64
    section = c.get(registry.section(c.method))
    if section is not None and "critic_loop" in section:
        section.critic_loop = "loop"  # k critic updates compile once, not k times (compile dominates a smoke run)
    return c


def write_smoke_teacher(path: str, network: dict, event_shape: tuple[int, ...] = (SMOKE_IMAGE_SIZE, SMOKE_IMAGE_SIZE, 3), seed: int = 0) -> str:
    """Write a smoke teacher to ``path``: the EDM port ``network`` with random weights (``seed``) in
    the converted format (what ``jaxdistill convert`` writes). Returns ``path``."""
    net = make_network(ml_collections.ConfigDict(network))
    params = net.init(jax.random.key(seed), jnp.zeros((1, *event_shape), jnp.float32))
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in network.items()}
    info = {"from": "random", "source": f"random weights, seed {seed} (a smoke teacher)", "event_shape": list(event_shape), "prediction": "edm", "sigma_data": 0.5}
    save_converted(path, jax.device_get(params), config, info)
    return path

