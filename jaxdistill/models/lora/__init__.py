"""LoRA (Hu et al. 2021) for any Flax network: adapters (:mod:`.adapters`) and diffusers LoRA files (:mod:`.diffusers_io`)."""
from jaxdistill.models.lora.adapters import ATTENTION_TARGETS, LCM_LORA_TARGETS, LoraSpec, init_lora, lora_delta, merge, select_kernels, unmerge
from jaxdistill.models.lora.diffusers_io import LORA_FILE_NAME, export_diffusers_lora, import_diffusers_lora, torch_module_path

__all__ = [
    "ATTENTION_TARGETS", "LCM_LORA_TARGETS", "LoraSpec", "init_lora", "lora_delta", "merge", "select_kernels", "unmerge",
    "LORA_FILE_NAME", "export_diffusers_lora", "import_diffusers_lora", "torch_module_path",
]
