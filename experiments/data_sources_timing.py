"""Time one process-local batch of each on-disk source against the same records in memory.

Writes ``--num`` random CIFAR-shaped records (uint8 32x32x3, labels 0..9) as array_record shards
(``write_array_record``) and the same number of ImageNet-256 latents (float16 32x32x4) as ``.npz``
latent shards, in a temporary folder, then times ``BatchStream[step]`` (index shuffle + gather) for
``--batch`` records per step over ``--steps`` steps, median per batch, beside an in-memory
``ArraySource`` of the same arrays. Files are read through the page cache after the first epoch.
Also the median time to decode one image record in the array_record format (msgpack) against
the same record as an ``.npz`` (the format not chosen).

Usage: python experiments/data_sources_timing.py [--num 4096] [--batch 256] [--steps 32] [--out results/data_sources_timing.json]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time

import numpy as np

from jaxdistill.data.pipeline import BatchStream
from jaxdistill.data.shards import ArrayRecordSource, LatentSource, decode_record, encode_record, uint8_to_unit, write_array_record
from jaxdistill.data.sources import ArraySource


def median_batch_ms(source, batch: int, steps: int) -> float:
    """Median milliseconds of ``BatchStream(source, batch)[step]`` over ``steps`` steps (one process)."""
    stream = BatchStream(source, batch, seed=0, shard_index=0, shard_count=1)
    times = []
    for step in range(steps):
        start = time.perf_counter()
        stream[step]
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def decode_us(records: list[bytes], decode) -> float:
    """Median microseconds of ``decode(record)`` over ``records``."""
    times = []
    for record in records:
        start = time.perf_counter()
        decode(record)
        times.append(time.perf_counter() - start)
    return 1e6 * float(np.median(times))


def npz_bytes(x: np.ndarray, label: int) -> bytes:
    """The record format not chosen: an uncompressed ``.npz`` of ``x`` and ``label``."""
    buffer = io.BytesIO()
    np.savez(buffer, x=x, label=np.int64(label))
    return buffer.getvalue()


def read_npz(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    with np.load(io.BytesIO(data)) as npz:
        return npz["x"], npz["label"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--out", default="results/data_sources_timing.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.num, 32, 32, 3), dtype=np.uint8)
    latents = rng.standard_normal((args.num, 32, 32, 4)).astype(np.float16)
    labels = rng.integers(0, 10, args.num)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        write_array_record(os.path.join(tmp, "images"), images, labels, shard_size=args.num // 4)
        for s, part in enumerate(np.array_split(np.arange(args.num), 4)):
            np.savez(os.path.join(tmp, f"latents-{s:03d}.npz"), x=latents[part], label=labels[part])
        sources = {
            "images 32x32x3 uint8, in memory (ArraySource)": ArraySource(uint8_to_unit(images), labels),
            "images 32x32x3 uint8, array_record (4 shards)": ArrayRecordSource(os.path.join(tmp, "images")),
            "latents 32x32x4 float16, in memory (ArraySource)": ArraySource(latents, labels),
            "latents 32x32x4 float16, memory-mapped .npz (4 shards)": LatentSource(tmp, latent_scale=0.18215),
        }
        for name, source in sources.items():
            rows[name] = round(median_batch_ms(source, args.batch, args.steps), 2)
    for name, ms in rows.items():
        print(f"{name:58s} {ms:8.2f} ms per batch of {args.batch}")
    sample = range(min(args.num, 512))
    decode = {
        "msgpack (the format)": round(decode_us([encode_record(images[i], labels[i]) for i in sample], lambda r: decode_record(r, "")), 1),
        "uncompressed .npz, np.load": round(decode_us([npz_bytes(images[i], labels[i]) for i in sample], read_npz), 1),
    }
    for name, us in decode.items():
        print(f"decode one 32x32x3 record, {name:38s} {us:8.1f} us")
    record = {"num": args.num, "batch": args.batch, "steps": args.steps, "cpu_count": os.cpu_count(),
              "load_average_1min": round(os.getloadavg()[0], 1), "median_ms_per_batch": rows, "median_us_per_record_decode": decode}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
