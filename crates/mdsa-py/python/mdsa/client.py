"""``MDSA``: the engine in-process. Route, answer, stream, watch."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import datetime, timezone
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
    Union,
)

from . import _native
from .domain import Domain
from .errors import RequestError
from .results import Decision, Event, Metrics, Result

if TYPE_CHECKING:
    from typing import TypedDict

    import numpy
    from typing_extensions import Unpack

    class QueryOptions(TypedDict, total=False):
        """The keyword arguments of :meth:`MDSA.query` and :meth:`MDSA.stream`."""

        domain: str | None
        model: str | None
        max_tokens: int | None
        temperature: float | None
        top_p: float | None
        stop: Sequence[str] | None
        seed: int | None
        history: Sequence[Message] | None

__all__ = ["MDSA", "Stream"]

PathLike = Union[str, "os.PathLike[str]"]
Message = Union[Mapping[str, str], Sequence[str]]
"""A conversation turn: ``{"role": ..., "content": ...}`` or ``(role, content)``."""


class MDSA:
    """Answers every query with the right specialist.

    A small encoder routes each query to a domain; that domain's small
    language model, loaded on demand under a memory budget, writes the
    answer; every request is logged and measured.

    ``config`` is a system configuration file (RON: models, budget, logging;
    default: mdsa's built-in configuration). ``domains`` is a domains file
    (RON), or a list of :class:`Domain` (``Domain.builtin("finance")`` for
    a built-in one); by default the configuration's domains, or the four
    built-in ones. ``offline`` never downloads; ``log_file`` appends every
    request to a JSON-lines file besides the in-memory log.

    Building loads the router's encoder (downloading it when missing) and
    embeds the domains' examples; domain models load on first use. An
    ``MDSA`` is safe to share between threads: calls release the GIL.
    """

    def __init__(
        self,
        config: PathLike | None = None,
        domains: PathLike | Iterable[Domain] | None = None,
        *,
        offline: bool = False,
        log_file: PathLike | None = None,
    ) -> None:
        domains_file = None
        domains_json = None
        if isinstance(domains, (str, os.PathLike)):
            domains_file = os.fspath(domains)
        elif domains is not None:
            listed = list(domains)
            for i, domain in enumerate(listed):
                if not isinstance(domain, Domain):
                    raise RequestError(
                        f"domains[{i}]: expected an mdsa.Domain, found {type(domain).__name__}"
                    )
            domains_json = json.dumps([d.to_dict() for d in listed])
        self._engine = _native.Engine(
            config=os.fspath(config) if config is not None else None,
            domains_file=domains_file,
            domains_json=domains_json,
            offline=offline,
            log_file=os.fspath(log_file) if log_file is not None else None,
        )

    # ---- answering -------------------------------------------------------

    def query(
        self,
        text: str,
        *,
        domain: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
        history: Sequence[Message] | None = None,
    ) -> Result:
        """Routes, answers, validates and logs one query.

        ``domain`` answers in that domain without routing; ``model`` answers
        with that model instead of the domain's (alone: no domain, no routing).
        ``max_tokens`` (below the domain's own), ``temperature``, ``top_p``,
        ``stop`` and ``seed`` override the domain's generation settings.
        ``history`` holds earlier turns, oldest first.

        An abstention is not an error: ``result.outcome`` is ``"abstained"``
        and ``result.domain`` is ``None``. Ctrl-C stops the generation and
        raises ``KeyboardInterrupt`` (the request is logged as cancelled).
        """
        options = _options(domain, model, max_tokens, temperature, top_p, stop, seed, history)
        return Result.from_dict(json.loads(self._engine.query(_text(text), options)))

    def stream(
        self,
        text: str,
        *,
        domain: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
        history: Sequence[Message] | None = None,
    ) -> Stream:
        """Like :meth:`query`, but yields :class:`Event` s as they happen::

            for event in m.stream("My card was declined"):
                if event.kind == "text":
                    print(event.text, end="", flush=True)

        Leaving the loop early (or ``stream.cancel()``) stops the generation.
        """
        options = _options(domain, model, max_tokens, temperature, top_p, stop, seed, history)
        return Stream(self._engine.stream(_text(text), options))

    async def aquery(self, text: str, **options: Unpack[QueryOptions]) -> Result:
        """:meth:`query` for ``asyncio``, with the same keyword arguments:
        awaits the answer without blocking the event loop. Cancelling the task
        (a client that went away) stops the generation, which
        ``asyncio.to_thread(m.query, ...)`` cannot."""
        async for event in self.astream(text, **options):
            if event.result is not None:
                return event.result
        raise RuntimeError("the stream ended without a result")  # pragma: no cover

    async def astream(self, text: str, **options: Unpack[QueryOptions]) -> AsyncIterator[Event]:
        """:meth:`stream` for ``asyncio``, with the same keyword arguments:
        ``async for event in m.astream(...)``. Each event is awaited on a
        worker thread, so the event loop keeps serving; leaving the loop or
        cancelling the task stops the generation."""
        stream = self.stream(text, **options)
        try:
            while True:
                event = await asyncio.to_thread(next, stream, None)
                if event is None:
                    return
                yield event
        finally:
            if stream.result is None:
                stream.cancel()

    # ---- routing ---------------------------------------------------------

    def route(self, text: str) -> Decision:
        """The domain a query would go to, with every score, without answering."""
        return Decision.from_dict(json.loads(self._engine.route(_text(text))))

    def route_batch(self, texts: Sequence[str]) -> list[Decision]:
        """Routes many queries, embedding them in batches."""
        texts = _texts(texts)
        return [Decision.from_dict(d) for d in json.loads(self._engine.route_batch(texts))]

    def embed(self, texts: str | Sequence[str]) -> numpy.ndarray | list[list[float]] | list[float]:
        """The router encoder's embeddings (normalised as the encoder is).

        A numpy ``float32`` array of shape ``(len(texts), dim)`` when numpy
        is installed, lists of floats otherwise; one string gives one vector.
        """
        single = isinstance(texts, str)
        batch = [texts] if single else _texts(texts, allow_empty=True)
        data, rows, dim = self._engine.embed(batch)
        try:
            import numpy
        except ImportError:
            import array

            floats = array.array("f")
            floats.frombytes(data)
            if floats.itemsize != 4:  # pragma: no cover - every CPython platform has 4
                raise RuntimeError("this platform's C float is not 32 bits")
            if sys.byteorder != "little":  # pragma: no cover
                floats.byteswap()
            vectors = [floats[i * dim : (i + 1) * dim].tolist() for i in range(rows)]
            return vectors[0] if single else vectors
        matrix = numpy.frombuffer(data, dtype="<f4").reshape(rows, dim).copy()
        return matrix[0] if single else matrix

    # ---- domains ---------------------------------------------------------

    def domains(self) -> list[Domain]:
        """The domains in use, in configuration order."""
        return [Domain.from_dict(d) for d in json.loads(self._engine.domains())]

    @property
    def domain_ids(self) -> list[str]:
        """The ids of the domains in use."""
        return [d.id for d in self.domains()]

    def add_domain(self, domain: Domain | None = None, /, **fields: Any) -> bool:
        """Adds a domain, or replaces the one with the same id; the router
        embeds its examples at once. Pass a :class:`Domain` or its fields
        (``m.add_domain(id="legal", name="Legal", examples=[...])``).
        Returns whether a domain was replaced."""
        if domain is None:
            domain = Domain(**fields)
        elif fields:
            raise RequestError("add_domain: pass a Domain or its fields, not both")
        elif not isinstance(domain, Domain):
            raise RequestError(
                f"add_domain: expected an mdsa.Domain, found {type(domain).__name__}"
            )
        return self._engine.add_domain(json.dumps(domain.to_dict()))

    def remove_domain(self, id: str) -> bool:
        """Removes a domain; returns whether there was one with that id."""
        return self._engine.remove_domain(id)

    def reload_domains(self, path: PathLike) -> None:
        """Replaces every domain with those of a domains file (RON). Requests
        in flight finish on the old set."""
        self._engine.reload_domains(os.fspath(path))

    # ---- log and metrics -------------------------------------------------

    def logs(
        self,
        *,
        domain: str | None = None,
        status: str | None = None,
        text: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        min_ms: float | None = None,
        max_ms: float | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """The requests this ``MDSA`` logged, most recent first, filtered.

        ``domain`` (``"none"`` for abstentions), ``status`` (``completed``,
        ``failed``, ``abstained``, ``cancelled``, ``rejected``), ``text`` in
        the query, ``since``/``until`` (a datetime, naive meaning local time,
        or an RFC 3339 string), total time ``min_ms``/``max_ms``, and the
        most recent ``limit``. Each record is a dict, as ``mdsa logs
        --format json`` prints it.
        """
        return json.loads(
            self._engine.logs(_log_query(domain, status, text, since, until, min_ms, max_ms, limit))
        )

    def export_logs(
        self,
        path: PathLike | None = None,
        *,
        format: str = "json",
        domain: str | None = None,
        status: str | None = None,
        text: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        min_ms: float | None = None,
        max_ms: float | None = None,
        limit: int | None = None,
    ) -> str:
        """The filtered log as ``json``, ``jsonl`` or ``csv`` text; written to
        ``path`` too when given. Filters as in :meth:`logs`."""
        query = _log_query(domain, status, text, since, until, min_ms, max_ms, limit, format)
        exported = self._engine.export_logs(query)
        if path is not None:
            with open(path, "w", encoding="utf-8", newline="") as out:
                out.write(exported)
        return exported

    def metrics(self) -> Metrics:
        """Latency percentiles, throughput, and the same per domain and model."""
        return Metrics.from_dict(json.loads(self._engine.metrics()))

    def prometheus(self) -> str:
        """The metrics in the Prometheus text format (what ``/metrics`` serves)."""
        return self._engine.prometheus()

    # ---- models ----------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """Every model configured: ``id``, ``role``, ``source``, ``backend``,
        ``quantization``, ``pinned``, and whether it is ``resident`` with
        its ``device``, ``bytes`` and ``in_use`` count."""
        return json.loads(self._engine.models())

    def load(self, id: str) -> None:
        """Makes a model resident now (downloading it when missing and allowed),
        evicting the least recently used models if the budget needs room."""
        self._engine.load(id)

    def unload(self, id: str) -> bool:
        """Unloads a model; ``False`` when it was not resident. A model that a
        request is using raises :class:`~mdsa.ModelError`."""
        return self._engine.unload(id)

    def __repr__(self) -> str:
        return f"MDSA(domains={self.domain_ids!r})"


class Stream:
    """The events of a streamed query; iterate it with ``for``.

    After the ``done`` event, :attr:`result` holds the whole :class:`Result`.
    Use it as a context manager (or call :meth:`close`) to stop early.
    """

    def __init__(self, native: _native.Stream) -> None:
        self._native = native
        self._pieces: list[str] = []
        self.result: Result | None = None
        """The response, once the ``done`` event has been read."""

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        event = Event.from_dict(json.loads(next(self._native)))
        if event.kind == "attempt":
            # A retry: what the rejected attempt streamed is not the answer.
            self._pieces.clear()
        elif event.kind == "text" and event.text is not None:
            self._pieces.append(event.text)
        elif event.kind == "done":
            self.result = event.result
        return event

    @property
    def text(self) -> str:
        """The answer's text streamed so far (of the current attempt)."""
        return "".join(self._pieces)

    def cancel(self) -> None:
        """Asks the generation to stop; iteration still ends with ``done``
        (outcome ``cancelled`` unless the answer was already complete)."""
        self._native.cancel()

    def close(self) -> Result | None:
        """Cancels and reads the remaining events; returns the result."""
        self.cancel()
        for _ in self:
            pass
        return self.result

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.result is None:
            self.close()


def _text(text: object) -> str:
    if not isinstance(text, str):
        raise RequestError(f"the query: expected a string, found {type(text).__name__}")
    return text


def _texts(texts: object, allow_empty: bool = False) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Iterable):
        raise RequestError(f"texts: expected a list of strings, found {type(texts).__name__}")
    listed = list(texts)
    for i, text in enumerate(listed):
        if not isinstance(text, str):
            raise RequestError(f"texts[{i}]: expected a string, found {type(text).__name__}")
    if not listed and not allow_empty:
        raise RequestError("texts: expected at least one text, found an empty list")
    return listed


def _options(
    domain: str | None,
    model: str | None,
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    stop: Sequence[str] | None,
    seed: int | None,
    history: Sequence[Message] | None,
) -> str:
    if isinstance(stop, str):
        stop = [stop]
    _number("max_tokens", max_tokens, integer=True, low=1)
    _number("temperature", temperature, low=0)
    _number("top_p", top_p, low=0, high=1)
    _number("seed", seed, integer=True, low=0)
    return json.dumps(
        {
            "domain": domain,
            "model": model,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "stop": list(stop or []),
            "seed": seed,
            "history": [_message(i, m) for i, m in enumerate(history or [])],
        }
    )


def _number(
    name: str, value: object, *, integer: bool = False, low: float, high: float | None = None
) -> None:
    if value is None:
        return
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int,) if integer else (int, float)):
        raise RequestError(f"{name}: expected {kind}, found {type(value).__name__} {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise RequestError(f"{name}: expected {kind} {bounds}, found {value!r}")


def _message(index: int, message: Message) -> dict[str, str]:
    if isinstance(message, Mapping):
        role, content = message.get("role"), message.get("content")
    elif not isinstance(message, str) and len(message) == 2:
        role, content = message
    else:
        role = content = None
    if role not in ("system", "user", "assistant") or not isinstance(content, str):
        raise RequestError(
            f"history[{index}]: expected {{'role': 'system' | 'user' | 'assistant', "
            f"'content': str}} or a (role, content) pair, found {message!r}"
        )
    return {"role": role, "content": content}


def _log_query(
    domain: str | None,
    status: str | None,
    text: str | None,
    since: datetime | str | None,
    until: datetime | str | None,
    min_ms: float | None,
    max_ms: float | None,
    limit: int | None,
    format: str | None = None,
) -> str:
    return json.dumps(
        {
            "domain": domain,
            "status": status,
            "text": text,
            "since": _timestamp("since", since),
            "until": _timestamp("until", until),
            "min_ms": min_ms,
            "max_ms": max_ms,
            "limit": limit,
            "format": format,
        }
    )


def _timestamp(name: str, value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    raise RequestError(
        f"{name}: expected a datetime or an RFC 3339 string, found {type(value).__name__}"
    )
