"""MDSA.query: routed, generated, validated, logged answers; and its errors."""

from __future__ import annotations

import json

import pytest

import mdsa
from conftest import SHORT


def test_the_issue_example_routes_a_fever_to_medical(m: mdsa.MDSA) -> None:
    result = m.query("I have a fever", max_tokens=SHORT)
    assert result.domain == "medical"
    assert result.outcome in ("answered", "invalid_answer")
    assert result.text.strip(), "the model wrote nothing"
    assert str(result) == result.text


def test_a_result_carries_the_decision_model_usage_and_timings(m: mdsa.MDSA) -> None:
    result = m.query("What's my balance?", max_tokens=SHORT)
    assert result.domain == "finance"
    assert result.decision.domain == "finance"
    assert result.decision.scores[0].domain == "finance"
    assert result.confidence == pytest.approx(result.decision.confidence)
    assert {s.domain for s in result.decision.scores} == {"finance", "medical", "support", "technical"}
    assert result.decision.reason
    assert result.model == "smollm2"
    assert result.device
    assert result.verdict is not None
    assert 0 < result.usage.completion_tokens <= SHORT
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens
    assert result.timings.total_ms >= result.timings.generate_ms > 0
    assert result.attempts >= 1
    # to_dict is plain data in the shape `mdsa query --json` prints.
    data = json.loads(json.dumps(result.to_dict()))
    assert data["domain"] == "finance"
    assert data["route"]["scores"][0]["domain"] == "finance"
    assert data["request_id"] == result.request_id


def test_an_out_of_domain_query_abstains_without_a_model(m: mdsa.MDSA) -> None:
    result = m.query("Give me a recipe for banana bread")
    assert result.outcome == "abstained"
    assert result.domain is None
    assert result.text == ""
    assert result.model is None
    assert result.decision.abstained


def test_a_forced_domain_is_answered_there(m: mdsa.MDSA) -> None:
    result = m.query("I have a fever", domain="finance", max_tokens=SHORT)
    assert result.domain == "finance"


def test_the_same_seed_gives_the_same_answer(m: mdsa.MDSA) -> None:
    first = m.query("How do I reset my password?", max_tokens=SHORT, temperature=0.9, seed=7)
    second = m.query("How do I reset my password?", max_tokens=SHORT, temperature=0.9, seed=7)
    assert first.text == second.text
    assert first.request_id != second.request_id


def test_history_and_stop_are_accepted(m: mdsa.MDSA) -> None:
    # Routing reads the new turn only, which says nothing of a domain here.
    result = m.query(
        "And what should I do about it?",
        domain="medical",
        history=[
            {"role": "user", "content": "I have had a headache for three days."},
            ("assistant", "I am sorry to hear that. Have you taken anything for it?"),
        ],
        stop=["\n\n"],
        max_tokens=SHORT,
    )
    assert result.domain == "medical"
    alone = m.query("And what should I do about it?", domain="medical", max_tokens=1)
    assert result.usage.prompt_tokens > alone.usage.prompt_tokens + 20


def test_an_unknown_domain_is_a_routing_error(m: mdsa.MDSA) -> None:
    with pytest.raises(mdsa.RoutingError, match="astrology"):
        m.query("Will I be rich?", domain="astrology")


def test_an_empty_query_is_a_request_error(m: mdsa.MDSA) -> None:
    with pytest.raises(mdsa.RequestError, match="empty") as caught:
        m.query("   ")
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, mdsa.MdsaError)


def test_bad_arguments_are_request_errors_naming_the_part(m: mdsa.MDSA) -> None:
    with pytest.raises(mdsa.RequestError, match=r"history\[0\]"):
        m.query("hello", history=[{"role": "robot", "content": "beep"}])
    with pytest.raises(mdsa.RequestError, match="expected a string"):
        m.query(42)  # type: ignore[arg-type]
    with pytest.raises(mdsa.RequestError, match="max_tokens: expected an integer of at least 1"):
        m.query("hello", max_tokens=-1)
    with pytest.raises(mdsa.RequestError, match="temperature: expected a number, found str"):
        m.query("hello", temperature="hot")  # type: ignore[arg-type]
    with pytest.raises(mdsa.RequestError, match="top_p: expected a number from 0 to 1"):
        m.query("hello", top_p=1.5)


def test_an_unknown_model_is_a_model_error(m: mdsa.MDSA) -> None:
    with pytest.raises(mdsa.ModelError, match="no-such-model"):
        m.query("I have a fever", model="no-such-model")
