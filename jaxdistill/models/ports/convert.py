"""``jaxdistill convert``: published checkpoints -> converted ``.npz`` (:mod:`.converted`).

Kinds: ``dit-pt`` (facebookresearch/DiT ``.pt`` state dicts, read without PyTorch), ``edm-pkl``
(NVlabs/edm network pickles, read without PyTorch or EDM's code; the network's architecture is
read from the pickle), ``edm2-pkl`` (NVlabs/edm2 network pickles, likewise; ``ema`` picks the
entry, the file the EMA profile) and ``fid-inception-pth`` (pytorch-fid's FID Inception weights,
for :mod:`jaxdistill.eval.fid`).
"""
from __future__ import annotations

import os
from typing import Optional

from jaxdistill.core.errors import CheckpointFileError
from jaxdistill.models.ports import edm2_checkpoint as edm2
from jaxdistill.models.ports import fid_inception_checkpoint as fid_inception
from jaxdistill.models.ports.converted import save_converted
from jaxdistill.models.ports.dit_checkpoint import convert_state_dict, select_state_dict
from jaxdistill.models.ports.edm_checkpoint import convert_network, describe, select_network
from jaxdistill.models.ports.edm_pickle import read_edm_pickle
from jaxdistill.models.ports.torch_pt import read_pt

KINDS = ("dit-pt", "fid-inception-pth", "edm-pkl", "edm2-pkl")


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


def convert_edm_pkl(src: str, out: str) -> str:
    """Convert the EDM network pickle at ``src`` (its ``ema`` network) into ``out``; returns a
    one-line summary. Every check runs before ``out`` is written, and the write is atomic."""
    params, fields, event_shape, sigma_data = convert_network(select_network(read_edm_pickle(src), src), src)
    info = {"from": "edm-pkl", "source": os.path.basename(src), "entry": "ema", "event_shape": event_shape, "prediction": "edm", "sigma_data": sigma_data}
    network = {"name": f"edm_{fields['arch']}", "preset": None, **{k: v for k, v in fields.items() if k != "arch"}}
    save_converted(out, params, network, info)
    return f"read EDM's {describe(fields)} (from its constructor arguments; ema, inputs {tuple(event_shape)}, sigma_data {sigma_data}) from {src}; wrote {out}"


def convert_edm2_pkl(src: str, out: str, ema: str = "ema") -> str:
    """Convert the ``Precond`` under ``ema`` of the EDM2 network pickle at ``src`` into ``out``;
    returns a one-line summary. Every check runs before ``out`` is written, and the write is atomic."""
    net = edm2.select_network(read_edm_pickle(src, "EDM2"), src, ema)
    params, fields, event_shape, sigma_data, use_fp16 = edm2.convert_network(net, src)
    profile = edm2.ema_profile(src) or {}
    info = {"from": "edm2-pkl", "source": os.path.basename(src), "entry": ema, "event_shape": event_shape, "prediction": "edm", "sigma_data": sigma_data,
            "use_fp16": use_fp16, **profile}
    save_converted(out, params, {"name": "edm2", "size": edm2.size_of(fields), **fields}, info)
    length = f", EMA std {profile['ema_std']} at {profile['kimg']} kimg" if profile else ""
    return f"read {edm2.describe(fields)} (from its constructor arguments; {ema}{length}, inputs {tuple(event_shape)}, sigma_data {sigma_data}) from {src}; wrote {out}"


def convert_fid_inception_pth(src: str, out: str) -> str:
    """Convert pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` at ``src`` into ``out``
    (checked before anything is written, written atomically); returns a one-line summary."""
    params = fid_inception.convert_state_dict(read_pt(src), src)
    sha256 = fid_inception.file_sha256(src)
    fid_inception.save_inception(out, params, src, sha256)
    published = "the published file" if sha256.startswith(fid_inception.WEIGHTS_SHA256_PREFIX) else f"not the published file (its sha256 starts with {fid_inception.WEIGHTS_SHA256_PREFIX})"
    return f"read the FID Inception weights from {src} (sha256 {sha256[:12]}..., {published}); wrote {out}"


def convert_checkpoint(kind: str, src: str, out: str, **options) -> str:
    """Convert ``src`` of ``kind`` (one of ``KINDS``) into ``out``; returns a one-line summary."""
    if kind == "dit-pt":
        return convert_dit_pt(src, out, **options)
    if kind == "edm-pkl":
        return convert_edm_pkl(src, out, **options)
    if kind == "edm2-pkl":
        return convert_edm2_pkl(src, out, **options)
    if kind == "fid-inception-pth":
        return convert_fid_inception_pth(src, out, **options)
    raise CheckpointFileError(f"unknown checkpoint kind {kind!r}; choose from {KINDS}")
