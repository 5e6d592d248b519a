#!/usr/bin/env python3
"""Does a margin rule help the router abstain? (issue 21)

A margin rule abstains when the best domain's score beats the second best by
less than ``min_margin``, on top of the router's ``min_score``. This fits both
thresholds on data/routing/calibration.jsonl (a grid, best accuracy), applies
them to data/routing/heldout.jsonl, and compares with ``min_score`` alone
fitted the same way. It also reports the best either rule could do if fitted
on the held-out set itself, as an upper bound.

    HF_HUB_OFFLINE=1 python crates/mdsa-py/bench/margin_rule.py
"""

from __future__ import annotations

import json
from pathlib import Path

import mdsa

DATA = Path(__file__).resolve().parents[3] / "data" / "routing"
SCORES = [s / 1000 for s in range(100, 500, 4)]
MARGINS = [m / 1000 for m in range(0, 300, 4)]


def features(m: mdsa.MDSA, name: str) -> list[tuple[str, float, float, str | None]]:
    """(best domain, its score, its margin over the second, the label) per query."""
    rows = [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    decisions = m.route_batch([row["text"] for row in rows])
    out = []
    for decision, row in zip(decisions, rows):
        best, second = sorted(decision.scores, key=lambda s: -s.score)[:2]
        out.append((best.domain, best.score, best.score - second.score, row["domain"]))
    return out


def evaluate(rows, min_score: float, min_margin: float) -> tuple[float, float]:
    """Accuracy (abstaining on out-of-domain counts as right) and abstention recall."""
    right = caught = outside = 0
    for domain, score, margin, label in rows:
        chosen = domain if score >= min_score and margin >= min_margin else None
        right += chosen == label
        if label is None:
            outside += 1
            caught += chosen is None
    return right / len(rows), caught / max(outside, 1)


def best(rows, margins: list[float]) -> tuple[float, float]:
    return max(((s, mm) for s in SCORES for mm in margins), key=lambda t: evaluate(rows, *t)[0])


def main() -> None:
    m = mdsa.MDSA()
    calibration = features(m, "calibration.jsonl")
    heldout = features(m, "heldout.jsonl")
    report = {}
    for rule, margins in (("min_score", [0.0]), ("min_score + min_margin", MARGINS)):
        fitted = best(calibration, margins)
        oracle = best(heldout, margins)
        report[rule] = {
            "fitted_on_calibration": {"min_score": fitted[0], "min_margin": fitted[1]},
            "heldout_accuracy_abstention_recall": [round(x, 3) for x in evaluate(heldout, *fitted)],
            "best_possible_on_heldout": [round(x, 3) for x in evaluate(heldout, *oracle)],
            "best_possible_thresholds": {"min_score": oracle[0], "min_margin": oracle[1]},
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
