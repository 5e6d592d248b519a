// The mdsa dashboard. It polls GET /v1/stats and GET /v1/logs, keeps a rolling
// history of the stats for the charts (the server only knows "now"), and drives
// the query box: POST /v1/route for the route decision, then a streamed
// POST /v1/chat/completions read with fetch and a ReadableStream.
//
// Everything a user or a model wrote (queries, answers, model ids) goes in as
// text nodes through `h()` or `textContent`, never as HTML.
"use strict";

const POLL_MS = 2000;
/** Six minutes of history at one point per poll. */
const HISTORY_POINTS = 180;
const LOG_LIMIT = 50;
/** Exports take everything the filters match, not just the page shown. */
const EXPORT_LIMIT = 10000;
/** Short answers: the dashboard is for seeing mdsa work, not for essays. */
const MAX_TOKENS = 64;
const FILTERS = ["domain", "status", "text"];

const history = [];
const view = {
  domains: [],
  filters: { domain: "", status: "", text: "" },
  /** Bumped by every log fetch, so a slow, stale answer cannot overwrite a newer one. */
  logSeq: 0,
  asking: false,
};

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------- helpers --

/**
 * Creates an element. Children that are not nodes become text nodes, so
 * untrusted strings are always safe to pass.
 */
function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined).map((c) => (c instanceof Node ? c : String(c))));
  return node;
}

