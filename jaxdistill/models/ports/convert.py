"""``jaxdistill convert``: published checkpoints -> converted ``.npz`` (:mod:`.converted`).

Kinds: ``dit-pt`` (facebookresearch/DiT ``.pt`` state dicts, read without PyTorch). ``edm-pkl``
and ``edm2-pkl`` (NVlabs pickles) are named so the command lists them, and answer that they are
not supported yet.
"""
from __future__ import annotations

import os
from typing import Optional

from jaxdistill.core.errors import CheckpointFileError
from jaxdistill.models.ports.converted import save_converted
from jaxdistill.models.ports.dit_checkpoint import convert_state_dict, select_state_dict
from jaxdistill.models.ports.torch_pt import read_pt

KINDS = ("dit-pt", "edm-pkl", "edm2-pkl")


def convert_dit_pt(src: str, out: str, size: Optional[str] = None, num_heads: Optional[int] = None, use_ema: bool = True) -> str:
    """Convert the DiT ``.pt`` at ``src`` into ``out``; returns a one-line summary. Every check runs
    before ``out`` is written, and the write is atomic, so an error leaves ``out`` as it was."""
    state, which = select_state_dict(read_pt(src), src, use_ema)
    params, fields = convert_state_dict(state, src, size=size, num_heads=num_heads)
    event_shape = [fields.pop("input_size")] * 2 + [fields.pop("in_channels")]
    info = {"from": "dit-pt", "source": os.path.basename(src), "entry": which, "event_shape": event_shape}
    save_converted(out, params, {"name": "dit_port", **fields}, info)
    named = f"DiT-{fields['size']}" if fields["size"] else f"a DiT of depth {fields['depth']}, width {fields['hidden_size']}, patch {fields['patch_size']}, {fields['num_heads']} heads"
    how = "as asked" if size else "inferred from the shapes"
    return f"read {named} ({how}; {which}, {fields['num_classes']} classes, inputs {tuple(event_shape)}) from {src}; wrote {out}"


def convert_checkpoint(kind: str, src: str, out: str, **options) -> str:
    """Convert ``src`` of ``kind`` (one of ``KINDS``) into ``out``; returns a one-line summary."""
    if kind == "dit-pt":
        return convert_dit_pt(src, out, **options)
    if kind in KINDS:
        raise CheckpointFileError(f"--from {kind} is not supported yet (only dit-pt); {src!r} was not read")
    raise CheckpointFileError(f"unknown checkpoint kind {kind!r}; choose from {KINDS}")
