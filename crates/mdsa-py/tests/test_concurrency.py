"""The GIL is released while mdsa works; threads and asyncio run queries at
once; Ctrl-C cancels a generation."""

from __future__ import annotations

import _thread
import asyncio
import threading
import time

import pytest

import mdsa
from conftest import SHORT

QUERIES = {
    "I have a fever and a cough": "medical",
    "How do I transfer money to my friend?": "finance",
    "The app crashes on start": "technical",
    "I want a refund for my order": "support",
}

LONG = "Write a long, detailed essay on the history of banking, with many examples."


def test_python_runs_while_a_query_generates(m: mdsa.MDSA) -> None:
    m.query("warm up: what's my balance?", max_tokens=1)
    worker = threading.Thread(target=m.query, args=(LONG,), kwargs={"max_tokens": 48})
    ticks = 0
    worker.start()
    while worker.is_alive():
        ticks += 1
        time.sleep(0.001)
    # With the GIL held for the whole query, this loop could not have turned.
    assert ticks > 20, f"the main thread ran only {ticks} times during a query"


def test_threads_query_at_once(m: mdsa.MDSA) -> None:
    results: dict[str, mdsa.Result] = {}

    def ask(text: str) -> None:
        results[text] = m.query(text, max_tokens=SHORT)

    threads = [threading.Thread(target=ask, args=(text,)) for text in QUERIES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {text: r.domain for text, r in results.items()} == QUERIES
    assert len({r.request_id for r in results.values()}) == len(QUERIES)


def test_asyncio_to_thread(m: mdsa.MDSA) -> None:
    async def main() -> list[mdsa.Result]:
        return await asyncio.gather(
            *(asyncio.to_thread(m.query, text, max_tokens=SHORT) for text in QUERIES)
        )

    results = asyncio.run(main())
    assert [r.domain for r in results] == list(QUERIES.values())


def interrupt_after(seconds: float) -> threading.Timer:
    """Ctrl-C, as the terminal would send it, to the main thread."""
    timer = threading.Timer(seconds, _thread.interrupt_main)
    timer.start()
    return timer


def test_ctrl_c_cancels_a_query(m: mdsa.MDSA) -> None:
    m.query(LONG, max_tokens=1)  # the generator is resident: no load to wait for
    timer = interrupt_after(0.3)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        m.query(LONG, max_tokens=400, temperature=0.0)
    timer.join()
    elapsed = time.monotonic() - started
    last = m.logs(limit=1)[0]
    assert last["status"] == "cancelled", last
    assert last["tokens_out"] < 400
    # The full answer would take several times longer than the interruption.
    assert elapsed < 30


def test_ctrl_c_stops_a_stream(m: mdsa.MDSA) -> None:
    stream = m.stream(LONG, max_tokens=400)
    timer = None
    with pytest.raises(KeyboardInterrupt):
        # Leaving the `with` block, however it is left, stops the generation.
        with stream:
            for event in stream:
                if event.kind == "text" and timer is None:
                    timer = interrupt_after(0.05)
    assert timer is not None
    timer.join()
    assert stream.result is not None and stream.result.outcome == "cancelled"
    assert m.logs(limit=1)[0]["status"] == "cancelled"


def test_aquery_and_astream_serve_an_event_loop(m: mdsa.MDSA) -> None:
    async def main() -> tuple[list[mdsa.Result], list[str], int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        ticker = asyncio.create_task(tick())
        results = await asyncio.gather(*(m.aquery(text, max_tokens=SHORT) for text in QUERIES))
        kinds = [event.kind async for event in m.astream("My card was declined", max_tokens=SHORT)]
        ticker.cancel()
        return results, kinds, ticks

    results, kinds, ticks = asyncio.run(main())
    assert [r.domain for r in results] == list(QUERIES.values())
    assert kinds[0] == "routed" and kinds[-1] == "done" and "text" in kinds
    assert ticks > 20, f"the event loop turned only {ticks} times while mdsa worked"


def test_cancelling_an_aquery_task_stops_the_generation(m: mdsa.MDSA) -> None:
    async def main() -> None:
        task = asyncio.create_task(m.aquery(LONG, max_tokens=400))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    deadline = time.monotonic() + 30
    while m.logs(limit=1)[0]["status"] != "cancelled" and time.monotonic() < deadline:
        time.sleep(0.05)
    last = m.logs(limit=1)[0]
    assert last["status"] == "cancelled" and last["tokens_out"] < 400, last
