"""A network written outside jaxdistill, as a user would: any linen module whose ``__call__``
takes ``(x, t, cond, *, train, return_features)`` (``jaxdistill.models`` contract)."""
import flax.linen as nn
import jax.numpy as jnp


class TinyDenoiser(nn.Module):
    """Two hidden layers on [x, log t, one-hot label]."""

    width: int = 32
    num_classes: int = 0

    @nn.compact
    def __call__(self, x, t, cond, *, train=False, return_features=False):
        inputs = [x.reshape(x.shape[0], -1), jnp.log(jnp.maximum(t.reshape(x.shape[0], -1), 1e-4))]
        if self.num_classes > 0:
            inputs.append(nn.one_hot(jnp.maximum(cond, 0), self.num_classes) * (cond >= 0)[:, None])
        h = nn.silu(nn.Dense(self.width)(jnp.concatenate(inputs, axis=-1)))
        h = nn.silu(nn.Dense(self.width)(h))
        out = nn.Dense(x[0].size, kernel_init=nn.initializers.zeros)(h).reshape(x.shape)
        return (out, [h]) if return_features else out