function fmtMs(ms) {
  if (!Number.isFinite(ms)) return "–";
  if (ms >= 10000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  return `${Math.round(ms)} ms`;
}

function fmtBytes(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

function fmtUptime(secs) {
  const s = Math.floor(secs);
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${hh}h`;
  if (hh > 0) return `${hh}h ${String(mm).padStart(2, "0")}m`;
  if (mm > 0) return `${mm}m ${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

const fmtPct = (x) => `${(x * 100).toFixed(x > 0 && x < 0.1 ? 1 : 0)}%`;
const fmtClock = (date) => date.toLocaleTimeString([], { hour12: false });

/**
 * A domain's colour, stable for the session: its place in the sorted list. It
 * is a custom property's name, so charts and swatches follow the theme.
 */
function domainColor(domain) {
  const i = view.domains.indexOf(domain);
  return i < 0 ? "--muted" : Charts.color(i);
}

/** A colour swatch for a domain. */
const swatch = (domain) => h("i", { class: "swatch", style: `background:var(${domainColor(domain)})` });

/** Where the API key lives for this tab, when the server asks for one. */
const KEY_STORAGE = "mdsa-api-key";

/**
 * `fetch` with the API key, when the server has one: a 401 asks for the key
 * once (kept for this tab only) and retries.
 */
async function apiFetch(url, init = {}) {
  const withKey = () => {
    const key = sessionStorage.getItem(KEY_STORAGE);
    const headers = { ...(init.headers || {}) };
    if (key) headers.authorization = `Bearer ${key}`;
    return fetch(url, { ...init, headers });
  };
  let response = await withKey();
  if (response.status === 401) {
    const key = window.prompt("This mdsa server needs its API key:");
    if (key) {
      sessionStorage.setItem(KEY_STORAGE, key.trim());
      response = await withKey();
    }
  }
  return response;
}

async function getJson(url, init) {
  const response = await apiFetch(url, init);
  if (!response.ok) throw new Error(await errorMessage(response));
  return response.json();
}

const postJson = (url, body) =>
  getJson(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

/** The message of an OpenAI-shaped error body, or the status line. */
async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch {
    // Not JSON: fall through to the status.
  }
  return `${response.status} ${response.statusText}`;
}

// ------------------------------------------------------------------ stats --

async function pollStats() {
  try {
    const stats = await getJson("/v1/stats");
    renderHeader(stats);
    renderKpis(stats.metrics.total, stats.metrics.throughput_rps);
    recordHistory(stats.metrics);
    renderTimeCharts();
    renderDomainChart(stats.metrics.per_domain);
    renderMemory(stats.resident, stats.budgets);
    renderServing(stats.resident, stats.metrics.model_residency.per_model);
    $("last-update").textContent = `updated ${fmtClock(new Date())}`;
  } catch (error) {
    setReadiness("offline", `offline: ${error.message}`);
  }
}

function renderHeader(stats) {
  $("version").textContent = `v${stats.version}`;
  $("uptime").textContent = fmtUptime(stats.uptime_secs);
  $("in-flight").textContent = `${stats.in_flight} / ${stats.limits.max_concurrent}`;
  $("queue-depth").textContent = `${stats.queue_depth} / ${stats.limits.max_queue}`;
  setReadiness(stats.draining ? "draining" : "ready");
  setDomains(stats.domains);
}

function setReadiness(state, title) {
  const pill = $("readiness");
  pill.dataset.state = state;
  pill.textContent = state;
  pill.title = title || state;
}

/** Rebuilds the domain chips and selectors, only when the domains change (a reload). */
function setDomains(domains) {
  const sorted = [...domains].sort();
  if (sorted.join("\n") === view.domains.join("\n")) return;
  view.domains = sorted;
  $("domains").replaceChildren(
    ...sorted.map((d) => h("span", { class: "chip", dataset: { domain: d } }, swatch(d), d)),
  );
  fillSelect($("ask-domain"), "auto", "auto (route)", sorted);
  // "none" is how the log files requests no domain took (abstentions).
  fillSelect($("filter-domain"), "", "all domains", [...sorted, "none"]);
}

/** Replaces a select's options, keeping the current choice when it still exists. */
function fillSelect(select, firstValue, firstLabel, values) {
  const current = select.value;
  select.replaceChildren(h("option", { value: firstValue }, firstLabel), ...values.map((v) => h("option", { value: v }, v)));
  if ([firstValue, ...values].includes(current)) select.value = current;
}

function renderKpis(total, rps) {
  $("kpi-requests").textContent = total.requests.toLocaleString();
  $("kpi-rps").textContent = `${rps.toFixed(rps < 10 ? 2 : 0)}/s`;
  const seen = total.latency.count > 0;
  $("kpi-p50").textContent = seen ? fmtMs(total.latency.p50_ms) : "–";
  $("kpi-p95").textContent = seen ? fmtMs(total.latency.p95_ms) : "–";
  $("kpi-errors").textContent = total.requests > 0 ? fmtPct(total.error_rate) : "–";
  $("kpi-tokens").textContent = total.tokens_out.toLocaleString();
}

/** One point per poll; percentiles are missing (NaN) until a request is measured. */
function recordHistory(metrics) {
  const latency = metrics.total.latency;
  const seen = latency.count > 0;
  history.push({
    t: Date.now(),
    rps: metrics.throughput_rps,
    p50: seen ? latency.p50_ms : NaN,
    p95: seen ? latency.p95_ms : NaN,
    p99: seen ? latency.p99_ms : NaN,
  });
  if (history.length > HISTORY_POINTS) history.splice(0, history.length - HISTORY_POINTS);
}

function renderTimeCharts() {
  const times = history.map((p) => p.t);
  Charts.lineChart($("chart-throughput"), {
    times,
    series: [{ label: "req/s", values: history.map((p) => p.rps) }],
    min: 0.1,
  });
  Charts.lineChart($("chart-latency"), {
    times,
    // Compact for the axis: 500ms, 1.5s, 4s.
    format: (v) => (v >= 1000 ? `${+(v / 1000).toPrecision(3)}s` : `${Math.round(v)}ms`),
    series: [
      { label: "p50", values: history.map((p) => p.p50), color: Charts.color(0) },
      { label: "p95", values: history.map((p) => p.p95), color: Charts.color(2) },
      { label: "p99", values: history.map((p) => p.p99), color: Charts.color(3) },
    ],
  });
}

function renderDomainChart(perDomain) {
  // Every configured domain, even at zero, so the chart does not jump around;
  // then any other label the metrics hold ("none": abstentions).
  const labels = [...view.domains, ...Object.keys(perDomain).filter((d) => !view.domains.includes(d))];
  Charts.barChart($("chart-domains"), {
    bars: labels.map((d) => ({ label: d, value: perDomain[d] ? perDomain[d].requests : 0, color: domainColor(d) })),
    integer: true,
  });
}

function renderMemory(resident, budgets) {
  const budgetText = Object.entries(budgets).map(([device, bytes]) => {
    const used = resident.filter((m) => m.device === device).reduce((sum, m) => sum + m.bytes, 0);
    return `${fmtBytes(used)} of ${fmtBytes(bytes)} ${device} budget (${fmtPct(used / bytes)})`;
  });
  $("memory-budget").textContent = budgetText.join(" · ");
  const bars = [...resident]
    .sort((a, b) => b.bytes - a.bytes)
    .map((m) => {
      const budget = budgets[m.device];
      const flags = [m.pinned ? "pinned" : "", m.in_use > 0 ? "in use" : ""].filter(Boolean).join(", ");
      return {
        label: flags ? `${m.id} (${flags})` : m.id,
        value: m.bytes,
        note: budget ? `${fmtBytes(m.bytes)} · ${fmtPct(m.bytes / budget)}` : fmtBytes(m.bytes),
      };
    });
  const budgetValues = Object.values(budgets);
  Charts.barChart($("chart-memory"), {
    bars,
    horizontal: true,
    format: fmtBytes,
    limit: budgetValues.length === 1 ? { value: budgetValues[0], label: "budget" } : null,
    empty: "no model resident",
  });
}

/**
 * One line per resident generator that batches: sequences running, batch size
 * per step (mean and largest), KV bytes held and prefix-cache hits. Each item
 * carries its figures as data attributes too.
 */
function renderServing(resident, perModel) {
  const list = $("serving");
  list.replaceChildren();
  for (const m of resident) {
    const s = m.serving;
    if (!s) continue;
    const figures = perModel[m.id] || {};
    const prompts = (figures.prefix_hits || 0) + (figures.prefix_misses || 0);
    const mean = s.steps > 0 ? s.sequence_steps / s.steps : 0;
    const item = document.createElement("li");
    item.dataset.model = m.id;
    item.dataset.active = s.active_sequences;
    item.dataset.steps = s.steps;
    item.dataset.meanBatch = mean.toFixed(2);
    item.dataset.largestBatch = s.largest_batch;
    item.dataset.kvBytes = s.kv_cache_bytes;
    item.dataset.prefixHits = figures.prefix_hits || 0;
    item.textContent =
      `${m.id}: ${s.active_sequences} running · batch ${mean.toFixed(1)} per step (max ${s.largest_batch}, ` +
      `${s.steps} steps) · KV cache ${fmtBytes(s.kv_cache_bytes)} · prefix hits ` +
      `${figures.prefix_hits || 0} of ${prompts} prompts`;
    list.append(item);
  }
}

// ------------------------------------------------------------------- logs --

/** The filters as /v1/logs query parameters, plus `extra`. */
function logParams(extra) {
  const params = new URLSearchParams();
  for (const key of FILTERS) {
    const value = view.filters[key].trim();
    if (value) params.set(key, value);
  }
  for (const [key, value] of Object.entries(extra)) params.set(key, value);
  return params;
}

const filtered = () => FILTERS.some((key) => view.filters[key].trim() !== "");

async function pollLogs() {
  const seq = ++view.logSeq;
  try {
    const records = await getJson(`/v1/logs?${logParams({ limit: LOG_LIMIT })}`);
    // The confidence histogram shows all recent traffic, whatever the table's filters.
    const recent = filtered() ? await getJson(`/v1/logs?limit=${LOG_LIMIT}`) : records;
    if (seq !== view.logSeq) return;
    renderLogTable(records);
    renderConfidence(recent);
  } catch (error) {
    if (seq === view.logSeq) $("log-empty").textContent = `Could not read the log: ${error.message}`;
  }
}

function renderLogTable(records) {
  $("log-rows").replaceChildren(...records.map(logRow));
  $("log-table").dataset.rows = String(records.length);
  const empty = $("log-empty");
  empty.hidden = records.length > 0;
  empty.textContent = filtered() ? "No request matches these filters." : "No requests yet.";
}

function logRow(r) {
  const when = new Date(r.timestamp);
  // Redacted domains keep only a hash of the query: say so rather than show nothing.
  const query =
    r.query != null
      ? h("td", { class: "query", title: r.query }, r.query)
      : h("td", { class: "query redacted", title: r.query_hash ? `sha256 ${r.query_hash}` : null }, "[redacted]");
  const domain = r.domain || "none";
  return h(
    "tr",
    { "data-testid": "log-row", dataset: { id: r.id, status: r.status, domain } },
    h("td", { title: r.timestamp }, fmtClock(when)),
    h("td", {}, h("span", { class: "chip" }, swatch(domain), domain)),
    h("td", { class: "num" }, r.confidence != null ? fmtPct(r.confidence) : "–"),
    h("td", {}, r.model || "–"),
    h("td", {}, h("span", { class: "pill", dataset: { state: r.status }, title: r.error || r.status }, r.status)),
    h("td", { class: "num", title: `${r.tokens_in} in, ${r.tokens_out} out` }, `${r.tokens_in} → ${r.tokens_out}`),
    h("td", { class: "num" }, (r.latency.total_us / 1000).toFixed(0)),
    query,
  );
}

/** A histogram of the router's confidence over the recent records, in tenths. */
function renderConfidence(records) {
  const bins = new Array(10).fill(0);
  for (const r of records) {
    if (r.confidence == null) continue;
    bins[Math.min(9, Math.floor(r.confidence * 10))]++;
  }
  Charts.barChart($("chart-confidence"), {
    bars: bins.map((count, i) => ({
      label: `${(i / 10).toFixed(1)}`,
      value: count,
      // Low confidence is where routing goes wrong: make it stand out.
      color: i < 5 ? Charts.color(3) : Charts.color(1),
    })),
    integer: true,
  });
}

function updateExportLinks() {
  for (const format of ["json", "csv"]) {
    $(`export-${format}`).href = `/v1/logs?${logParams({ limit: EXPORT_LIMIT, format })}`;
  }
}

/**
 * A plain link cannot send the API key: with a key, an export downloads
 * through `apiFetch` instead.
 */
function initExportLinks() {
  for (const format of ["json", "csv"]) {
    const link = $(`export-${format}`);
    link.addEventListener("click", async (event) => {
      if (!sessionStorage.getItem(KEY_STORAGE)) return;
      event.preventDefault();
      const response = await apiFetch(link.href);
      if (!response.ok) return;
      const url = URL.createObjectURL(await response.blob());
      const download = h("a", { href: url, download: link.getAttribute("download") });
      download.click();
      URL.revokeObjectURL(url);
    });
  }
}

let textTimer = 0;
function onFilterChange(event) {
  for (const key of FILTERS) view.filters[key] = $(`filter-${key}`).value;
  updateExportLinks();
  // Typing waits for a pause; the selects apply at once.
  clearTimeout(textTimer);
  textTimer = setTimeout(pollLogs, event.type === "input" ? 300 : 0);
}

// ------------------------------------------------------------------- ask --

async function onAsk(event) {
  event.preventDefault();
  const query = $("ask-query").value.trim();
  if (!query || view.asking) return;
  const model = $("ask-domain").value || "auto";
  setAsking(true);
  resetAnswer();
  try {
    // Routing first shows where the query goes before any model is loaded;
    // a chosen domain needs no routing.
    if (model === "auto") showRoute(await postJson("/v1/route", { query }));
    await streamAnswer(query, model);
  } catch (error) {
    showAnswerError(error.message);
  } finally {
    setAsking(false);
    pollLogs();
    pollStats();
  }
}

function setAsking(asking) {
  view.asking = asking;
  $("ask-submit").disabled = asking;
  $("ask-submit").textContent = asking ? "Asking…" : "Ask";
}

function resetAnswer() {
  const answer = $("answer");
  answer.replaceChildren();
  answer.className = "answer-text";
  answer.dataset.state = "routing";
  answer.dataset.chunks = "0";
  delete answer.dataset.outcome;
  $("answer-events").replaceChildren();
  $("answer-summary").replaceChildren();
  $("route-domain").textContent = "routing…";
  $("route-confidence").textContent = "";
  $("route-reason").replaceChildren();
  $("route").dataset.domain = "";
}

function showRoute(route) {
  const box = $("route");
  box.dataset.domain = route.domain || "";
  box.dataset.abstained = String(route.abstained);
  $("route-domain").textContent = route.domain || "no domain (abstained)";
  const notes = [`confidence ${fmtPct(route.confidence)}`];
  if (route.fallback) notes.push("fallback");
  if (route.latency_ms) notes.push(`routed in ${fmtMs(route.latency_ms)}`);
  $("route-confidence").textContent = notes.join(" · ");
  Charts.barChart($("route-chart"), {
    bars: route.scores.map((s) => ({
      label: s.domain,
      value: Math.max(s.score, 0),
      note: s.score.toFixed(3),
      color: s.domain === route.domain ? domainColor(s.domain) : "--grid-strong",
    })),
    horizontal: true,
    empty: "no scores: the domain was chosen, not routed",
  });
  const nearest = (route.explanation.nearest || []).slice(0, 3);
  $("route-reason").replaceChildren(
    h("span", {}, route.explanation.reason),
    ...nearest.map((n) => h("span", { class: "nearest" }, `“${n.text}” `, h("small", {}, `${n.domain} ${n.similarity.toFixed(2)}`))),
  );
}

/** Streams the answer: server-sent events, one JSON chunk per `data:` line. */
async function streamAnswer(query, model) {
  const response = await apiFetch("/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model,
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: MAX_TOKENS,
      messages: [{ role: "user", content: query }],
    }),
  });
  if (!response.ok) throw new Error(await errorMessage(response));
  $("answer").dataset.state = "streaming";
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    // An event ends at a blank line; a partial one waits for the next read.
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const data = sseData(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (data === "[DONE]") return;
      if (data) onChunk(JSON.parse(data));
    }
  }
}

