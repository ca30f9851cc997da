"""A small MLP classifier for sklearn's 8x8 digits and the metrics built on it.

Images are ``[N, 8, 8, 1]`` float32 in ``[-1, 1]`` (raw pixel ``v in 0..16`` maps to
``v / 8 - 1``). The classifier is trained once on a fixed split (1,347 train /
450 test, permutation seed 0) and cached with ``flax.serialization`` under
``$JAXDISTILL_CACHE`` (default ``~/.cache/jaxdistill``). Its penultimate layer
provides the features of an FID-style Fréchet distance ("FD-digits").
"""
from __future__ import annotations

import os
import warnings
from typing import Optional

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

from jaxdistill.core.types import Array, PyTree
from jaxdistill.eval.metrics import class_accuracy, frechet_from_features

CACHE_NAME = "digits_classifier_v1.msgpack"
NUM_TRAIN = 1347


class DigitsMLP(nn.Module):
    """``64 -> 256 -> 128 (features) -> 10`` MLP with SiLU activations."""

    hidden: int = 256
    feature_dim: int = 128

    @nn.compact
    def __call__(self, x: Array, return_features: bool = False):
        h = nn.silu(nn.Dense(self.hidden)(x.reshape(x.shape[0], -1)))
        feats = nn.silu(nn.Dense(self.feature_dim)(h))
        logits = nn.Dense(10)(feats)
        return (logits, feats) if return_features else logits


def digits_data() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as ``([N, 8, 8, 1] in [-1, 1], int32 labels)``."""
    d = load_digits()
    x = (d.images.astype(np.float32) / 8.0 - 1.0)[..., None]
    return x, d.target.astype(np.int32)


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fixed ``(x_train, y_train, x_test, y_test)`` split (permutation seed 0)."""
    x, y = digits_data()
    perm = np.random.default_rng(0).permutation(x.shape[0])
    tr, te = perm[:NUM_TRAIN], perm[NUM_TRAIN:]
    return x[tr], y[tr], x[te], y[te]


def cache_path() -> str:
    root = os.environ.get("JAXDISTILL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "jaxdistill")
    return os.path.join(root, CACHE_NAME)


def _fit(seed: int, steps: int, batch_size: int = 128, noise_std: float = 0.1) -> PyTree:
    """AdamW + cross-entropy on mini-batches with Gaussian input noise (robustness to sample noise)."""
    x_train, y_train, _, _ = digits_split()
    model = DigitsMLP()
    key = jax.random.PRNGKey(seed)
    params = model.init(key, jnp.zeros((1, 8, 8, 1)))
    tx = optax.adamw(optax.cosine_decay_schedule(2e-3, steps), weight_decay=1e-4)
    xs, ys = jnp.asarray(x_train), jnp.asarray(y_train)

    def step(carry, k):
        params, opt_state = carry
        k_idx, k_noise = jax.random.split(k)
        idx = jax.random.randint(k_idx, (batch_size,), 0, xs.shape[0])
        xb = xs[idx] + noise_std * jax.random.normal(k_noise, xs[idx].shape)

        def loss_fn(p):
            logits = model.apply(p, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, ys[idx]).mean()

        grads = jax.grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    keys = jax.random.split(jax.random.fold_in(key, 1), steps)
    (params, _), _ = jax.jit(lambda c, ks: jax.lax.scan(step, c, ks))((params, tx.init(params)), keys)
    return params


def _load(path: str, seed: int, steps: int) -> Optional[PyTree]:
    """Cached params, or ``None`` when missing, stale (other seed/steps) or unreadable."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as f:
            payload = flax.serialization.msgpack_restore(f.read())
        if int(payload["seed"]) != seed or int(payload["steps"]) != steps:
            return None
        template = jax.eval_shape(DigitsMLP().init, jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))
        params = flax.serialization.from_state_dict(template, payload["params"])
        for want, got in zip(jax.tree_util.tree_leaves(template), jax.tree_util.tree_leaves(params)):
            if tuple(want.shape) != np.shape(got):
                raise ValueError("parameter shape mismatch")
        return jax.tree_util.tree_map(jnp.asarray, params)
    except Exception as err:  # noqa: BLE001 - any unreadable cache means "retrain"
        warnings.warn(f"ignoring unreadable digits-classifier cache {path}: {err!r}; retraining")
        return None


def _save(path: str, params: PyTree, seed: int, steps: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    payload = {"params": flax.serialization.to_state_dict(jax.device_get(params)), "seed": seed, "steps": steps}
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(flax.serialization.msgpack_serialize(payload))
    os.replace(tmp, path)


def train_digits_classifier(seed: int = 0, steps: int = 3000, use_cache: bool = True) -> PyTree:
    """Classifier params, loaded from :func:`cache_path` or trained (a few seconds on CPU) and cached."""
    path = cache_path()
    params = _load(path, seed, steps) if use_cache else None
    if params is None:
        params = _fit(seed, steps)
        if use_cache:
            _save(path, params, seed, steps)
    return params


@jax.jit
def _forward(params: PyTree, x: Array) -> tuple[Array, Array]:
    return DigitsMLP().apply(params, x, return_features=True)


class DigitsEvaluator:
    """Classifier-based metrics for generated digits ``[N, 8, 8, 1]`` in ``[-1, 1]``."""

    def __init__(self, params: Optional[PyTree] = None):
        self.params = train_digits_classifier() if params is None else params
        x_all, _ = digits_data()
        self.real_features = self.features(x_all)
        _, _, x_test, y_test = digits_split()
        self.test_accuracy = self.accuracy(x_test, y_test)

    def features(self, x) -> np.ndarray:
        """Penultimate-layer features ``[N, 128]``."""
        return np.asarray(_forward(self.params, jnp.asarray(x, jnp.float32).reshape(-1, 64))[1])

    def predict(self, x) -> np.ndarray:
        """Predicted class labels ``[N]``."""
        return np.asarray(jnp.argmax(_forward(self.params, jnp.asarray(x, jnp.float32).reshape(-1, 64))[0], -1))

    def fd_digits(self, samples) -> float:
        """Fréchet distance between features of ``samples`` and of all 1,797 real digits."""
        return frechet_from_features(self.features(samples), self.real_features)

    def accuracy(self, samples, labels) -> float:
        """Share of ``samples`` classified as their conditioning ``labels``."""
        return class_accuracy(self.predict(samples), labels)
