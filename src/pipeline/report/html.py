"""The run report: one self-contained HTML file per run (inline CSS and SVG; no script, no
external resource, nothing fetched over the network), written by `ReportObserver` to
`<lake>/_ops/reports/<run_id>.html`.

Sections: header (run id, status, environment, totals), the DAG coloured by step status, a
timeline of the steps, row counts through bronze -> silver (+ quarantined, duplicates) -> gold,
the Kafka consumer lag per partition (kafka mode),
the DQ results (`details["dq"]`, with a link to the Data Docs when they exist), the lineage
graph (from the run's OpenLineage events), the errors of failed steps, and the run's metrics.

`render_report` is a pure function of its inputs: the same inputs give the same bytes.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pipeline.driver.dag import Dag
from pipeline.driver.state import FAILED, PENDING, RUNNING, SKIPPED, SUCCEEDED, RunState, StepOutcome

NOT_RUN = "not-run"  # a DAG step outside this run's selection
STATUS_COLOURS = {  # status -> (stroke, fill)
    SUCCEEDED: ("#2e7d32", "#e3f4e4"),
    FAILED: ("#c62828", "#fde3e3"),
    SKIPPED: ("#b26a00", "#fff1d6"),
    PENDING: ("#607d8b", "#eceff1"),
    RUNNING: ("#1565c0", "#e3eefc"),
    NOT_RUN: ("#b0b7bd", "#fafafa"),
}
LAYER_COLOURS = {  # lineage dataset layer -> (stroke, fill)
    "landing": ("#78909c", "#f1f4f6"),
    "source": ("#78909c", "#f1f4f6"),
    "bronze": ("#8d5524", "#f6e7d8"),
    "silver": ("#546e7a", "#e6edf1"),
    "quarantine": ("#c62828", "#fde3e3"),
    "gold": ("#a07800", "#fff4c2"),
    "other": ("#78909c", "#ffffff"),
}
LINEAGE_LAYERS = ("landing", "bronze", "silver", "quarantine", "gold")
JOB_LAYERS = ("bronze", "silver", "gold")

CSS = """
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif;
  color: #1f2933; background: #f5f7f9; margin: 0; }
main { max-width: 1340px; margin: 0 auto; padding: 20px 24px 40px; }
h1 { font-size: 22px; margin: 0 0 6px; }
h2 { font-size: 17px; margin: 0 0 10px; }
section { background: #fff; border: 1px solid #dde3e8; border-radius: 8px; padding: 16px 18px;
  margin: 0 0 18px; }