/** The `data:` payload of one server-sent event (empty for keep-alive comments). */
function sseData(block) {
  return block
    .split("\n")
    .filter((line) => line.startsWith("data:"))
    .map((line) => line.slice(5).replace(/^ /, ""))
    .join("\n");
}

function onChunk(chunk) {
  if (chunk.error) {
    showAnswerError(chunk.error.message);
    return;
  }
  if (chunk.mdsa) onMdsaEvent(chunk.mdsa);
  const delta = chunk.choices && chunk.choices[0] ? chunk.choices[0].delta : null;
  if (delta && delta.content) appendText(delta.content);
  if (delta && delta.refusal) showRefusal(delta.refusal);
  if (chunk.usage) addSummary("tokens", `${chunk.usage.prompt_tokens} in → ${chunk.usage.completion_tokens} out`);
}

/** mdsa's progress events, carried in each chunk's `mdsa` object. */
function onMdsaEvent(ext) {
  switch (ext.event) {
    case "routed":
      showRoute(ext.route);
      break;
    case "loading":
      addEvent(ext.cold ? `loading ${ext.model} (cold)` : `${ext.model} warm`, ext.cold ? "cold" : "warm");
      break;
    case "loaded":
      addEvent(`loaded in ${fmtMs(ext.load_ms)}`, "loaded");
      break;
    case "retry":
      // The earlier attempt failed validation: its text is not the answer.
      $("answer").replaceChildren();
      addEvent(`retry: attempt ${ext.attempt}`, "retry");
      break;
    case "done":
      showDone(ext);
      break;
    default:
      break;
  }
}

