"""A document analysis pipeline: a folder of notes in, a report out.

The Python twin of ``cargo run -p mdsa --example documents``: every paragraph
of every ``.txt`` and ``.md`` file is routed in one batch
(``MDSA.route_batch``), the paragraph's domain model answers a question chosen
by that domain (``query(domain=...)`` keeps the router's choice), and a JSON
and a CSV report get one row per paragraph, with a summary read back from
mdsa's own log and metrics.

    python examples/python/documents.py                      # the sample folder
    python examples/python/documents.py notes/ --out report --max-tokens 32
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import mdsa

SAMPLE = Path(__file__).resolve().parents[2] / "crates" / "mdsa" / "examples" / "documents-sample"

# Paragraphs shorter than this (headings, signatures) are not analysed.
MIN_CHUNK_CHARS = 40

QUESTIONS = {
    "finance": "What amounts, rates or dates are mentioned, and what do they mean?",
    "medical": "What symptoms, conditions or treatments are mentioned?",
    "support": "What does the customer want, and what should support do next?",
    "technical": "What is the technical problem and its most likely cause?",
}


def read_chunks(folder: Path) -> list[tuple[str, int, str]]:
    """(file, paragraph number, text) for the folder's text files, in name order."""
    chunks = []
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".txt", ".md"):
            continue
        paragraphs = path.read_text(encoding="utf-8").split("\n\n")
        texts = [" ".join(p.split()) for p in paragraphs]
        texts = [t for t in texts if len(t) >= MIN_CHUNK_CHARS]
        chunks += [(path.name, i, text) for i, text in enumerate(texts, start=1)]
    return chunks


def analyse(m: mdsa.MDSA, folder: Path, max_tokens: int) -> list[dict[str, Any]]:
    """One report row per paragraph: its domain and the domain model's answer."""
    chunks = read_chunks(folder)
    decisions = m.route_batch([text for _, _, text in chunks])
    rows = []
    for (file, index, text), decision in zip(chunks, decisions):
        row: dict[str, Any] = {
            "file": file,
            "chunk": index,
            "domain": decision.domain or "none",
            "confidence": round(decision.confidence, 3),
            "question": "",
            "answer": "",
            "outcome": "abstained",
            "tokens_out": 0,
            "total_ms": 0.0,
        }
        if decision.domain is not None:
            question = QUESTIONS.get(decision.domain, "Summarise this text in one sentence.")
            result = m.query(
                f"{question}\n\nText:\n{text}", domain=decision.domain, max_tokens=max_tokens
            )
            row.update(
                question=question,
                answer=result.text.strip(),
                outcome=result.outcome,
                tokens_out=result.usage.completion_tokens,
                total_ms=round(result.timings.total_ms, 1),
            )
        print(f"{file}#{index}: {row['domain']} ({row['confidence']:.2f}) {row['outcome']}")
        rows.append(row)
    return rows


def write_reports(out: Path, rows: list[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    with open(out / "report.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["file"])
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=SAMPLE)
    parser.add_argument("--out", type=Path, default=Path("documents-report"))
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args(argv)

    m = mdsa.MDSA()
    rows = analyse(m, args.folder, args.max_tokens)
    write_reports(args.out, rows)
    metrics = m.metrics()
    print(f"\n{len(rows)} paragraphs; reports in {args.out}/")
    for domain, group in sorted(metrics.per_domain.items()):
        print(
            f"  {domain:<10} {group.requests} requests, p50 {group.latency.p50_ms:.0f} ms, "
            f"{group.tokens_out} tokens out"
        )
    return rows


if __name__ == "__main__":
    main()
