"""MDSA.route, route_batch and embed."""

from __future__ import annotations

import math
import sys

import pytest

import mdsa

QUERIES = [
    "I have a fever and a sore throat",
    "How do I transfer money to my friend?",
    "The app crashes when I open it",
    "I want a refund for my order",
]


def test_route_decides_without_answering(m: mdsa.MDSA) -> None:
    before = len(m.logs())
    decision = m.route("I have a fever and a sore throat")
    assert decision.domain == "medical"
    assert not decision.abstained
    assert decision.score_of("medical") == decision.scores[0].score
    assert decision.nearest, "no nearest examples in the explanation"
    assert decision.to_dict()["domain"] == "medical"
    with pytest.raises(KeyError):
        decision.score_of("astrology")
    assert len(m.logs()) == before, "routing alone should not log a request"


def test_route_batch_agrees_with_route(m: mdsa.MDSA) -> None:
    batch = m.route_batch(QUERIES)
    assert [d.domain for d in batch] == ["medical", "finance", "technical", "support"]
    for query, decision in zip(QUERIES, batch):
        one = m.route(query)
        assert one.domain == decision.domain
        assert one.confidence == pytest.approx(decision.confidence, abs=1e-4)


def test_route_errors(m: mdsa.MDSA) -> None:
    with pytest.raises(mdsa.RequestError, match="empty"):
        m.route("")
    with pytest.raises(mdsa.RequestError, match="texts"):
        m.route_batch("not a list")  # type: ignore[arg-type]
    with pytest.raises(mdsa.RequestError, match=r"texts\[1\]"):
        m.route_batch(["fine", 3])  # type: ignore[list-item]


def test_embed_gives_a_numpy_matrix_of_unit_vectors(m: mdsa.MDSA) -> None:
    numpy = pytest.importorskip("numpy")
    vectors = m.embed(QUERIES)
    assert isinstance(vectors, numpy.ndarray)
    assert vectors.dtype == numpy.float32
    assert vectors.shape == (4, 384)
    assert numpy.allclose(numpy.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    single = m.embed(QUERIES[0])
    assert single.shape == (384,)
    assert numpy.allclose(single, vectors[0], atol=1e-5)
    # Related texts are closer than unrelated ones.
    fever = m.embed("I have a high temperature and feel ill")
    assert float(fever @ vectors[0]) > float(fever @ vectors[1])


def test_embed_without_numpy_gives_lists(m: mdsa.MDSA, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)  # makes `import numpy` fail
    vectors = m.embed(QUERIES[:2])
    assert isinstance(vectors, list) and len(vectors) == 2
    assert all(isinstance(x, float) for x in vectors[0]) and len(vectors[0]) == 384
    assert math.isclose(math.fsum(x * x for x in vectors[0]), 1.0, abs_tol=1e-3)
    assert len(m.embed("one text")) == 384
    assert m.embed([]) == []
