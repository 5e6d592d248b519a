#!/usr/bin/env python3
"""Reference data for the quantized-block tests (crates/mdsa-models/tests/quant.rs).

Uses the `gguf` Python package (ggml's own numpy port of the block formats) as
the oracle, so the Rust decoders are checked against an implementation we did
not write. CI never runs this; it reads the committed output:

- tests/fixtures/quant_blocks.json: for each of Q8_0, Q4_0, Q4_1, Q4_K, Q5_K,
  Q6_K, a few deterministic pseudo-random blocks (hex) with the floats
  `gguf.quants.dequantize` gives for them; and, for Q8_0, Q4_0 and Q4_1, float
  inputs with the bytes `gguf.quants.quantize` makes of them (bit-exact with
  ggml's reference quantizers).
- tests/fixtures/quant_smollm2.json + quant_smollm2_*.bin / *.f32: the first rows
  of three real SmolLM2-135M-Instruct Q4_1 GGUF tensors: raw block bytes and
  their dequantized f32 values (little-endian). Written only when the GGUF file
  is in the Hugging Face cache.

Set up once:

    python3 -m venv /tmp/ggufenv
    /tmp/ggufenv/bin/pip install gguf numpy
    /tmp/ggufenv/bin/python scripts/reference/quant_blocks.py
"""

import glob
import hashlib
import json
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf.quants import dequantize, quantize

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "crates", "mdsa-models", "tests", "fixtures")

# name -> (ggml type, bytes per block, offsets of f16 scale fields in a block)
FORMATS = {
    "Q8_0": (T.Q8_0, 34, [0]),
    "Q4_0": (T.Q4_0, 18, [0]),
    "Q4_1": (T.Q4_1, 20, [0, 2]),
    "Q4_K": (T.Q4_K, 144, [0, 2]),
    "Q5_K": (T.Q5_K, 176, [0, 2]),
    "Q6_K": (T.Q6_K, 210, [208]),
}
BLOCKS_PER_FORMAT = 4

SMOLLM2_GLOB = os.path.expanduser(
    "~/.cache/huggingface/hub/models--QuantFactory--SmolLM2-135M-Instruct-GGUF/"
    "snapshots/*/SmolLM2-135M-Instruct.Q4_1.gguf"
)
# (tensor, rows to keep): kept small so the fixture stays under ~250 KB.
SMOLLM2_TENSORS = [("blk.0.attn_q.weight", 32), ("blk.0.ffn_down.weight", 16), ("token_embd.weight", 16)]


def random_blocks(rng: np.random.Generator, block_bytes: int, scale_offsets: list[int]) -> np.ndarray:
    """Random bytes, with every f16 scale field set to a finite value.

    Random bytes in an f16 field would give inf/NaN; real scales are small
    (|d| well below 1), and a negative d (which quantizers produce for Q4_0)
    must decode too, so the scales are drawn from [-0.05, 0.05] plus one
    subnormal to cover that f16 path.
    """
    data = rng.integers(0, 256, size=(BLOCKS_PER_FORMAT, block_bytes), dtype=np.uint8)
    for b in range(BLOCKS_PER_FORMAT):
        for k, off in enumerate(scale_offsets):
            v = np.float16(rng.uniform(-0.05, 0.05))
            if b == BLOCKS_PER_FORMAT - 1 and k == 0:
                v = np.float16(3.0e-6)  # subnormal in f16
            data[b, off : off + 2] = np.frombuffer(v.tobytes(), dtype=np.uint8)
    return data


def floats(a: np.ndarray) -> list[float]:
    # float(np.float32) is the exact value as a double: Rust parses it back
    # (as f64, then `as f32`) to the same f32 bits.
    return [float(x) for x in a.astype(np.float32).ravel()]


def synthetic() -> dict:
    rng = np.random.default_rng(20261126)
    out: dict = {"generator": "scripts/reference/quant_blocks.py", "formats": {}}
    for name, (qtype, block_bytes, scale_offsets) in FORMATS.items():
        data = random_blocks(rng, block_bytes, scale_offsets)
        expected = dequantize(data.reshape(-1), qtype)
        assert np.all(np.isfinite(expected)), name
        out["formats"][name] = {
            "ggml_type": int(qtype),
            "block_bytes": block_bytes,
            "bytes_hex": data.tobytes().hex(),
            "dequantized": floats(expected),
        }
    # Quantizer references: 4 blocks of 32 floats, with a zero block (the d == 0
    # branch), a block with a tie at x.5 after scaling, and plain random ones.
    x = rng.normal(0.0, 1.0, size=(4, 32)).astype(np.float32)
    x[1, :] = 0.0
    x[2, :] = np.linspace(-1.0, 1.0, 32, dtype=np.float32)
    out["quantize_input"] = floats(x)
    out["quantize"] = {}
    for name, qtype in [("Q8_0", T.Q8_0), ("Q4_0", T.Q4_0), ("Q4_1", T.Q4_1)]:
        q = quantize(x.reshape(1, -1), qtype)
        out["quantize"][name] = q.tobytes().hex()
    return out


def smollm2() -> dict | None:
    paths = sorted(glob.glob(SMOLLM2_GLOB))
    if not paths:
        print("SmolLM2 GGUF not in the HF cache: skipping the real-weight fixture")
        return None
    path = paths[0]
    with open(path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    reader = GGUFReader(path)
    tensors = {t.name: t for t in reader.tensors}
    meta: dict = {"generator": "scripts/reference/quant_blocks.py", "gguf_sha256": sha, "tensors": []}
    for name, rows in SMOLLM2_TENSORS:
        t = tensors[name]
        raw = np.asarray(t.data)[:rows]  # (rows, bytes per row), uint8
        values = dequantize(raw, t.tensor_type).astype("<f4")
        cols = int(t.shape[0])  # GGUF lists the fastest-varying dimension first
        assert values.shape == (rows, cols), (name, values.shape)
        stem = "quant_smollm2_" + name.replace(".", "_")
        with open(os.path.join(FIXTURES, stem + ".bin"), "wb") as f:
            f.write(raw.tobytes())
        with open(os.path.join(FIXTURES, stem + ".f32"), "wb") as f:
            f.write(values.tobytes())
        meta["tensors"].append(
            {
                "name": name,
                "ggml_type": int(t.tensor_type),
                "rows": rows,
                "cols": cols,
                "total_rows": int(t.shape[1]),
                "bytes_file": stem + ".bin",
                "f32_file": stem + ".f32",
            }
        )
    return meta


def main() -> None:
    with open(os.path.join(FIXTURES, "quant_blocks.json"), "w") as f:
        json.dump(synthetic(), f)
        f.write("\n")
    meta = smollm2()
    if meta is not None:
        with open(os.path.join(FIXTURES, "quant_smollm2.json"), "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
    print("wrote fixtures to", FIXTURES)


if __name__ == "__main__":
    main()
