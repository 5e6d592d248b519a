"""A FastAPI service over mdsa, in-process (no second server to run).

    pip install mdsa fastapi uvicorn
    uvicorn fastapi_app:app --port 8000        # from examples/python/
    curl -s localhost:8000/query -H 'content-type: application/json' \\
         -d '{"text": "I have a fever"}'

``/query`` answers, ``/route`` only routes, ``/stream`` streams the answer as
server-sent events, ``/metrics`` is Prometheus text, ``/logs`` the recent
requests. ``/query`` and ``/stream`` are ``async``: they await mdsa
(``aquery``, ``astream``) without blocking the event loop, and a client that
goes away mid-stream stops its generation. The plain ``def`` handlers run on
FastAPI's thread pool; mdsa releases the GIL, so requests run concurrently.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Optional

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel

import mdsa


class QueryIn(BaseModel):
    text: str
    domain: Optional[str] = None
    max_tokens: Optional[int] = None
    temperature: Optional[float] = None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One MDSA for the whole service: it loads the router once and keeps
    # domain models resident under its memory budget.
    app.state.mdsa = mdsa.MDSA()
    yield


app = FastAPI(title="mdsa", lifespan=lifespan)


def engine(request: Request) -> mdsa.MDSA:
    return request.app.state.mdsa


def options(body: QueryIn) -> dict[str, Any]:
    return {
        "domain": body.domain,
        "max_tokens": body.max_tokens,
        "temperature": body.temperature,
    }


@app.post("/query")
async def query(body: QueryIn, request: Request) -> dict[str, Any]:
    try:
        result = await engine(request).aquery(body.text, **options(body))
    except (mdsa.RequestError, mdsa.RoutingError) as error:
        raise HTTPException(status_code=400, detail=str(error)) from error
    return result.to_dict()


@app.post("/route")
def route(body: QueryIn, request: Request) -> dict[str, Any]:
    try:
        return engine(request).route(body.text).to_dict()
    except mdsa.RequestError as error:
        raise HTTPException(status_code=400, detail=str(error)) from error


@app.post("/stream")
async def stream(body: QueryIn, request: Request) -> StreamingResponse:
    m = engine(request)

    async def sse() -> AsyncIterator[str]:
        events = m.astream(body.text, **options(body))
        try:
            async for event in events:
                if event.kind == "text":
                    yield f"data: {json.dumps({'text': event.text})}\n\n"
                elif event.kind == "routed" and event.decision is not None:
                    domain = {"domain": event.decision.domain}
                    yield f"event: routed\ndata: {json.dumps(domain)}\n\n"
                elif event.kind == "done" and event.result is not None:
                    done = {"outcome": event.result.outcome, "request_id": event.result.request_id}
                    yield f"event: done\ndata: {json.dumps(done)}\n\n"
        finally:
            # Starlette closes this generator when the client disconnects;
            # closing `astream` stops the generation.
            await events.aclose()

    return StreamingResponse(sse(), media_type="text/event-stream")


@app.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> str:
    return engine(request).prometheus()


@app.get("/logs")
def logs(request: Request, domain: Optional[str] = None, limit: int = 20) -> list[dict[str, Any]]:
    return engine(request).logs(domain=domain, limit=limit)