function appendText(text) {
  const answer = $("answer");
  answer.append(text);
  answer.dataset.chunks = String(Number(answer.dataset.chunks || 0) + 1);
}

function showRefusal(text) {
  const answer = $("answer");
  answer.classList.add("refusal");
  answer.replaceChildren(text);
}

function addEvent(text, kind) {
  $("answer-events").append(h("span", { class: "event", dataset: { kind } }, text));
}

function addSummary(label, value) {
  $("answer-summary").append(h("span", { class: "fact" }, h("b", {}, label), " ", value));
}

function showDone(ext) {
  const answer = $("answer");
  answer.dataset.state = "done";
  answer.dataset.outcome = ext.outcome;
  addEvent(ext.outcome.replace("_", " "), ext.outcome);
  const t = ext.timings;
  addSummary("total", fmtMs(t.total_ms));
  addSummary("route", fmtMs(t.route_ms));
  if (t.load_ms > 0) addSummary("load", fmtMs(t.load_ms));
  if (t.first_token_ms != null) addSummary("first token", fmtMs(t.first_token_ms));
  if (t.generate_ms > 0) addSummary("generate", fmtMs(t.generate_ms));
  if (ext.attempts > 1) addSummary("attempts", ext.attempts);
  if (ext.verdict && !ext.verdict.passed) addSummary("validation", ext.verdict.failures.join("; ") || "failed");
}

