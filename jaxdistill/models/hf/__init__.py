"""Stable Diffusion teachers through diffusers' and transformers' Flax classes (issue 27 section 1).

``load_sd_teacher(folder)`` -> ``SDTeacher`` (UNet as a ``Network`` / ``Denoiser``, text and
image encoding); ``abstract_sd_unet(folder)`` is the same UNet denoiser with parameter shapes
only, from the folder's JSON files (compile-only use); ``check_folder`` validates a folder from
its JSON files; ``write_tiny_sd`` writes tiny random folders for tests. diffusers and
transformers are imported only when a folder is loaded or written.
"""
from jaxdistill.models.hf.folder import FolderInfo, SchedulerSettings, check_folder, scheduler_settings
from jaxdistill.models.hf.teacher import SDTeacher, abstract_sd_unet, load_sd_teacher, unet_denoiser
from jaxdistill.models.hf.tiny import write_tiny_sd
from jaxdistill.models.hf.unet import DiffusersUNet, TextNetwork, guidance_scale_embedding, unet_network

__all__ = [
    "DiffusersUNet", "FolderInfo", "SDTeacher", "SchedulerSettings", "TextNetwork", "abstract_sd_unet", "check_folder", "guidance_scale_embedding",
    "load_sd_teacher", "scheduler_settings", "unet_denoiser", "unet_network", "write_tiny_sd",
]
