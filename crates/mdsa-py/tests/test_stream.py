"""MDSA.stream: events in order from a for loop; stopping early cancels."""

from __future__ import annotations

import pytest

import mdsa
from conftest import SHORT


def test_events_arrive_in_order_and_the_pieces_make_the_answer(m: mdsa.MDSA) -> None:
    stream = m.stream("My card was declined at the shop", max_tokens=SHORT)
    events = list(stream)
    kinds = [e.kind for e in events]
    assert kinds[0] == "routed"
    assert events[0].decision is not None and events[0].decision.domain == "finance"
    assert kinds[1] == "loading" and events[1].model == "smollm2"
    assert "loaded" in kinds
    assert kinds[-1] == "done"
    assert "text" in kinds
    assert kinds.index("loaded") < kinds.index("text")
    result = events[-1].result
    assert result is not None and stream.result is result
    # Pieces after the last attempt event are the answer that was kept.
    last_attempt = max(i for i, k in enumerate(kinds) if k == "attempt")
    pieces = "".join(e.text or "" for e in events[last_attempt:] if e.kind == "text")
    assert pieces == result.text == stream.text
    assert result.domain == "finance"


def test_an_abstention_streams_routed_then_done(m: mdsa.MDSA) -> None:
    kinds = [e.kind for e in m.stream("Give me a recipe for banana bread")]
    assert kinds == ["routed", "done"]


def test_leaving_the_loop_early_cancels_the_generation(m: mdsa.MDSA) -> None:
    stream = m.stream("Explain in detail how compound interest works", max_tokens=200)
    with stream:
        for event in stream:
            if event.kind == "text":
                break
    result = stream.result
    assert result is not None
    assert result.outcome == "cancelled"
    assert result.usage.completion_tokens < 200
    cancelled = m.logs(status="cancelled")
    assert any(r["id"] == result.request_id for r in cancelled)


def test_cancel_ends_the_stream_with_a_cancelled_result(m: mdsa.MDSA) -> None:
    stream = m.stream("Explain in detail how a mortgage works", max_tokens=200)
    for event in stream:
        if event.kind == "text":
            stream.cancel()
    assert stream.result is not None
    assert stream.result.outcome == "cancelled"


def test_errors_surface_from_the_iteration(m: mdsa.MDSA) -> None:
    with pytest.raises(mdsa.RoutingError):
        list(m.stream("hello", domain="astrology"))
    with pytest.raises(mdsa.RequestError):
        m.stream("hello", history=[("robot", "beep")])
