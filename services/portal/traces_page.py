"""The portal's traces page: recent operations (each opens its waterfall) and the latency report of a window."""

from __future__ import annotations

from services.portal.waterfall_assets import page_head

PAGE = page_head("Traces · FoundationaLLM User Portal (callstack)") + """\
  main { max-width: 84rem; margin: 0 auto 2rem; padding: 0 1.2rem; }
  .bar-row { display: flex; justify-content: space-between; align-items: center; gap: 1rem; }
  select, button.page { font: inherit; font-size: .85rem; }
  #ops td.tid { color: var(--accent); }
  #report-summary { font-size: .85rem; margin-bottom: .4rem; }
  .axis { display: flex; justify-content: space-between; font-size: .72rem; color: var(--muted); }
  [hidden] { display: none !important; }
</style>
</head>
<body data-state="loading">
<header class="top"><b>FoundationaLLM User Portal</b><a href="./">Ask</a><a class="here" href="traces">Traces</a>
  <span class="muted" id="source"></span></header>
<main>
<section class="panel">
  <div class="bar-row"><h2>Recent operations</h2>
    <span><button class="page" id="newest">Newest</button> <button class="page" id="older">Older →</button></span></div>
  <table class="grid" id="ops">
    <thead><tr><th class="l">started</th><th class="l">agent</th><th class="l">status</th><th>end to end ms</th>
      <th class="l">failed hop</th><th>spans</th><th class="l">trace</th></tr></thead>
    <tbody></tbody>
  </table>
  <div id="ops-empty" class="muted" hidden>No operations in the trace store yet: ask something on the Ask page.</div>
  <div id="ops-error" class="err" role="alert"></div>
</section>
<section class="panel" id="trace-panel" hidden>
  <h2>Waterfall</h2>
  <div id="trace"></div>
</section>
<section class="panel">
  <div class="bar-row"><h2>Latency report</h2>
    <label class="muted">window <select id="window">
      <option value="5m">last 5 min</option><option value="15m">last 15 min</option>
      <option value="1h" selected>last hour</option><option value="6h">last 6 h</option>
      <option value="24h">last 24 h</option><option value="7d">last 7 days</option><option value="all">all</option>
    </select></label></div>
  <div id="report-summary" class="muted"></div>
  <h3>Phases of the end-to-end time (mean)</h3><div id="report-phases"></div>
  <h3>Per hop (in the order they run; status polls last)</h3>
  <table class="grid" id="hops"><thead><tr><th class="l">service</th><th class="l">span</th><th>n</th>
    <th>errors</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>self p50</th><th>self p95</th>
    <th class="l">critical-path share</th>
  </tr></thead><tbody></tbody></table>
  <h3>Code execution time (interpreter-run spans)</h3><div id="histogram"></div>
</section>
</main>
<script nonce="__NONCE__">
"use strict";
__JS__
const $ = (id) => document.getElementById(id);
const PAGE_SIZE = 25;

function when(ns) {
  const d = new Date(Number(BigInt(ns) / 1000000n));
  return d.toLocaleString("sv-SE", {hour12: false}).replace("T", " ") + "." +
    String(d.getMilliseconds()).padStart(3, "0");
}

async function loadOperations(before) {
  $("ops-error").textContent = "";
  try {
    const page = await fetchJson("api/traces?limit=" + PAGE_SIZE + (before ? "&before_ns=" + before : ""));
    $("source").textContent = "source: " + page.source;
    const body = $("ops").querySelector("tbody");
    body.replaceChildren();
    for (const op of page.operations) {
      const row = el("tr", {class: "pick", "data-trace-id": op.trace_id},
        el("td", {class: "l mono", text: when(op.start_ns)}), el("td", {class: "l", text: op.agent || "-"}),
        el("td", {class: "l " + op.status, text: op.status}), el("td", {text: fmt(op.end_to_end_ms)}),
        el("td", {class: "l err", text: op.failed_hop || ""}), el("td", {text: String(op.spans)}),
        el("td", {class: "l mono tid", text: op.trace_id}));
      row.addEventListener("click", () => { location.hash = "trace=" + op.trace_id; });
      body.append(row);
    }
    $("ops-empty").hidden = page.operations.length > 0;
    $("older").disabled = !page.next_before_ns;
    $("older").dataset.cursor = page.next_before_ns || "";
    markSelected();
  } catch (error) {
    $("ops-error").textContent = "cannot list operations: " + error.message;
  }
}

function markSelected() {
  const id = (location.hash.match(/trace=([0-9a-f]{32})/) || [])[1];
  for (const row of $("ops").querySelectorAll("tbody tr")) row.classList.toggle("sel", row.dataset.traceId === id);
  return id;
}

async function openTrace() {
  const id = markSelected();
  if (!id) return;
  $("trace-panel").hidden = false;
  try {
    const view = await fetchJson("api/traces/" + id);
    $("trace").replaceChildren(waterfall(view, (other) => "#trace=" + other));
  } catch (error) {
    $("trace").replaceChildren(el("div", {class: "err", text: "trace " + id + ": " + error.message}));
  }
  document.body.dataset.trace = id;
  $("trace-panel").scrollIntoView({block: "start"});
}

async function loadReport() {
  try {
    const r = await fetchJson("api/latency?window=" + $("window").value);
    const e2e = r.end_to_end;
    $("report-summary").textContent = r.traces + " traces (" + r.operations + " operations, " + r.polls +
      " status polls), " + r.spans + " spans" +
      (r.capped ? ", the newest " + r.limit + " traces of the window" : "") +
      (e2e ? " · end to end p50 " + fmt(e2e.p50_ms) + " / p95 " + fmt(e2e.p95_ms) + " / p99 " +
             fmt(e2e.p99_ms) + " ms" : "");
    const phases = r.phases.filter((p) => p.mean_ms !== undefined)
      .map((p) => ({phase: p.phase, description: p.description, ms: p.mean_ms}));
    $("report-phases").replaceChildren(phases.length ? phaseBar(phases)
      : el("span", {class: "muted", text: "no operation traces in this window"}));
    const body = $("hops").querySelector("tbody");
    body.replaceChildren();
    for (const h of r.hops) {
      body.append(el("tr", {class: h.errors ? "err" : ""},
        el("td", {class: "l", text: h.service}), el("td", {class: "l", text: h.span}),
        el("td", {text: String(h.count)}),
        el("td", {text: String(h.errors)}), el("td", {text: fmt(h.p50_ms)}), el("td", {text: fmt(h.p95_ms)}),
        el("td", {text: fmt(h.p99_ms)}), el("td", {text: fmt(h.self_p50_ms)}), el("td", {text: fmt(h.self_p95_ms)}),
        el("td", {class: "l"}, el("span", {class: "share", style: {width: (80 * h.critical_path_share) + "px"}}),
           pct(h.critical_path_share))));
    }
    const bins = r.execution_histogram;
    if (!bins.length) {
      $("histogram").replaceChildren(el("span", {class: "muted", text: "no code executions in this window"}));
    } else {
      const top = Math.max(...bins.map((b) => b.count));
      const hist = el("div", {class: "hist"});
      for (const b of bins) hist.append(el("div", {title: fmt(b.low_ms) + "–" + fmt(b.high_ms) + " ms: " + b.count,
                                                   style: {height: (100 * b.count / top) + "%"}}));
      $("histogram").replaceChildren(hist, el("div", {class: "axis"}, el("span", {text: fmt(bins[0].low_ms) + " ms"}),
        el("span", {text: bins.reduce((n, b) => n + b.count, 0) + " executions"}),
        el("span", {text: fmt(bins[bins.length - 1].high_ms) + " ms"})));
    }
  } catch (error) {
    $("report-summary").textContent = "cannot compute the report: " + error.message;
  }
}

$("newest").addEventListener("click", () => loadOperations(null));
$("older").addEventListener("click", () => loadOperations($("older").dataset.cursor));
$("window").addEventListener("change", loadReport);
window.addEventListener("hashchange", openTrace);
Promise.all([loadOperations(null), loadReport()]).then(openTrace)
  .finally(() => { document.body.dataset.state = "ready"; });
</script>
</body>
</html>
"""
