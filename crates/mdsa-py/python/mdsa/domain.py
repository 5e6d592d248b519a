"""Domains: what the router chooses between, each answered by its own model."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from . import _native
from .errors import ConfigError

__all__ = ["Domain", "builtin_domains"]


@dataclass
class Domain:
    """One domain: how the router recognises it and how its model answers.

    Only ``id`` and ``name`` are required. Fields left at ``None`` take mdsa's
    defaults (the built-in prompt template, generation settings, validation
    rules, a 60-second timeout, one retry, the router's ``min_score``).

    >>> billing = Domain("billing", "Billing",
    ...     description="Invoices, payments and refunds",
    ...     keywords=["invoice", "refund"],
    ...     examples=["Where is my invoice?", "I was charged twice"])
    """

    id: str
    """Short unique id, used in logs, metrics and ``query(domain=...)``."""
    name: str
    """Human-readable name."""
    description: str = ""
    """What the domain covers; embedded with the examples for routing."""
    keywords: list[str] = field(default_factory=list)
    """Words that, present in a query, add to this domain's score."""
    examples: list[str] = field(default_factory=list)
    """Example queries: the router compares a query with these."""
    model: str | None = None
    """The id of the model that answers (default: the configuration's generator)."""
    system_prompt: str = ""
    """The system prompt the model answers under."""
    prompt_template: str | None = None
    """A minijinja template used when the model has no chat template of its own."""
    generation: dict[str, Any] | None = None
    """Generation settings: ``max_tokens``, ``temperature``, ``top_p``, ``top_k``,
    ``repetition_penalty``, ``stop``, ``seed``."""
    validation: dict[str, Any] | None = None
    """Answer checks: ``min_length``, ``max_length``, ``banned_patterns``, ..."""
    timeout_secs: float | None = None
    """The longest one generation may take."""
    retry: dict[str, Any] | None = None
    """How often to retry an answer that fails validation (``retries``, ...)."""
    min_score: float | None = None
    """This domain's own abstention threshold, over the router's."""

    def __post_init__(self) -> None:
        for name in ("id", "name", "description", "system_prompt"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ConfigError(
                    f"domain {self.id!r}: {name}: expected a string, found {type(value).__name__}"
                )
        for name in ("keywords", "examples"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ConfigError(
                    f"domain {self.id!r}: {name}: expected a list of strings, found {value!r}"
                )
            setattr(self, name, list(value))

    def to_dict(self) -> dict[str, Any]:
        """The domain as mdsa's configuration writes it (unset fields left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Domain:
        """A domain from a dict with the configuration's field names."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"domain {data.get('id')!r}: unknown field {unknown[0]!r}; expected one of {sorted(known)}"
            )
        return cls(**data)

    @classmethod
    def builtin(cls, id: str) -> Domain:
        """One of the four built-in domains: ``finance``, ``medical``,
        ``support`` or ``technical``."""
        for domain in builtin_domains():
            if domain.id == id:
                return domain
        ids = ", ".join(d.id for d in builtin_domains())
        raise ConfigError(f"no built-in domain {id!r}; the built-in domains are {ids}")


def builtin_domains() -> list[Domain]:
    """The four built-in domains, as ``MDSA()`` uses them by default."""
    return [Domain.from_dict(d) for d in json.loads(_native.builtin_domains())]
