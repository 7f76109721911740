"""The head, CSS and JS shared by the portal's pages: the trace waterfall, the phase bar, number formatting.

Everything is built with DOM calls and textContent (nothing received is parsed as HTML); positions are
set through the CSSOM (element.style), which the page's nonce-only CSP allows.
"""

from __future__ import annotations


def page_head(title: str) -> str:
    """A page's start, up to its own CSS: the shared CSS and the nonce are filled in when it is rendered."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title}</title>
<style nonce="__NONCE__">__CSS__
"""

CSS = """
  :root { --bg:#f4f5f7; --panel:#fff; --line:#e1e4e8; --text:#1f2328; --muted:#656d76; --accent:#0969da;
          --crit:#1f6feb; --err:#cf222e; --ok:#1a7f37; --warn:#9a6700;
          font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--text); background: var(--bg); }
  body { margin: 0; }
  header.top { background: #24292f; color: #fff; padding: .6rem 1.2rem; display: flex; gap: 1.5rem;
                align-items: center; }
  header.top b { font-size: 1rem; } header.top a { color: #d0d7de; text-decoration: none; font-size: .9rem; }
  header.top a.here { color: #fff; border-bottom: 2px solid #fd8c73; padding-bottom: .15rem; }
  .panel { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: .9rem 1rem;
                margin-top: 1rem; }
  h2 { font-size: 1rem; margin: 0 0 .6rem; } h3 { font-size: .9rem; margin: 1rem 0 .4rem; color: var(--muted); }
  .muted { color: var(--muted); } .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
  .Completed, .ok { color: var(--ok); } .Failed, .Error, .err { color: var(--err);
                } .InProgress, .Unknown { color: var(--warn); }
  table.grid { border-collapse: collapse; width: 100%; font-size: .82rem; }
  table.grid th { text-align: right; font-weight: 600; color: var(--muted);
                border-bottom: 1px solid var(--line); padding: .3rem .5rem; white-space: nowrap; }
  table.grid td { text-align: right; padding: .22rem .5rem; border-bottom: 1px solid #f0f1f3; white-space: nowrap;
                  font-variant-numeric: tabular-nums; }
  table.grid .l { text-align: left; }
  table.grid tr.pick { cursor: pointer; } table.grid tr.pick:hover td { background: #f6f8fa; }
  table.grid tr.sel td { background: #ddf4ff; }
  .wf-head { display: flex; flex-wrap: wrap; gap: .4rem 1.4rem; font-size: .85rem; margin-bottom: .6rem; }
  .wf-head b { font-variant-numeric: tabular-nums; }
  .phasebar { display: flex; height: 22px; border-radius: 4px; overflow: hidden; border: 1px solid var(--line); }
  .phasebar div { height: 100%; min-width: 1px; }
  .legend { display: flex; flex-wrap: wrap; gap: .2rem 1rem; font-size: .75rem; margin: .35rem 0 .2rem; }
  .legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: .3rem;
                vertical-align: -1px; }
  table.wf { table-layout: fixed; }
  table.wf td.name { overflow: hidden; text-overflow: ellipsis; }
  table.wf tr.crit td.name .span { font-weight: 600; }
  table.wf tr.failed td { background: #fff0f0; }
  .exec-tag { font-size: .68rem; padding: 0 .3rem; border-radius: 3px; background: #8250df; color: #fff;
                margin-right: .3rem; }
  .svc { display: inline-block; font-size: .7rem; padding: 0 .35rem; border-radius: 3px; color: #fff;
                margin-right: .35rem; }
  .errmsg { display: block; color: var(--err); font-size: .75rem; white-space: normal; }
  td.tl { position: relative; padding: 0 !important; }
  .track { position: relative; height: 16px; margin: 0 .4rem; }
  .bar { position: absolute; top: 3px; height: 10px; border-radius: 2px; opacity: .35; min-width: 2px; }
  .cbar { position: absolute; top: 3px; height: 10px; background: var(--crit); border-radius: 1px; min-width: 1px; }
  tr.failed .bar { background: var(--err) !important; opacity: .8; }
  .chips a { display: inline-block; margin: .15rem .3rem .15rem 0; padding: .1rem .45rem;
                border: 1px solid var(--line);
             border-radius: 10px; font-size: .75rem; color: var(--accent); text-decoration: none; }
  .hist { display: flex; align-items: flex-end; gap: 2px; height: 120px; border-bottom: 1px solid var(--line); }
  .hist div { flex: 1; background: #8250df; opacity: .75; min-height: 1px; }
  .share { display: inline-block; height: 8px; background: var(--crit); border-radius: 2px;
                vertical-align: middle; margin-right: .3rem; }
  button.link { background: none; border: none; color: var(--accent); cursor: pointer; padding: 0; font: inherit; }
"""

