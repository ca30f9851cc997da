"""Networks (MLP, UNet, DiT) and the exact Gaussian-mixture teacher."""
from jaxdistill.models.gaussian_mixture import GaussianMixture, mixture_apply_fn
from jaxdistill.models.registry import Network, default_network_config, make_network

__all__ = ["GaussianMixture", "mixture_apply_fn", "Network", "default_network_config", "make_network"]
