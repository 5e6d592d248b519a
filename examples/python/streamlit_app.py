"""A Streamlit dashboard page over mdsa, in-process.

    pip install mdsa streamlit
    streamlit run examples/python/streamlit_app.py

Ask a question and see where it went (every domain's score), the answer, and
the live figures: requests, p50/p95/p99 latency, per domain, recent requests.
"""

from __future__ import annotations

import streamlit as st

import mdsa


@st.cache_resource
def engine() -> mdsa.MDSA:
    # Shared by every session of the app: one router, one set of models.
    return mdsa.MDSA()


st.set_page_config(page_title="mdsa", layout="wide")
st.title("mdsa: the right specialist for every query")

m = engine()
with st.form("ask"):
    question = st.text_input("Your question", key="question")
    max_tokens = st.slider("Max tokens", 8, 256, 64, key="max_tokens")
    asked = st.form_submit_button("Ask")

if asked and question.strip():
    result = m.query(question, max_tokens=max_tokens)
    if result.domain is None:
        st.warning(f"No domain fits this question: {result.decision.reason}")
    else:
        st.subheader(f"Domain: {result.domain} (confidence {result.confidence:.2f})")
        st.write(result.text)
        st.caption(
            f"{result.model} on {result.device} · {result.usage.completion_tokens} tokens · "
            f"{result.timings.total_ms:.0f} ms"
        )
    st.bar_chart({s.domain: s.score for s in result.decision.scores})

metrics = m.metrics()
st.header("Live figures")
cols = st.columns(4)
cols[0].metric("Requests", metrics.requests)
cols[1].metric("p50", f"{metrics.p50_ms:.0f} ms")
cols[2].metric("p95", f"{metrics.p95_ms:.0f} ms")
cols[3].metric("p99", f"{metrics.p99_ms:.0f} ms")
if metrics.per_domain:
    st.table(
        [
            {
                "domain": domain,
                "requests": group.requests,
                "p50 ms": round(group.latency.p50_ms),
                "p95 ms": round(group.latency.p95_ms),
                "tokens out": group.tokens_out,
            }
            for domain, group in sorted(metrics.per_domain.items())
        ]
    )
recent = m.logs(limit=10)
if recent:
    st.subheader("Recent requests")
    st.table(
        [
            {
                "time": r.get("timestamp"),
                "domain": r.get("domain") or "none",
                "status": r.get("status"),
                "total ms": round(r["latency"]["total_us"] / 1000),
            }
            for r in reversed(recent)
        ]
    )
