#!/usr/bin/env python3
"""Routing from Python: mdsa's wheel against sentence-transformers, same run.

The original Python MDSA routes with sentence-transformers (MiniLM on
PyTorch): embed the query, compare it with the domains' embedded examples,
take the best. This times that against ``mdsa.MDSA().route`` on the same
machine in the same process, one query at a time, over every query of
data/routing/eval.jsonl, after a warm-up, and reports both routers' accuracy
there (a nearest-example router never abstains, so it is wrong on every
out-of-domain query). It also reports what the binding
itself costs: Python wall time per ``route`` call minus the routing time the
engine measured inside (``decision.latency_ms``).

    pip install target/wheels/mdsa-*.whl sentence-transformers
    HF_HUB_OFFLINE=1 python crates/mdsa-py/bench/route.py [--rounds 3]

Without sentence-transformers, only mdsa's figures print.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import mdsa

EVAL = Path(__file__).resolve().parents[3] / "data" / "routing" / "eval.jsonl"


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": round(at(0.50), 3), "p95_ms": round(at(0.95), 3),
            "mean_ms": round(statistics.fmean(ordered), 3)}


def accuracy(chosen: list[str | None], expected: list[str | None]) -> dict[str, float]:
    """Share right overall (abstaining on out-of-domain queries counts as
    right) and on the in-domain queries alone."""
    inside = [(c, e) for c, e in zip(chosen, expected) if e is not None]
    return {
        "all": round(sum(c == e for c, e in zip(chosen, expected)) / len(expected), 3),
        "in_domain": round(sum(c == e for c, e in inside) / len(inside), 3),
    }


def time_each(queries: list[str], route, rounds: int) -> list[float]:
    for query in queries[:20]:
        route(query)
    samples = []
    for _ in range(rounds):
        for query in queries:
            started = time.perf_counter()
            route(query)
            samples.append((time.perf_counter() - started) * 1e3)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = [json.loads(line) for line in EVAL.read_text(encoding="utf-8").splitlines() if line.strip()]
    queries = [row["text"] for row in rows]
    expected = [row["domain"] for row in rows]

    m = mdsa.MDSA()
    inside: list[float] = []

    def route_mdsa(query: str) -> str | None:
        decision = m.route(query)
        inside.append(decision.latency_ms)
        return decision.domain

    wall = time_each(queries, route_mdsa, args.rounds)
    inside = inside[-len(wall):]
    chosen = [m.route(q).domain for q in queries]
    report = {
        "queries": len(queries) * args.rounds,
        "mdsa_accuracy": accuracy(chosen, expected),
        "mdsa_route": percentiles(wall),
        "mdsa_binding_overhead_ms": round(statistics.median(w - i for w, i in zip(wall, inside)), 3),
    }

    try:
        import numpy
        from sentence_transformers import SentenceTransformer
    except ImportError:
        print(json.dumps(report, indent=2))
        return
    import torch

    torch.set_num_threads(2)
    model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2", device="cpu")
    domains = mdsa.builtin_domains()
    labels = [d.id for d in domains for _ in d.examples]
    examples = model.encode([e for d in domains for e in d.examples], normalize_embeddings=True)

    def route_st(query: str) -> str:
        vector = model.encode([query], normalize_embeddings=True)[0]
        return labels[int(numpy.argmax(examples @ vector))]

    reference = time_each(queries, route_st, args.rounds)
    report["sentence_transformers_route"] = percentiles(reference)
    report["sentence_transformers_accuracy"] = accuracy([route_st(q) for q in queries], expected)
    report["speedup_p50"] = round(
        report["sentence_transformers_route"]["p50_ms"] / report["mdsa_route"]["p50_ms"], 2
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