JS = r"""
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                 "#9c755f", "#bab0ac", "#86bcb6", "#d37295", "#499894"];
const serviceColors = {};
function colorOf(service) {
  if (!(service in serviceColors)) serviceColors[service] = PALETTE[Object.keys(serviceColors).length % PALETTE.length];
  return serviceColors[service];
}
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key === "style") Object.assign(node.style, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}
const fmt = (ms) => ms === null || ms === undefined ? "" :
  (ms >= 100 ? ms.toLocaleString("en-US", {maximumFractionDigits: 0}) : ms.toFixed(ms >= 10 ? 1 : 2));
const pct = (x) => (100 * x).toFixed(1) + "%";

function phaseBar(phases) {
  const parts = phases.filter((p) => p.phase !== "end_to_end" && p.ms > 0);
  const total = parts.reduce((sum, p) => sum + p.ms, 0);
  const box = el("div", {"data-role": "phases"});
  if (!total) return box;
  const bar = el("div", {class: "phasebar"});
  const legend = el("div", {class: "legend"});
  parts.forEach((p, i) => {
    const color = PALETTE[i % PALETTE.length];
    const title = p.phase + ": " + fmt(p.ms) + " ms (" + pct(p.ms / total) + ") — " + p.description;
    bar.append(el("div", {title, style: {width: (100 * p.ms / total) + "%", background: color}}));
    legend.append(el("span", {title}, el("i", {style: {background: color}}), p.phase + " " + fmt(p.ms) + " ms"));
  });
  box.append(bar, legend);
  return box;
}

function waterfall(view, traceHref) {
  const root = el("div", {class: "waterfall", "data-trace-id": view.trace_id});
  const s = view.summary;
  const errors = view.spans.filter((x) => x.error).length;
  root.append(el("div", {class: "wf-head"},
    el("span", {}, "trace ", el("b", {class: "mono", text: view.trace_id})),
    el("span", {}, "end to end ", el("b", {text: fmt(s.end_to_end_ms) + " ms"})),
    el("span", {}, el("b", {text: String(view.spans.length)}), " spans in ",
       el("b", {text: String(view.services.length)}), " services"),
    el("span", {class: errors ? "err" : "ok", text: errors ? errors + " failed span" + (errors > 1 ? "s" : "") +
       (s.failed_hop ? " (failed hop: " + s.failed_hop + ")" : "") : "no errors"}),
    el("span", {class: "muted", text: "blue: critical path"})));
  if (view.phases) root.append(phaseBar(view.phases));
  const table = el("table", {class: "grid wf"});
  const cols = el("colgroup", {}, el("col", {style: {width: "38%"}}), el("col", {style: {width: "6.5%"}}),
    el("col", {style: {width: "6.5%"}}), el("col", {style: {width: "6.5%"}}), el("col", {style: {width: "6.5%"}}),
    el("col", {}));
  table.append(cols, el("thead", {}, el("tr", {},
    el("th", {class: "l", text: "service · span"}), el("th", {text: "start ms"}), el("th", {text: "duration"}),
    el("th", {text: "self"}), el("th", {text: "critical"}), el("th", {class: "l", text: "timeline"}))));
  const body = el("tbody");
  const total = Math.max(view.duration_ms, 0.001);
  for (const span of view.spans) {
    const name = el("td", {class: "name l", title: span.service + " · " + span.name},
      el("span", {style: {display: "inline-block", width: (span.depth * 0.9) + "rem"}}),
      el("span", {class: "svc", text: span.service, style: {background: colorOf(span.service)}}),
      span.execution ? el("span", {class: "exec-tag", text: "⚙ code"}) : null,
      el("span", {class: "span", text: span.name}));
    if (span.error) name.append(el("span", {class: "errmsg", text: "✗ " + (span.error_message || "error")}));
    const track = el("div", {class: "track"},
      el("div", {class: "bar", style: {left: (100 * span.start_ms / total) + "%",
        width: (100 * span.duration_ms / total) + "%", background: colorOf(span.service)}}));
    for (const [a, b] of span.critical) {
      const style = {left: (100 * a / total) + "%", width: (100 * (b - a) / total) + "%"};
      track.append(el("div", {class: "cbar", style}));
    }
    const cls = [span.critical_ms > 0 ? "crit" : "", span.error ? "failed" : "",
                 span.execution ? "exec" : ""].join(" ");
    body.append(el("tr", {class: cls, "data-service": span.service, "data-span": span.name},
      name, el("td", {text: fmt(span.start_ms)}), el("td", {text: fmt(span.duration_ms)}),
      el("td", {text: fmt(span.self_ms)}), el("td", {text: span.critical_ms ? fmt(span.critical_ms) : ""}),
      el("td", {class: "tl"}, track)));
  }
  table.append(body);
  root.append(table);
  const linked = view.linked_traces.length ? view.linked_traces
    : view.links.map((id) => ({trace_id: id, name: "linked trace"}));
  if (linked.length) {
    const chips = el("div", {class: "chips", "data-role": "linked"},
      el("span", {class: "muted",
                  text: view.linked_traces.length ? "status polls, their own traces (linked): " : "links to: "}));
    for (const link of linked) {
      const label = link.name + (link.start_ms !== undefined ? " @" + fmt(link.start_ms) + " ms" : "") +
        (link.error ? " ✗" : "");
      chips.append(el("a", {href: traceHref(link.trace_id), title: link.trace_id, text: label}));
    }
    root.append(chips);
  }
  return root;
}

async function fetchJson(url) {
  const response = await fetch(url, {cache: "no-store"});
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    const error = new Error((body && (body.detail || body.title)) || ("HTTP " + response.status));
    error.status = response.status;
    throw error;
  }
  return body;
}
"""