function showAnswerError(message) {
  const answer = $("answer");
  answer.dataset.state = "error";
  answer.classList.add("error");
  answer.replaceChildren(message);
}

// ------------------------------------------------------------------ theme --

/** Light or dark by the user's choice, remembered; the system's otherwise. */
function initTheme() {
  const saved = localStorage.getItem("mdsa-theme");
  if (saved) document.documentElement.dataset.theme = saved;
  $("theme-toggle").addEventListener("click", () => {
    const dark = matchMedia("(prefers-color-scheme: dark)").matches;
    const current = document.documentElement.dataset.theme || (dark ? "dark" : "light");
    const next = current === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem("mdsa-theme", next);
    Charts.redrawAll();
  });
  // Canvas colours are read at draw time: follow a system switch too.
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", Charts.redrawAll);
}

// ------------------------------------------------------------------- main --

/** Polls `fn` forever, waiting for each answer, so a slow server is not piled on. */
async function every(ms, fn) {
  for (;;) {
    await fn();
    await sleep(ms);
  }
}

function main() {
  initTheme();
  initExportLinks();
  for (const canvas of document.querySelectorAll("canvas")) Charts.observe(canvas);
  $("ask-form").addEventListener("submit", onAsk);
  const filters = $("log-filters");
  filters.addEventListener("submit", (event) => event.preventDefault());
  filters.addEventListener("change", onFilterChange);
  filters.addEventListener("input", onFilterChange);
  updateExportLinks();
  every(POLL_MS, pollStats);
  every(POLL_MS, pollLogs);
}

main();