.scroll { overflow-x: auto; }
.muted { color: #6b7785; }
.mono, code, pre { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 12px;
  font-weight: 600; border: 1px solid; }
.status-succeeded { color: #2e7d32; background: #e3f4e4; border-color: #2e7d32; }
.status-failed { color: #c62828; background: #fde3e3; border-color: #c62828; }
.status-skipped { color: #b26a00; background: #fff1d6; border-color: #b26a00; }
.status-pending, .status-interrupted { color: #455a64; background: #eceff1; border-color: #607d8b; }
.status-running { color: #1565c0; background: #e3eefc; border-color: #1565c0; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 12px; }
.card { background: #f8fafb; border: 1px solid #e3e8ec; border-radius: 6px; padding: 6px 12px;
  min-width: 120px; }
.card b { display: block; font-size: 17px; }
.card span { font-size: 12px; color: #6b7785; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border-bottom: 1px solid #e6ebef; padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #f3f6f8; font-weight: 600; white-space: nowrap; }
td.nowrap { white-space: nowrap; }
td.wrap { word-break: break-word; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.group td { background: #fafbfc; font-weight: 600; color: #52606d; }
.ok { color: #2e7d32; font-weight: 600; }
.bad { color: #c62828; font-weight: 600; }
.warn { color: #b26a00; font-weight: 600; }
.bar { display: flex; height: 10px; min-width: 110px; margin-top: 4px; border-radius: 3px; overflow: hidden;
  background: #eef1f4; }
.bar i { display: block; height: 100%; }
.bar .out { background: #4f8f5b; } .bar .q { background: #d9534f; } .bar .d { background: #f0ad4e; }
.legend { display: flex; flex-wrap: wrap; gap: 14px; font-size: 12px; color: #52606d; margin: 6px 0 0; }
.legend i { display: inline-block; width: 12px; height: 12px; border: 1px solid; border-radius: 3px;
  vertical-align: -2px; margin-right: 4px; }
pre.error { background: #fff6f6; border: 1px solid #f1c4c4; border-radius: 6px; padding: 10px;
  white-space: pre-wrap; word-break: break-word; margin: 6px 0 14px; max-height: 320px; overflow: auto; }
details summary { cursor: pointer; color: #3a4a5a; }
svg text { font-family: "DejaVu Sans", Arial, sans-serif; }
"""


# --- small helpers ------------------------------------------------------------------------------
def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() and abs(value) >= 1000 else f"{value:,.4g}"
    return str(value)


def _ts(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(round(value)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _rank(nodes: Sequence[str], preds: dict[str, list[str]]) -> dict[str, int]:
    """Longest-path layering (column index) of an acyclic graph; cycles are broken arbitrarily."""
    rank: dict[str, int] = {}
    visiting: set[str] = set()

    def visit(node: str) -> int:
        if node in rank:
            return rank[node]
        if node in visiting:
            return 0
        visiting.add(node)
        rank[node] = 1 + max((visit(p) for p in preds.get(node, []) if p in preds or p in nodes), default=-1)
        visiting.discard(node)
        return rank[node]

    for node in nodes:
        visit(node)
    return rank


def _order_columns(columns: dict[int, list[str]], preds: dict[str, list[str]]) -> None:
    """Order each column by the mean position of the node's predecessors (barycentre), ties by
    the existing order: fewer crossing edges, still deterministic."""
    position: dict[str, float] = {}
    for col in sorted(columns):
        nodes = columns[col]

        def key(item: tuple[int, str]) -> tuple[float, int]:
            index, node = item
            placed = [position[p] for p in preds.get(node, []) if p in position]
            return (sum(placed) / len(placed) if placed else float(index), index)

        columns[col] = [n for _, n in sorted(enumerate(nodes), key=key)]
        for i, node in enumerate(columns[col]):
            position[node] = float(i)


def _edge(x1: float, y1: float, x2: float, y2: float, marker: str, css: str = "") -> str:
    mid = (x1 + x2) / 2
    style = f' class="{css}"' if css else ""
    return (
        f'<path{style} d="M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}" '
        f'fill="none" stroke="#9aa5b1" stroke-width="1.3" marker-end="url(#{marker})"/>'
    )


def _marker(marker: str) -> str:
    return (
        f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#9aa5b1"/>'
        "</marker></defs>"
    )


def _legend(items: Iterable[tuple[str, tuple[str, str]]]) -> str:
    spans = "".join(
        f'<span><i style="border-color:{stroke};background:{fill}"></i>{esc(label)}</span>'
        for label, (stroke, fill) in items
    )
    return f'<div class="legend">{spans}</div>'


# --- sections -----------------------------------------------------------------------------------
def _header(state: RunState, env: str | None, data_docs_href: str | None) -> str:
    counts: dict[str, int] = {}
    for s in state.steps:
        counts[s.status] = counts.get(s.status, 0) + 1
    start, end = _ts(state.started_at), _ts(state.ended_at)
    duration = _seconds((end - start).total_seconds()) if start and end else "-"
    cards = [
        (duration, "duration"),
        (str(len(state.steps)), "steps"),
        *[(str(counts[k]), k) for k in (SUCCEEDED, FAILED, SKIPPED, PENDING, RUNNING) if counts.get(k)],
        (_num(sum(s.rows_in for s in state.steps)), "rows in (all steps)"),
        (_num(sum(s.rows_out for s in state.steps)), "rows out (all steps)"),
        (_num(sum(_int((s.details or {}).get("quarantined")) or 0 for s in state.steps)), "quarantined"),
    ]
    facts = [
        ("environment", env or "-"),
        ("started", state.started_at or "-"),
        ("ended", state.ended_at or "-"),
        ("executor", state.executor or "-"),
        ("host", f"{state.host}" + (f" (pid {state.pid})" if state.pid else "") if state.host else "-"),
    ]
    if state.window and (state.window.get("start") or state.window.get("end")):
        facts.append(
            ("window", f"{state.window.get('start') or '...'} to {state.window.get('end') or '...'}")
        )
    if state.resumes:
        facts.append(("resumed", f"{len(state.resumes)}x, last at {state.resumes[-1]}"))
    fact_html = " &middot; ".join(f'<span class="muted">{esc(k)}</span> {esc(v)}' for k, v in facts)
    docs = f' &middot; <a href="{esc(data_docs_href)}">Data Docs</a>' if data_docs_href else ""
    card_html = "".join(f'<div class="card"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for v, k in cards)
    return (
        '<section id="summary">'
        f'<h1>Run <span class="mono">{esc(state.run_id)}</span> '
        f'<span class="badge status-{esc(state.status)}">{esc(state.status)}</span></h1>'
        f"<div>{fact_html}{docs}</div>"
        f'<div class="cards">{card_html}</div></section>'
    )


def _step_layer(dag: Dag, name: str) -> str:
    step = dag.steps.get(name)
    return step.job if step is not None else "other"


def _tooltip(outcome: StepOutcome | None, step_name: str, dag: Dag) -> str:
    step = dag.steps.get(step_name)
    lines = [step_name]
    if step is not None:
        lines.append(f"{step.job} · {step.dataset}")
        if step.description:
            lines.append(step.description)
    if outcome is None:
        lines.append("not selected in this run")
        return "\n".join(lines)
    lines.append(f"status: {outcome.status} (attempts {outcome.attempts})")
    lines.append(f"rows in {outcome.rows_in:,} · rows out {outcome.rows_out:,} · {outcome.seconds:.1f}s")
    details = outcome.details or {}
    for key in ("quarantined", "duplicates"):
        if _int(details.get(key)) is not None:
            lines.append(f"{key}: {details[key]:,}")
    if outcome.error:
        lines.append(
            f"error ({outcome.error_kind or 'error'}): {_clip(' '.join(outcome.error.split()), 400)}"
        )
    return "\n".join(lines)


def _dag_svg(state: RunState, dag: Dag) -> str:
    names = list(dag.steps) or [s.step for s in state.steps]
    extra = [s.step for s in state.steps if s.step not in dag.steps]  # stale state entries
    names += extra
    preds = {n: list(dag.steps[n].depends_on) if n in dag.steps else [] for n in names}
    rank = _rank(names, preds)
    columns: dict[int, list[str]] = {}
    for name in names:
        columns.setdefault(rank[name], []).append(name)
    _order_columns(columns, preds)
    node_w, node_h, gap_x, gap_y, top, left = 230, 44, 70, 12, 30, 10
    height = top + max(len(c) for c in columns.values()) * (node_h + gap_y) + 10
    width = left + len(columns) * (node_w + gap_x) - gap_x + 10
    pos: dict[str, tuple[float, float]] = {}
    parts = [_marker("dag-arrow")]
    for col in sorted(columns):
        x = left + col * (node_w + gap_x)
        layers = sorted({_step_layer(dag, n) for n in columns[col]})
        parts.append(
            f'<text x="{x + node_w / 2:.0f}" y="16" text-anchor="middle" font-size="12" '
            f'font-weight="600" fill="#52606d">{esc(" / ".join(layers))}</text>'
        )
        for i, name in enumerate(columns[col]):
            pos[name] = (x, top + i * (node_h + gap_y))
    for name in names:
        for dep in preds[name]:
            if dep in pos:
                (x1, y1), (x2, y2) = pos[dep], pos[name]
                parts.append(_edge(x1 + node_w, y1 + node_h / 2, x2 - 2, y2 + node_h / 2, "dag-arrow"))
    outcomes = {s.step: s for s in state.steps}
    for name in names:
        x, y = pos[name]
        outcome = outcomes.get(name)
        status = outcome.status if outcome else NOT_RUN
        stroke, fill = STATUS_COLOURS.get(status, STATUS_COLOURS[PENDING])
        dash = ' stroke-dasharray="4 3"' if status == NOT_RUN else ""
        if outcome is None:
            sub = "not in this run"
        elif outcome.status == SUCCEEDED:
            sub = f"{outcome.rows_out:,} rows · {outcome.seconds:.1f}s"
        else:
            sub = f"{outcome.status}" + (f" · {outcome.seconds:.1f}s" if outcome.seconds else "")
        parts.append(
            f'<g class="node step status-{esc(status)}" data-step="{esc(name)}">'
            f"<title>{esc(_tooltip(outcome, name, dag))}</title>"
            f'<rect x="{x}" y="{y}" width="{node_w}" height="{node_h}" rx="6" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="{1.2 if status == NOT_RUN else 2}"{dash}/>'
            f'<text x="{x + 10}" y="{y + 18}" font-size="12.5" font-weight="600" '
            f'fill="{"#8a949e" if status == NOT_RUN else "#1f2933"}">{esc(_clip(name, 30))}</text>'
            f'<text x="{x + 10}" y="{y + 35}" font-size="11" fill="{stroke}">{esc(_clip(sub, 36))}</text>'
            "</g>"
        )
    legend = _legend(
        (label, STATUS_COLOURS[key])
        for key, label in (
            (SUCCEEDED, "succeeded"),
            (FAILED, "failed"),
            (SKIPPED, "skipped"),
            (PENDING, "pending"),
            (RUNNING, "running"),
            (NOT_RUN, "not in this run"),
        )
    )
    return (
        '<section id="dag"><h2>Pipeline DAG</h2><div class="scroll">'
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="pipeline DAG">{"".join(parts)}</svg>'
        f"</div>{legend}</section>"
    )


def _nice_step(span: float, target: int = 8) -> float:
    raw = max(span / target, 1e-9)
    for unit in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if unit >= raw:
            return unit
    return 3600 * (int(raw / 3600) + 1)


def _timeline_svg(state: RunState) -> str:
    rows = []
    for s in state.steps:
        start, end = _ts(s.started_at), _ts(s.ended_at)
        if start is not None:
            rows.append((s, start, end))
    if not rows:
        return '<section id="timeline"><h2>Timeline</h2><p class="muted">No step started.</p></section>'
    rows.sort(key=lambda r: (r[1], r[0].step))
    t0 = min(r[1] for r in rows)
    ends = [r[2] for r in rows if r[2] is not None]
    run_end = _ts(state.ended_at)
    t1 = max([*ends, *([run_end] if run_end else []), t0])
    span = max((t1 - t0).total_seconds(), 1.0)
    label_w, bar_w, row_h, top = 220, 880, 24, 26
    width, height = label_w + bar_w + 80, top + len(rows) * row_h + 10
    scale = bar_w / span
    parts = []
    tick = _nice_step(span)
    n = 0
    while n * tick <= span + 1e-9:
        x = label_w + n * tick * scale
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 6}" stroke="#e6ebef"/>'
            f'<text x="{x:.1f}" y="{top - 9}" font-size="10.5" text-anchor="middle" fill="#6b7785">'
            f"{esc(_seconds(n * tick) if tick >= 1 else f'{n * tick:.1f}s')}</text>"
        )
        n += 1
    for i, (s, start, end) in enumerate(rows):
        y = top + i * row_h
        stroke, fill = STATUS_COLOURS.get(s.status, STATUS_COLOURS[PENDING])
        x = label_w + (start - t0).total_seconds() * scale
        stop = end if end is not None else t1
        w = max((stop - start).total_seconds() * scale, 2.0)
        label = f"{s.seconds:.1f}s" if end is not None else "unfinished"
        if s.attempts > 1:
            label += f" · {s.attempts} attempts"
        tip = f"{s.step}: {s.status}\n{s.started_at} → {s.ended_at or '-'}\n{label}"
        parts.append(
            f'<g class="bar status-{esc(s.status)}" data-step="{esc(s.step)}"><title>{esc(tip)}</title>'
            f'<text x="{label_w - 8}" y="{y + 15}" font-size="12" text-anchor="end" fill="#1f2933">'
            f"{esc(_clip(s.step, 32))}</text>"
            f'<rect class="timeline-bar" x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" rx="3" '
            f'fill="{stroke}" fill-opacity="0.85"/>'
            f'<text x="{x + w + 6:.1f}" y="{y + 15}" font-size="11" fill="#52606d">{esc(label)}</text></g>'
        )
    return (
        '<section id="timeline"><h2>Timeline</h2><div class="scroll">'
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="step timeline">{"".join(parts)}</svg>'
        "</div></section>"
    )


def _status_badge(status: str) -> str:
    return f'<span class="badge status-{esc(status)}">{esc(status)}</span>'


def _rows_section(state: RunState, dag: Dag) -> str:
    outcomes = {s.step: s for s in state.steps}
    in_run = [s.step for s in state.steps]
    silver = [n for n in in_run if _step_layer(dag, n) == "silver"]
    bronze = [n for n in in_run if _step_layer(dag, n) == "bronze"]
    gold = [n for n in in_run if _step_layer(dag, n) == "gold"]
    head = (
        "<tr><th>bronze step</th><th class=num>bronze rows<br>written</th><th>silver step</th>"
        "<th class=num>silver<br>rows in</th><th class=num>silver<br>rows out</th><th class=num>quarantined</th>"
        "<th class=num>duplicates</th><th>balance</th><th>split</th><th>feeds gold</th></tr>"
    )
    body = []
    used_bronze: set[str] = set()
    consumers: dict[str, list[str]] = {}
    for g in gold:
        for dep in dag.steps[g].depends_on if g in dag.steps else []:
            consumers.setdefault(dep, []).append(g)
    for name in silver:
        s = outcomes[name]
        ups = [d for d in (dag.steps[name].depends_on if name in dag.steps else []) if d in outcomes]
        used_bronze.update(ups)
        b_rows = sum(outcomes[u].rows_out for u in ups) if ups else None
        details = s.details or {}
        q, d = _int(details.get("quarantined")), _int(details.get("duplicates"))
        if s.status != SUCCEEDED:
            balance = _status_badge(s.status)
        elif q is None and d is None:
            balance = '<span class="muted">-</span>'
        else:
            gap = s.rows_in - s.rows_out - (q or 0) - (d or 0)
            balance = (
                '<span class="ok" title="rows in = out + quarantined + duplicates">&#10003; balanced</span>'
                if gap == 0
                else f'<span class="warn" title="rows in - out - quarantined - duplicates">'
                f"{esc(f'{gap:+,}')} unaccounted</span>"
            )
        total = max(s.rows_out + (q or 0) + (d or 0), 1)
        split = (
            '<div class="bar" title="out / quarantined / duplicates">'
            f'<i class="out" style="width:{100 * s.rows_out / total:.2f}%"></i>'
            f'<i class="q" style="width:{100 * (q or 0) / total:.2f}%"></i>'
            f'<i class="d" style="width:{100 * (d or 0) / total:.2f}%"></i></div>'
        )
        feeds = ", ".join(
            f"{esc(g)} ({outcomes[g].rows_out:,})"
            if outcomes[g].status == SUCCEEDED
            else f"{esc(g)} ({esc(outcomes[g].status)})"
            for g in consumers.get(name, [])
        )
        body.append(
            f"<tr><td class=mono>{esc(', '.join(ups) or '-')}</td>"
            f"<td class=num>{esc(_num(b_rows)) if b_rows is not None else '-'}</td>"
            f"<td class=mono>{esc(name)}</td><td class=num>{s.rows_in:,}</td><td class=num>{s.rows_out:,}</td>"
            f"<td class=num>{esc(_num(q)) if q is not None else '-'}</td>"
            f"<td class=num>{esc(_num(d)) if d is not None else '-'}</td>"
            f'<td class=nowrap>{balance}</td><td>{split}</td><td class="mono wrap">{feeds or "-"}</td></tr>'
        )
    for name in bronze:
        if name not in used_bronze:
            s = outcomes[name]
            body.append(
                f"<tr><td class=mono>{esc(name)}</td><td class=num>{s.rows_out:,}</td>"
                '<td class=muted colspan="8">no silver step of this bronze table in this run</td></tr>'
            )
    flow = (
        f"<table>{head}{''.join(body)}</table>"
        + _legend(
            [
                ("silver rows out", ("#4f8f5b", "#4f8f5b")),
                ("quarantined", ("#d9534f", "#d9534f")),
                ("duplicates dropped", ("#f0ad4e", "#f0ad4e")),
            ]
        )
        if body
        else '<p class="muted">No bronze or silver step in this run.</p>'
    )
    gold_rows = []
    for name in gold:
        s = outcomes[name]
        deps = dag.steps[name].depends_on if name in dag.steps else []
        gold_rows.append(
            f"<tr><td class=mono>{esc(name)}</td><td>{_status_badge(s.status)}</td>"
            f"<td class=mono>{esc(', '.join(deps) or '-')}</td>"
            f"<td class=num>{s.rows_in:,}</td><td class=num>{s.rows_out:,}</td>"
            f"<td class=num>{s.seconds:.1f}s</td></tr>"
        )
    gold_html = (
        "<h3>Gold</h3><table><tr><th>gold step</th><th>status</th><th>inputs</th>"
        f"<th class=num>rows in</th><th class=num>rows out</th><th class=num>time</th></tr>{''.join(gold_rows)}</table>"
        if gold_rows
        else ""
    )
    return (
        '<section id="rows"><h2>Rows through the layers</h2>'
        '<h3>Bronze &rarr; silver</h3><div class="scroll">'
        f"{flow}</div>{gold_html}</section>"
    )


def _kafka_lag_section(state: RunState) -> str:
    """Per Kafka partition of a stream step (`details["kafka_offsets"]`, kafka mode): the newest
    offset on the broker, the offset the query committed, and the lag between them."""
    rows = []
    for s in state.steps:
        offsets = (s.details or {}).get("kafka_offsets")
        if not isinstance(offsets, dict) or not isinstance(offsets.get("partitions"), dict):
            continue
        partitions = sorted(offsets["partitions"].items(), key=lambda kv: (len(kv[0]), kv[0]))
        for partition, p in partitions:
            if not isinstance(p, dict):
                continue
            lag = _int(p.get("lag"))
            css = "ok" if lag == 0 else "warn" if lag is not None else "muted"
            rows.append(
                f'<tr class="kafka-partition"><td class=mono>{esc(s.step)}</td>'
                f"<td class=mono>{esc(offsets.get('topic'))}</td><td class=num>{esc(partition)}</td>"
                f"<td class=num>{esc(_num(p.get('latest')))}</td>"
                f"<td class=num>{esc(_num(p.get('committed')))}</td>"
                f'<td class="num {css}">{esc(_num(lag)) if lag is not None else "-"}</td></tr>'
            )
    if not rows:
        return ""
    return (
        '<section id="kafka-lag"><h2>Kafka consumer lag</h2>'
        '<p class="muted">When the stream step ended: per partition, the newest offset on the broker, '
        "the offset the query committed to its checkpoint (written to bronze), and the records between "
        "them (metric KafkaConsumerLag).</p>"
        "<table><tr><th>step</th><th>topic</th><th class=num>partition</th><th class=num>latest offset</th>"
        f"<th class=num>committed offset</th><th class=num>lag (records)</th></tr>{''.join(rows)}</table>"
        "</section>"
    )


def _dq_section(state: RunState, data_docs_href: str | None) -> str:
    docs = (
        f'<p>Great Expectations Data Docs: <a href="{esc(data_docs_href)}">{esc(data_docs_href)}</a></p>'
        if data_docs_href
        else ""
    )
    rows = []
    failures = 0
    for s in state.steps:
        dq = (s.details or {}).get("dq")
        if not isinstance(dq, list):
            continue
        for r in dq:
            if not isinstance(r, dict):
                continue
            passed = r.get("passed")
            severity = str(r.get("severity") or "")
            if passed is False:
                failures += 1
            verdict = (
                '<span class="ok">&#10003; passed</span>'
                if passed is True
                else '<span class="bad">&#10007; failed</span>'
                if passed is False and severity == "critical"
                else '<span class="warn">&#10007; failed</span>'
                if passed is False
                else '<span class="muted">?</span>'
            )
            cls = ' class="dq-failed"' if passed is False else ""
            rows.append(
                f"<tr{cls}><td class=mono>{esc(s.step)}</td><td class=mono>{esc(r.get('rule'))}</td>"
                f"<td class=mono>{esc(r.get('column') or '')}</td><td>{esc(severity)}</td><td>{verdict}</td>"
                f"<td class=num>{esc(_num(r.get('observed')))}</td><td class=num>{esc(_num(r.get('expected')))}</td></tr>"
            )
    if not rows:
        return (
            '<section id="dq"><h2>Data quality</h2>'
            f'<p class="muted">No DQ results were reported by the steps of this run.</p>{docs}</section>'
        )
    summary = (
        f'<p><span class="{"bad" if failures else "ok"}">{failures} failed</span> of {len(rows)} checks.</p>'
    )
    return (
        '<section id="dq"><h2>Data quality</h2>'
        f"{summary}{docs}<table><tr><th>step</th><th>rule</th><th>column</th><th>severity</th><th>result</th>"
        f"<th class=num>observed</th><th class=num>expected</th></tr>{''.join(rows)}</table></section>"
    )


def dataset_layer(namespace: str, name: str) -> tuple[str, str]:
    """(layer, table) of an OpenLineage dataset named by its lake location; JDBC tables and
    Kafka topics (namespaces other than file / s3 / hdfs ...) are sources (drawn as landing)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] in LINEAGE_LAYERS:
            return parts[i], "/".join(parts[i + 1 :])
    if namespace.split("://")[0] in ("postgres", "redshift", "mysql", "sqlserver", "kafka"):
        return "source", parts[-1] if parts else name
    return "other", parts[-1] if parts else name


def _lineage_graph(events: list[dict]) -> tuple[dict[str, dict], dict[str, set[str]]]:
    """Nodes (id -> {kind, label, layer, status, ...}) and predecessor sets from RunEvents."""
    nodes: dict[str, dict] = {}
    preds: dict[str, set[str]] = {}
    for event in events:
        if not isinstance(event, dict):
            continue
        job = event.get("job") or {}
        job_name = str(job.get("name") or "")
        inputs = [d for d in event.get("inputs") or [] if isinstance(d, dict)]
        outputs = [d for d in event.get("outputs") or [] if isinstance(d, dict)]
        if not job_name or (not inputs and not outputs):
            continue
        job_id = f"job:{job.get('namespace', '')}/{job_name}"
        node = nodes.setdefault(
            job_id,
            {"kind": "job", "label": job_name.removeprefix("pipeline."), "full": job_name, "status": ""},
        )
        event_type = str(event.get("eventType") or "")
        if event_type in ("COMPLETE", "FAIL", "ABORT") or not node["status"]:
            node["status"] = event_type
        preds.setdefault(job_id, set())
        for ds, is_input in [(d, True) for d in inputs] + [(d, False) for d in outputs]:
            namespace, name = str(ds.get("namespace", "")), str(ds.get("name", ""))
            ds_id = f"ds:{namespace}/{name}"
            layer, table = dataset_layer(namespace, name)
            entry = nodes.setdefault(
                ds_id,
                {
                    "kind": "dataset",
                    "label": table,
                    "full": f"{namespace} {name}",
                    "layer": layer,
                    "rows": None,
                },
            )
            preds.setdefault(ds_id, set())
            if is_input:
                preds[job_id].add(ds_id)
            else:
                preds[ds_id].add(job_id)
                stats = (ds.get("outputFacets") or {}).get("outputStatistics") or {}
                if _int(stats.get("rowCount")) is not None:
                    entry["rows"] = int(stats["rowCount"])
    return nodes, preds


def _lineage_svg(events: list[dict]) -> str:
    nodes, pred_sets = _lineage_graph(events)
    if not nodes:
        return (
            '<section id="lineage"><h2>Lineage</h2>'
            '<p class="muted">No lineage events were recorded for this run '
            "(lineage transport none or http, or no step ran).</p></section>"
        )
    preds = {k: sorted(v) for k, v in pred_sets.items()}
    layer_order = {layer: i for i, layer in enumerate(("landing", "source", *LINEAGE_LAYERS[1:], "other"))}
    ids = sorted(
        nodes,
        key=lambda n: (layer_order.get(nodes[n].get("layer", ""), 9), nodes[n]["label"], n),
    )
    rank = _rank(ids, preds)
    columns: dict[int, list[str]] = {}
    for node in ids:
        columns.setdefault(rank[node], []).append(node)
    _order_columns(columns, preds)
    node_w, node_h, gap_x, gap_y, top, left = 150, 28, 24, 8, 26, 6
    height = top + max(len(c) for c in columns.values()) * (node_h + gap_y) + 8
    width = left + len(columns) * (node_w + gap_x) - gap_x + 8
    pos: dict[str, tuple[float, float]] = {}
    parts = [_marker("lineage-arrow")]
    for col in sorted(columns):
        x = left + col * (node_w + gap_x)
        kinds = {nodes[n]["kind"] for n in columns[col]}
        if kinds == {"job"}:
            title = "jobs"
        else:
            seen = [nodes[n].get("layer") for n in columns[col] if nodes[n]["kind"] == "dataset"]
            title = " / ".join(dict.fromkeys(str(s) for s in seen))
        parts.append(
            f'<text x="{x + node_w / 2:.0f}" y="14" text-anchor="middle" font-size="11.5" '
            f'font-weight="600" fill="#52606d">{esc(title)}</text>'
        )
        for i, node in enumerate(columns[col]):
            pos[node] = (x, top + i * (node_h + gap_y))
    for node in ids:
        for p in preds.get(node, []):
            if p in pos:
                (x1, y1), (x2, y2) = pos[p], pos[node]
                parts.append(_edge(x1 + node_w, y1 + node_h / 2, x2 - 2, y2 + node_h / 2, "lineage-arrow"))
    for node in ids:
        x, y = pos[node]
        info = nodes[node]
        if info["kind"] == "job":
            status = {"COMPLETE": SUCCEEDED, "FAIL": FAILED, "ABORT": FAILED, "START": RUNNING}.get(
                info["status"], PENDING
            )
            stroke, fill = STATUS_COLOURS[status]
            tip = f"job {info['full']}\nlast event: {info['status'] or '-'}"
            shape = (
                f'<rect x="{x}" y="{y}" width="{node_w}" height="{node_h}" rx="{node_h / 2}" '
                f'fill="{fill}" stroke="{stroke}" stroke-width="1.6"/>'
            )
            css = f"lineage-node lineage-job status-{status}"
            text_fill = "#1f2933"
        else:
            layer = info["layer"]
            stroke, fill = LAYER_COLOURS.get(layer, LAYER_COLOURS["other"])
            rows = info["rows"]
            tip = f"{layer} dataset {info['label']}\n{info['full']}" + (
                f"\nrows written: {rows:,}" if rows is not None else ""
            )
            shape = (
                f'<rect x="{x}" y="{y}" width="{node_w}" height="{node_h}" rx="3" '
                f'fill="{fill}" stroke="{stroke}" stroke-width="1.4"/>'
            )
            css = f"lineage-node lineage-dataset layer-{esc(layer)}"
            text_fill = "#1f2933"
        parts.append(
            f'<g class="{css}"><title>{esc(tip)}</title>{shape}'
            f'<text x="{x + node_w / 2:.1f}" y="{y + 18}" font-size="{10 if len(info["label"]) > 20 else 11}" text-anchor="middle" '
            f'fill="{text_fill}">{esc(_clip(info["label"], 23))}</text></g>'
        )
    legend = _legend(
        [
            *[(f"{layer} dataset", LAYER_COLOURS[layer]) for layer in LINEAGE_LAYERS],
            ("job completed", STATUS_COLOURS[SUCCEEDED]),
            ("job failed", STATUS_COLOURS[FAILED]),
        ]
    )
    return (
        '<section id="lineage"><h2>Lineage</h2>'
        f'<p class="muted">From the run\'s OpenLineage events: {len(events)} events, '
        f"{sum(1 for n in nodes.values() if n['kind'] == 'job')} jobs, "
        f"{sum(1 for n in nodes.values() if n['kind'] == 'dataset')} datasets. "
        "Hover a node for its full name.</p>"
        '<div class="scroll">'
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="lineage graph">{"".join(parts)}</svg>'
        f"</div>{legend}</section>"
    )


def _errors_section(state: RunState) -> str:
    failed = [
        s for s in state.steps if s.status == FAILED or (s.error and s.status not in (SUCCEEDED, SKIPPED))
    ]
    skipped = [s for s in state.steps if s.status == SKIPPED]
    if not failed and not skipped:
        return ""
    items = []
    for s in failed:
        retries = "".join(
            f"<li>attempt {esc(r.get('attempt'))}: {esc(_clip(str(r.get('error', '')), 300))}"
            f" (waited {esc(r.get('wait_s'))}s)</li>"
            for r in s.retries
            if isinstance(r, dict)
        )
        items.append(
            f'<h3 class="mono">{esc(s.step)} {_status_badge(s.status)} '
            f'<span class="muted">{esc(s.error_kind or "")} · {s.attempts} attempt(s)</span></h3>'
            + (f"<ul>{retries}</ul>" if retries else "")
            + f'<pre class="error">{esc(s.error or "(no error message)")}</pre>'
        )
    if skipped:
        items.append(
            "<p>Skipped: "
            + ", ".join(
                f'<span class="mono">{esc(s.step)}</span>'
                + (
                    f' <span class="muted">({esc(_clip(" ".join(s.error.split()), 200))})</span>'
                    if s.error
                    else ""
                )
                for s in skipped
            )
            + "</p>"
        )
    return f'<section id="errors"><h2>Errors</h2>{"".join(items)}</section>'


def _metrics_section(metrics: list[dict]) -> str:
    rows = []
    for m in metrics:
        if not isinstance(m, dict):
            continue
        dims = m.get("dimensions") or {}
        dim_text = (
            ", ".join(f"{k}={v}" for k, v in sorted(dims.items())) if isinstance(dims, dict) else str(dims)
        )
        rows.append((str(m.get("metric", "")), dim_text, m.get("value"), str(m.get("unit", ""))))
    if not rows:
        return ""
    rows.sort(key=lambda r: (r[1], r[0]))
    body = "".join(
        f"<tr><td class=mono>{esc(name)}</td><td class=mono>{esc(dims)}</td>"
        f"<td class=num>{esc(_num(value))}</td><td>{esc(unit)}</td></tr>"
        for name, dims, value, unit in rows
    )
    return (
        '<section id="metrics"><h2>Metrics</h2>'
        f"<details><summary>{len(rows)} metric datums emitted by this run</summary>"
        "<table><tr><th>metric</th><th>dimensions</th><th class=num>value</th><th>unit</th></tr>"
        f"{body}</table></details></section>"
    )


def render_report(
    state: RunState,
    dag: Dag,
    lineage_events: list[dict],
    metrics: list[dict],
    *,
    env: str | None = None,
    data_docs_href: str | None = None,
) -> str:
    """The report of one run as a self-contained HTML document (no script, no external
    resource). `data_docs_href`: link to the GX Data Docs (relative to the report), when they
    exist; `env`: the settings environment shown in the header."""
    body = "".join(
        [
            _header(state, env, data_docs_href),
            _errors_section(state),
            _dag_svg(state, dag),
            _timeline_svg(state),
            _rows_section(state, dag),
            _kafka_lag_section(state),
            _dq_section(state, data_docs_href),
            _lineage_svg(list(lineage_events or [])),
            _metrics_section(list(metrics or [])),
        ]
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Run {esc(state.run_id)}: {esc(state.status)}</title>"
        f"<style>{CSS}</style></head>"
        f'<body><main>{body}<p class="muted">Pipeline run report &middot; generated from the run state, '
        "lineage and metrics of this run.</p></main></body></html>\n"
    )
