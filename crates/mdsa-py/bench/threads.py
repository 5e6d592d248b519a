#!/usr/bin/env python3
"""Python threads on one MDSA: the GIL is released and the engine batches.

Runs the same fixed-length queries from 1 thread, then from N threads at once,
and reports completed tokens per second for each and their ratio. With the GIL
held, N threads could not beat one; with mdsa's continuous batching, requests
on the same model share each decoding step.

    HF_HUB_OFFLINE=1 python crates/mdsa-py/bench/threads.py [--threads 8] [--per-thread 4]
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import mdsa

QUERIES = [
    "How do I set up a monthly budget?",
    "I have a sore throat and a mild fever.",
    "I was charged twice for my order.",
    "My laptop will not connect to the VPN.",
]


def run(m: mdsa.MDSA, threads: int, per_thread: int, max_tokens: int) -> dict[str, float]:
    tokens = [0] * threads

    def worker(n: int) -> None:
        for i in range(per_thread):
            result = m.query(QUERIES[(n + i) % len(QUERIES)], domain="finance", max_tokens=max_tokens, seed=n)
            tokens[n] += result.usage.completion_tokens

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    seconds = time.perf_counter() - started
    return {"threads": threads, "requests": threads * per_thread, "tokens": sum(tokens),
            "seconds": round(seconds, 2), "tokens_per_s": round(sum(tokens) / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--per-thread", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    m = mdsa.MDSA()
    m.query(QUERIES[0], domain="finance", max_tokens=4)  # load the generator first
    one = run(m, 1, args.per_thread * 2, args.max_tokens)
    many = run(m, args.threads, args.per_thread, args.max_tokens)
    print(json.dumps({"one_thread": one, "threads": many,
                      "ratio": round(many["tokens_per_s"] / one["tokens_per_s"], 2)}, indent=2))


if __name__ == "__main__":
    main()
