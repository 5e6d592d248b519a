"""The Python examples in examples/python run against the installed wheel."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest


def load(examples_dir: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"mdsa_example_{name}", examples_dir / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_fastapi_app_answers_routes_streams_and_reports(examples_dir: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    app = load(examples_dir, "fastapi_app").app
    with TestClient(app) as client:
        answer = client.post("/query", json={"text": "I have a fever", "max_tokens": 12})
        assert answer.status_code == 200, answer.text
        assert answer.json()["domain"] == "medical" and answer.json()["text"]

        route = client.post("/route", json={"text": "What's my balance?"})
        assert route.json()["domain"] == "finance"

        bad = client.post("/query", json={"text": "  "})
        assert bad.status_code == 400 and "empty" in bad.json()["detail"]

        with client.stream("POST", "/stream", json={"text": "The app crashes", "max_tokens": 12}) as sse:
            body = "".join(sse.iter_text())
        assert "event: routed" in body and '"domain": "technical"' in body
        assert "event: done" in body and body.count("data: ") >= 3

        assert "mdsa_requests_total" in client.get("/metrics").text
        logs = client.get("/logs", params={"domain": "medical"}).json()
        assert [r["domain"] for r in logs] == ["medical"]


def test_the_streamlit_page_asks_and_shows_the_figures(examples_dir: Path) -> None:
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(examples_dir / "streamlit_app.py"), default_timeout=300)
    app.run()
    assert not app.exception, app.exception
    assert app.title[0].value.startswith("mdsa")
    app.text_input(key="question").input("I have a fever and a headache")
    app.slider(key="max_tokens").set_value(12)
    app.button[0].click()
    app.run()
    assert not app.exception, app.exception
    assert any("Domain: medical" in s.value for s in app.subheader), [s.value for s in app.subheader]
    requests = next(metric for metric in app.metric if metric.label == "Requests")
    assert int(requests.value) >= 1


def test_the_document_pipeline_reports_every_paragraph(examples_dir: Path, tmp_path: Path) -> None:
    documents = load(examples_dir, "documents")
    out = tmp_path / "report"
    rows = documents.main([str(documents.SAMPLE), "--out", str(out), "--max-tokens", "8"])
    assert rows, "no paragraphs found in the sample folder"
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report == rows
    assert (out / "report.csv").read_text(encoding="utf-8").count("\n") == len(rows) + 1
    domains = {row["domain"] for row in rows}
    assert {"finance", "medical"} <= domains, domains
    for row in rows:
        if row["domain"] != "none":
            assert row["answer"] and row["tokens_out"] > 0, row
