"""Diffusion math: noise processes, prediction types, the Denoiser, grids and samplers."""
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.process import NoiseProcess, get_process
from jaxdistill.diffusion.samplers import sample, sample_nfe

__all__ = ["Denoiser", "NoiseProcess", "get_process", "sample", "sample_nfe"]
