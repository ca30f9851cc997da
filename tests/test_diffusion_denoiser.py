"""Denoiser: network inputs per prediction kind, conversions and classifier-free guidance."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistill.core.types import NULL_LABEL
from jaxdistill.diffusion import predict
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.process import get_process

CALLS = []


def toy_apply(params, x, t, cond, *, train=False, rngs=None):
    """A known 'network': w x + t + label offset (0 for NULL_LABEL), recording its batch size."""
    CALLS.append(x.shape[0])
    offset = jnp.where(cond == NULL_LABEL, 0.0, cond + 1.0)
    return params["w"] * x + t[:, None] + offset[:, None]


PARAMS = {"w": jnp.float32(0.7)}
X = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
T = jnp.array([0.3, 1.0, 5.0, 20.0])
COND = jnp.array([0, 1, 2, 3])


def test_guidance_convention():
    den = Denoiser(toy_apply, get_process("edm"), "x0")
    x0_c = den.x0(PARAMS, X, T, COND)
    x0_u = den.x0(PARAMS, X, T, jnp.full_like(COND, NULL_LABEL))
    CALLS.clear()
    np.testing.assert_allclose(den.x0(PARAMS, X, T, COND, guidance=1.0), x0_c, rtol=1e-6)
    assert CALLS == [8]  # one batched call on [cond; null]
    np.testing.assert_allclose(den.x0(PARAMS, X, T, COND, guidance=0.0), x0_u, rtol=1e-6)
    np.testing.assert_allclose(den.x0(PARAMS, X, T, COND, guidance=3.0), x0_u + 3.0 * (x0_c - x0_u), rtol=1e-5)
    w = jnp.array([0.0, 1.0, 2.0, 3.0])
    expected = x0_u + w[:, None] * (x0_c - x0_u)
    np.testing.assert_allclose(jax.jit(lambda w: den.x0(PARAMS, X, T, COND, guidance=w))(w), expected, rtol=1e-5)
    # the same convention holds for eps (affine in x0 at fixed x, t)
    eps_c, eps_u = den.eps(PARAMS, X, T, COND), den.eps(PARAMS, X, T, jnp.full_like(COND, NULL_LABEL))
    np.testing.assert_allclose(den.eps(PARAMS, X, T, COND, guidance=3.0), eps_u + 3.0 * (eps_c - eps_u), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="cond"):
        den.x0(PARAMS, X, T, None, guidance=2.0)


def test_edm_kind_feeds_preconditioned_inputs():
    seen = {}

    def record(params, x, t, cond, *, train=False, rngs=None):
        seen.update(x=x, t=t, train=train)
        return jnp.ones_like(x)

    proc = get_process("vp_cosine")
    den = Denoiser(record, proc, "edm", sigma_data=0.5)
    t = jnp.array([0.2, 0.4, 0.6, 0.8])
    out = den.x0(PARAMS, X, t, train=True)
    s = proc.sigma_ratio(t)
    c_skip, c_out, c_in, c_noise = predict.edm_coeffs(s, 0.5)
    y = X / proc.alpha(t)[:, None]
    np.testing.assert_allclose(seen["x"], c_in[:, None] * y, rtol=1e-5)
    np.testing.assert_allclose(seen["t"], jnp.log(s) / 4, rtol=1e-5)
    assert seen["train"] is True
    np.testing.assert_allclose(out, c_skip[:, None] * y + c_out[:, None], rtol=1e-5)


@pytest.mark.parametrize("kind", ["eps", "v", "flow"])
def test_derived_quantities(kind):
    proc = get_process("rectified_flow")
    den = Denoiser(toy_apply, proc, kind)
    t = jnp.float32(0.4)  # scalar t is broadcast to [B]
    x0 = den.x0(PARAMS, X, t, COND)
    eps = (X - proc.alpha(t) * x0) / proc.sigma(t)
    np.testing.assert_allclose(den.eps(PARAMS, X, t, COND), eps, rtol=1e-5)
    np.testing.assert_allclose(den.v(PARAMS, X, t, COND), proc.alpha(t) * eps - proc.sigma(t) * x0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(den.velocity(PARAMS, X, t, COND), eps - x0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(den.score(PARAMS, X, t, COND), -eps / 0.4, rtol=1e-5)
    np.testing.assert_allclose(den.raw(PARAMS, X, t, COND), toy_apply(PARAMS, X, jnp.full((4,), 0.4), COND), rtol=1e-6)


def test_unknown_prediction():
    with pytest.raises(ValueError, match="edm"):
        Denoiser(toy_apply, get_process("edm"), "score")
