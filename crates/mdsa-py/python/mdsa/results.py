"""What mdsa returns: route decisions, answers, stream events and metrics.

Each object keeps the JSON it was made from; ``to_dict()`` returns it, in the
shape ``mdsa query --json`` prints and ``mdsa serve`` sends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = [
    "DomainScore",
    "Decision",
    "Verdict",
    "Usage",
    "Timings",
    "Result",
    "Event",
    "LatencySummary",
    "GroupMetrics",
    "Metrics",
]


@dataclass(frozen=True)
class DomainScore:
    """One domain's score for a query."""

    domain: str
    score: float
    """The combined score the router ranks by."""
    similarity: float
    """Cosine similarity to the domain's nearest examples."""
    keyword_hits: list[str]
    """The domain's keywords found in the query."""


@dataclass(frozen=True)
class Decision:
    """The router's decision: a domain or an abstention, with every score."""

    query: str
    domain: Optional[str]
    """The chosen domain, ``None`` when the router abstained."""
    confidence: float
    abstained: bool
    fallback: bool
    """Whether the configured fallback domain was used instead of abstaining."""
    scores: list[DomainScore]
    """Every domain's score, best first."""
    reason: str
    """One sentence on why: the nearest example, keywords, thresholds."""
    latency_ms: float
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        explanation = data.get("explanation") or {}
        return cls(
            query=data["query"],
            domain=data.get("domain"),
            confidence=data["confidence"],
            abstained=data["abstained"],
            fallback=data.get("fallback", False),
            scores=[
                DomainScore(s["domain"], s["score"], s["similarity"], list(s["keyword_hits"]))
                for s in data["scores"]
            ],
            reason=explanation.get("reason", ""),
            latency_ms=data.get("latency_ms", 0.0),
            raw=data,
        )

    @property
    def nearest(self) -> list[dict[str, Any]]:
        """The examples nearest to the query (domain, example, similarity)."""
        return list((self.raw.get("explanation") or {}).get("nearest", []))

    def score_of(self, domain: str) -> float:
        """One domain's score (``KeyError`` for an unknown domain)."""
        for score in self.scores:
            if score.domain == domain:
                return score.score
        raise KeyError(domain)

    def to_dict(self) -> dict[str, Any]:
        return self.raw


@dataclass(frozen=True)
class Verdict:
    """Whether the answer passed the domain's validation, and what failed."""

    passed: bool
    failures: list[dict[str, Any]]


@dataclass(frozen=True)
class Usage:
    """Tokens of the prompt and of the answer that was kept."""

    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Timings:
    """Where the request's time went, in milliseconds."""

    route_ms: float
    load_ms: float
    generate_ms: float
    model_ms: float
    """The models' own compute within routing and generation."""
    first_token_ms: Optional[float]
    total_ms: float


@dataclass(frozen=True)
class Result:
    """The answer to one query, with everything that led to it.

    ``str(result)`` is the answer's text.
    """

    request_id: str
    outcome: str
    """``answered``, ``abstained``, ``invalid_answer`` or ``cancelled``."""
    text: str
    domain: Optional[str]
    confidence: float
    decision: Decision
    model: Optional[str]
    device: Optional[str]
    verdict: Optional[Verdict]
    attempts: int
    finish_reason: Optional[str]
    usage: Usage
    timings: Timings
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        verdict = data.get("verdict")
        usage = data.get("usage") or {}
        return cls(
            request_id=data["request_id"],
            outcome=data["outcome"],
            text=data["text"],
            domain=data.get("domain"),
            confidence=data["confidence"],
            decision=Decision.from_dict(data["route"]),
            model=data.get("model"),
            device=data.get("device"),
            verdict=Verdict(verdict["passed"], list(verdict["failures"])) if verdict else None,
            attempts=data.get("attempts", 0),
            finish_reason=data.get("finish_reason"),
            usage=Usage(
                usage.get("prompt_tokens", 0),
                usage.get("completion_tokens", 0),
                usage.get("cached_prompt_tokens", 0),
            ),
            timings=Timings(**data["timings"]),
            raw=data,
        )

    @property
    def answered(self) -> bool:
        """Whether a model answered and the answer passed validation."""
        return self.outcome == "answered"

    def to_dict(self) -> dict[str, Any]:
        """The whole response as plain data (JSON-serialisable)."""
        return self.raw

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Event:
    """One step of a streamed query.

    ``kind`` is ``routed`` (with ``decision``), ``loading`` (``model``,
    ``cold``), ``downloading`` (``model``, ``file``, ``downloaded``,
    ``total``, ``done``), ``loaded`` (``model``, ``load_ms``), ``attempt``
    (``number``: text of earlier attempts was rejected), ``text`` (a piece
    of the answer in ``text``) or ``done`` (the whole ``result``).
    """

    kind: str
    text: Optional[str] = None
    decision: Optional[Decision] = None
    model: Optional[str] = None
    number: Optional[int] = None
    result: Optional[Result] = None
    data: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        kind = data["event"]
        return cls(
            kind=kind,
            text=data.get("text"),
            decision=Decision.from_dict(data["decision"]) if kind == "routed" else None,
            model=data.get("model"),
            number=data.get("number"),
            result=Result.from_dict(data["result"]) if kind == "done" else None,
            data=data,
        )


@dataclass(frozen=True)
class LatencySummary:
    """Latency percentiles over the recorded requests, in milliseconds."""

    count: int
    avg_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True)
class GroupMetrics:
    """Counts, tokens and latencies of a group of requests (all, a domain, a model)."""

    requests: int
    status: dict[str, int]
    """Requests by status: completed, failed, abstained, cancelled, rejected."""
    error_rate: float
    tokens_in: int
    tokens_out: int
    latency: LatencySummary
    time_to_first_token: LatencySummary

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupMetrics:
        return cls(
            requests=data["requests"],
            status=dict(data["status"]),
            error_rate=data["error_rate"],
            tokens_in=data["tokens_in"],
            tokens_out=data["tokens_out"],
            latency=LatencySummary(**data["latency"]),
            time_to_first_token=LatencySummary(**data["time_to_first_token"]),
        )


@dataclass(frozen=True)
class Metrics:
    """A snapshot of mdsa's metrics: ``p50_ms``/``p95_ms``/``p99_ms`` and
    ``throughput_rps`` over all requests, and the same per domain and model."""

    uptime_secs: float
    throughput_rps: float
    """Requests per second over the last ``window_secs``."""
    window_secs: int
    total: GroupMetrics
    per_domain: dict[str, GroupMetrics]
    per_model: dict[str, GroupMetrics]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Metrics:
        return cls(
            uptime_secs=data["uptime_secs"],
            throughput_rps=data["throughput_rps"],
            window_secs=data["window_secs"],
            total=GroupMetrics.from_dict(data["total"]),
            per_domain={k: GroupMetrics.from_dict(v) for k, v in data["per_domain"].items()},
            per_model={k: GroupMetrics.from_dict(v) for k, v in data["per_model"].items()},
            raw=data,
        )

    @property
    def requests(self) -> int:
        return self.total.requests

    @property
    def p50_ms(self) -> float:
        return self.total.latency.p50_ms

    @property
    def p95_ms(self) -> float:
        return self.total.latency.p95_ms

    @property
    def p99_ms(self) -> float:
        return self.total.latency.p99_ms

    def to_dict(self) -> dict[str, Any]:
        return self.raw
