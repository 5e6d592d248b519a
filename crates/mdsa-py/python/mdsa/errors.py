"""The exceptions mdsa raises.

Every error is an :class:`MdsaError`; the subclasses say which part went
wrong. The messages are the ones the ``mdsa`` command line prints: they name
the file, field, model or request part, what was expected and what was found.
"""

from __future__ import annotations

__all__ = [
    "MdsaError",
    "ConfigError",
    "RoutingError",
    "ModelError",
    "RequestError",
    "LogError",
]


class MdsaError(Exception):
    """Base class of every mdsa error."""


class ConfigError(MdsaError, ValueError):
    """A configuration or domains file, or a domain given in code, is wrong."""


class RoutingError(MdsaError):
    """Routing failed: an unknown domain was asked for, or the encoder failed."""


class ModelError(MdsaError):
    """A model could not be found, loaded, kept in memory or run (or timed out)."""


class RequestError(MdsaError, ValueError):
    """An argument of the call is unusable (an empty query, a bad option)."""


class LogError(MdsaError, OSError):
    """The request log could not be written or exported."""
