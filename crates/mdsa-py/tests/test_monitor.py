"""The request log, its export, the metrics and the models."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import mdsa
from conftest import SHORT


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> tuple[mdsa.MDSA, Path]:
    """A fresh MDSA with a log file and three requests: two answered, one abstained."""
    log = tmp_path_factory.mktemp("log") / "requests.jsonl"
    m = mdsa.MDSA(log_file=log)
    m.query("I have a fever", max_tokens=SHORT)
    m.query("What's my balance?", max_tokens=SHORT)
    m.query("Give me a recipe for banana bread")
    return m, log


def test_logs_filter_by_domain_status_time_and_duration(logged: tuple[mdsa.MDSA, Path]) -> None:
    m, _ = logged
    records = m.logs()
    # Most recent first, as `mdsa serve`'s /v1/logs lists them.
    assert [r["domain"] for r in records] == ["none", "finance", "medical"]
    assert records[0]["status"] == "abstained"
    assert all(r["status"] in ("completed", "rejected") for r in records[1:])
    assert [r["domain"] for r in m.logs(domain="finance")] == ["finance"]
    assert [r["domain"] for r in m.logs(domain="none")] == ["none"]
    assert [r["status"] for r in m.logs(status="abstained")] == ["abstained"]
    assert [r["domain"] for r in m.logs(limit=2)] == ["none", "finance"]
    assert len(m.logs(since=datetime.now(timezone.utc) - timedelta(minutes=10))) == 3
    assert m.logs(since=datetime.now(timezone.utc) + timedelta(minutes=10)) == []
    assert m.logs(until="2000-01-01T00:00:00Z") == []
    slowest = max(r["latency"]["total_us"] for r in records)
    assert [r["latency"]["total_us"] for r in m.logs(min_ms=slowest / 1000)] == [slowest]
    assert [r["status"] for r in m.logs(text="banana")] == ["abstained"]
    # Medical and finance queries are logged as a hash only: no text to match.
    assert m.logs(text="fever") == []
    assert records[2]["query"] is None and records[2]["query_hash"]


def test_bad_filters_are_request_errors(logged: tuple[mdsa.MDSA, Path]) -> None:
    m, _ = logged
    with pytest.raises(mdsa.RequestError, match="completed, failed, abstained"):
        m.logs(status="great")
    with pytest.raises(mdsa.RequestError, match="since"):
        m.logs(since="yesterday")
    with pytest.raises(mdsa.RequestError, match="min_ms"):
        m.logs(min_ms=-5)
    with pytest.raises(mdsa.RequestError, match="json, jsonl, csv"):
        m.export_logs(format="xml")


def test_export_to_json_and_csv(logged: tuple[mdsa.MDSA, Path], tmp_path: Path) -> None:
    m, log = logged
    exported = json.loads(m.export_logs(format="json"))
    assert [r["id"] for r in exported] == [r["id"] for r in m.logs()]
    path = tmp_path / "medical.csv"
    text = m.export_logs(path, format="csv", domain="medical")
    assert path.read_text(encoding="utf-8") == text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1 and rows[0]["domain"] == "medical"
    # The log file given at construction has every request, one JSON per line.
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in lines] == [r["id"] for r in reversed(m.logs())]


def test_metrics_have_percentiles_throughput_per_domain_and_model(
    logged: tuple[mdsa.MDSA, Path],
) -> None:
    m, _ = logged
    metrics = m.metrics()
    assert metrics.requests == 3
    assert 0 < metrics.p50_ms <= metrics.p95_ms <= metrics.p99_ms
    assert metrics.throughput_rps > 0
    assert set(metrics.per_domain) >= {"medical", "finance"}
    assert metrics.per_domain["medical"].requests == 1
    assert metrics.per_domain["medical"].tokens_out > 0
    assert metrics.per_model["smollm2"].requests == 2
    assert metrics.total.status["abstained"] == 1
    assert json.loads(json.dumps(metrics.to_dict()))["total"]["requests"] == 3
    text = m.prometheus()
    assert "mdsa_requests_total" in text
    assert 'domain="medical"' in text


def test_models_load_and_unload(logged: tuple[mdsa.MDSA, Path]) -> None:
    m, _ = logged
    models = {model["id"]: model for model in m.models()}
    assert models["minilm"]["role"] == "encoder" and models["minilm"]["resident"]
    assert models["minilm"]["pinned"] and models["minilm"]["bytes"] > 0
    assert models["smollm2"]["role"] == "generator"
    assert m.unload("smollm2") is True, "the generator answered two queries: it was resident"
    assert not {x["id"]: x for x in m.models()}["smollm2"]["resident"]
    assert m.unload("smollm2") is False
    m.load("smollm2")
    generator = {x["id"]: x for x in m.models()}["smollm2"]
    assert generator["resident"] and generator["device"] == "cpu" and generator["bytes"] > 0
    with pytest.raises(mdsa.ModelError, match="no-such-model"):
        m.load("no-such-model")
