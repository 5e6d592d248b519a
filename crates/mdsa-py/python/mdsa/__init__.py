"""mdsa: answer every query with the right specialist, in-process.

>>> import mdsa
>>> m = mdsa.MDSA()
>>> m.query("I have a fever").domain
'medical'

A small encoder routes each query to a domain (finance, medical, support,
technical, or one you define); that domain's small language model, loaded
on demand under a memory budget, writes the answer; every request is logged
and measured. The engine is mdsa's Rust one: calls release the GIL, so
threads and ``asyncio.to_thread`` run queries concurrently.
"""

from __future__ import annotations

from ._native import __version__
from .client import MDSA, Stream
from .domain import Domain, builtin_domains
from .errors import ConfigError, LogError, MdsaError, ModelError, RequestError, RoutingError
from .results import (
    Decision,
    DomainScore,
    Event,
    GroupMetrics,
    LatencySummary,
    Metrics,
    Result,
    Timings,
    Usage,
    Verdict,
)

__all__ = [
    "__version__",
    "MDSA",
    "Stream",
    "Domain",
    "builtin_domains",
    "Result",
    "Decision",
    "DomainScore",
    "Verdict",
    "Usage",
    "Timings",
    "Event",
    "Metrics",
    "GroupMetrics",
    "LatencySummary",
    "MdsaError",
    "ConfigError",
    "RoutingError",
    "ModelError",
    "RequestError",
    "LogError",
]
