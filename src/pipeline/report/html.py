"""The run report: one self-contained HTML file per run (inline CSS and SVG; no script, no
external resource, nothing fetched over the network), written by `ReportObserver` to
`<lake>/_ops/reports/<run_id>.html`.

Sections: header (run id, status, environment, totals), the DAG coloured by step status, a
timeline of the steps, row counts through bronze -> silver (+ quarantined, duplicates) -> gold,
the Kafka consumer lag per partition (kafka mode),
the DQ results (`details["dq"]`, with a link to the Data Docs when they exist), the lineage
graph (from the run's OpenLineage events), the errors of failed steps, and the run's metrics.

This module turns the run's state, lineage and metrics into plain values; the markup is in the
Jinja2 templates beside it (`templates/`, autoescaped: dataset names, file names and error texts
are text, never markup). Both graphs share one layout (`graph.layout`) and one SVG macro.
`render_report` is a pure function of its inputs: the same inputs give the same bytes.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from pipeline.driver.dag import Dag
from pipeline.driver.state import FAILED, PENDING, RUNNING, SKIPPED, SUCCEEDED, RunState, StepOutcome
from pipeline.report.graph import GraphStyle, layout

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
DAG_STYLE = GraphStyle(
    node_w=230, node_h=44, gap_x=70, gap_y=12, top=30, left=10, pad=10, title_y=16, title_size=12
)
LINEAGE_STYLE = GraphStyle(
    node_w=150, node_h=28, gap_x=24, gap_y=8, top=26, left=6, pad=8, title_y=14, title_size=11.5
)
LINEAGE_STATUS = {"COMPLETE": SUCCEEDED, "FAIL": FAILED, "ABORT": FAILED, "START": RUNNING}


# --- small helpers (also the templates' filters) ------------------------------------------------
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


def _oneline(text: str, limit: int) -> str:
    return _clip(" ".join(text.split()), limit)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("pipeline.report", "templates"),
        autoescape=True,  # every value is text: a `<script>` in an error message stays text
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=lambda value: "" if value is None else value,
    )
    env.filters.update(num=_num, seconds=_seconds, clip=_clip)
    return env


# --- sections: plain values for the templates ---------------------------------------------------
def _summary(state: RunState, env: str | None) -> dict:
    counts: dict[str, int] = {}
    for s in state.steps:
        counts[s.status] = counts.get(s.status, 0) + 1
    start, end = _ts(state.started_at), _ts(state.ended_at)
    cards = [
        (_seconds((end - start).total_seconds()) if start and end else "-", "duration"),
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
    return {"cards": cards, "facts": facts}


def _errors(state: RunState) -> dict:
    failed = [
        {
            "step": s.step,
            "status": s.status,
            "kind": s.error_kind or "",
            "attempts": s.attempts,
            "error": s.error or "(no error message)",
            "retries": [
                {
                    "attempt": r.get("attempt"),
                    "error": _clip(str(r.get("error", "")), 300),
                    "wait_s": r.get("wait_s"),
                }
                for r in s.retries
                if isinstance(r, dict)
            ],
        }
        for s in state.steps
        if s.status == FAILED or (s.error and s.status not in (SUCCEEDED, SKIPPED))
    ]
    skipped = [
        (s.step, _oneline(s.error, 200) if s.error else "") for s in state.steps if s.status == SKIPPED
    ]
    return {"failed": failed, "skipped": skipped}


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
        lines.append(f"error ({outcome.error_kind or 'error'}): {_oneline(outcome.error, 400)}")
    return "\n".join(lines)


def _dag(state: RunState, dag: Dag) -> dict:
    names = list(dag.steps) or [s.step for s in state.steps]
    names += [s.step for s in state.steps if s.step not in dag.steps]  # stale state entries
    preds = {n: list(dag.steps[n].depends_on) if n in dag.steps else [] for n in names}
    graph = layout(names, preds, DAG_STYLE)
    titles = [" / ".join(sorted({_step_layer(dag, n) for n in c.nodes})) for c in graph.columns]
    outcomes = {s.step: s for s in state.steps}
    nodes = []
    for name in names:
        outcome = outcomes.get(name)
        status = outcome.status if outcome else NOT_RUN
        if outcome is None:
            sub = "not in this run"
        elif outcome.status == SUCCEEDED:
            sub = f"{outcome.rows_out:,} rows · {outcome.seconds:.1f}s"
        else:
            sub = f"{outcome.status}" + (f" · {outcome.seconds:.1f}s" if outcome.seconds else "")
        stroke, fill = STATUS_COLOURS.get(status, STATUS_COLOURS[PENDING])
        x, y = graph.pos[name]
        nodes.append(
            {
                "name": name,
                "status": status,
                "x": x,
                "y": y,
                "stroke": stroke,
                "fill": fill,
                "tip": _tooltip(outcome, name, dag),
                "label": _clip(name, 30),
                "sub": _clip(sub, 36),
            }
        )
    legend = [
        (label, STATUS_COLOURS[key])
        for key, label in (
            (SUCCEEDED, "succeeded"),
            (FAILED, "failed"),
            (SKIPPED, "skipped"),
            (PENDING, "pending"),
            (RUNNING, "running"),
            (NOT_RUN, "not in this run"),
        )
    ]
    return {"graph": graph, "titles": titles, "nodes": nodes, "legend": legend}


def _nice_step(span: float, target: int = 8) -> float:
    raw = max(span / target, 1e-9)
    for unit in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if unit >= raw:
            return unit
    return 3600 * (int(raw / 3600) + 1)


def _timeline(state: RunState) -> dict | None:
    started = [(s, _ts(s.started_at), _ts(s.ended_at)) for s in state.steps if _ts(s.started_at)]
    if not started:
        return None
    started.sort(key=lambda r: (r[1], r[0].step))
    t0 = min(r[1] for r in started)
    run_end = _ts(state.ended_at)
    t1 = max([*[r[2] for r in started if r[2] is not None], *([run_end] if run_end else []), t0])
    span = max((t1 - t0).total_seconds(), 1.0)
    label_w, bar_w, row_h, top = 220, 880, 24, 26
    width, height = label_w + bar_w + 80, top + len(started) * row_h + 10
    scale = bar_w / span
    tick = _nice_step(span)
    ticks, n = [], 0
    while n * tick <= span + 1e-9:
        ticks.append((label_w + n * tick * scale, _seconds(n * tick) if tick >= 1 else f"{n * tick:.1f}s"))
        n += 1
    rows = []
    for i, (s, start, end) in enumerate(started):
        stop = end if end is not None else t1
        label = f"{s.seconds:.1f}s" if end is not None else "unfinished"
        if s.attempts > 1:
            label += f" · {s.attempts} attempts"
        x = label_w + (start - t0).total_seconds() * scale
        w = max((stop - start).total_seconds() * scale, 2.0)
        rows.append(
            {
                "step": s.step,
                "status": s.status,
                "colour": STATUS_COLOURS.get(s.status, STATUS_COLOURS[PENDING])[0],
                "tip": f"{s.step}: {s.status}\n{s.started_at} → {s.ended_at or '-'}\n{label}",
                "name": _clip(s.step, 32),
                "y": top + i * row_h,
                "x": x,
                "w": w,
                "label": label,
            }
        )
    return {
        "width": width,
        "height": height,
        "top": top,
        "label_w": label_w,
        "row_h": row_h,
        "ticks": ticks,
        "rows": rows,
    }


def _balance(s: StepOutcome, q: int | None, d: int | None) -> tuple[str, str]:
    """(kind, text) of a silver step's `in = out + quarantined + duplicates` check."""
    if s.status != SUCCEEDED:
        return "status", s.status
    if q is None and d is None:
        return "unknown", ""
    gap = s.rows_in - s.rows_out - (q or 0) - (d or 0)
    return ("balanced", "") if gap == 0 else ("gap", f"{gap:+,}")


def _rows(state: RunState, dag: Dag) -> dict:
    outcomes = {s.step: s for s in state.steps}
    in_run = [s.step for s in state.steps]
    silver = [n for n in in_run if _step_layer(dag, n) == "silver"]
    bronze = [n for n in in_run if _step_layer(dag, n) == "bronze"]
    gold = [n for n in in_run if _step_layer(dag, n) == "gold"]
    consumers: dict[str, list[str]] = {}
    for g in gold:
        for dep in dag.steps[g].depends_on if g in dag.steps else []:
            consumers.setdefault(dep, []).append(g)
    flows, used_bronze = [], set()
    for name in silver:
        s = outcomes[name]
        ups = [d for d in (dag.steps[name].depends_on if name in dag.steps else []) if d in outcomes]
        used_bronze.update(ups)
        details = s.details or {}
        q, d = _int(details.get("quarantined")), _int(details.get("duplicates"))
        total = max(s.rows_out + (q or 0) + (d or 0), 1)
        flows.append(
            {
                "bronze": ", ".join(ups) or "-",
                "bronze_rows": _num(sum(outcomes[u].rows_out for u in ups)) if ups else "-",
                "step": s,
                "quarantined": _num(q) if q is not None else "-",
                "duplicates": _num(d) if d is not None else "-",
                "balance": _balance(s, q, d),
                "split": [100 * n / total for n in (s.rows_out, q or 0, d or 0)],
                "feeds": [
                    (
                        g,
                        f"{outcomes[g].rows_out:,}"
                        if outcomes[g].status == SUCCEEDED
                        else outcomes[g].status,
                    )
                    for g in consumers.get(name, [])
                ],
            }
        )
    bronze_only = [outcomes[n] for n in bronze if n not in used_bronze]
    gold_rows = [
        (outcomes[n], ", ".join(dag.steps[n].depends_on if n in dag.steps else []) or "-") for n in gold
    ]
    legend = [
        ("silver rows out", ("#4f8f5b", "#4f8f5b")),
        ("quarantined", ("#d9534f", "#d9534f")),
        ("duplicates dropped", ("#f0ad4e", "#f0ad4e")),
    ]
    return {"flows": flows, "bronze_only": bronze_only, "gold": gold_rows, "legend": legend}


def _kafka_lag(state: RunState) -> list[dict]:
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
            rows.append(
                {
                    "step": s.step,
                    "topic": offsets.get("topic"),
                    "partition": partition,
                    "latest": _num(p.get("latest")),
                    "committed": _num(p.get("committed")),
                    "lag": _num(lag) if lag is not None else "-",
                    "css": "ok" if lag == 0 else "warn" if lag is not None else "muted",
                }
            )
    return rows


def _dq(state: RunState) -> dict:
    rows = []
    for s in state.steps:
        dq = (s.details or {}).get("dq")
        if not isinstance(dq, list):
            continue
        for r in dq:
            if not isinstance(r, dict):
                continue
            passed, severity = r.get("passed"), str(r.get("severity") or "")
            verdict = (
                "passed"
                if passed is True
                else ("failed-critical" if severity == "critical" else "failed")
                if passed is False
                else "unknown"
            )
            rows.append(
                {
                    "step": s.step,
                    "rule": r.get("rule"),
                    "column": r.get("column") or "",
                    "severity": severity,
                    "verdict": verdict,
                    "observed": _num(r.get("observed")),
                    "expected": _num(r.get("expected")),
                }
            )
    return {"rows": rows, "failures": sum(1 for r in rows if r["verdict"].startswith("failed"))}


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


def _lineage(events: list[dict]) -> dict | None:
    nodes, pred_sets = _lineage_graph(events)
    if not nodes:
        return None
    preds = {k: sorted(v) for k, v in pred_sets.items()}
    layer_order = {layer: i for i, layer in enumerate(("landing", "source", *LINEAGE_LAYERS[1:], "other"))}
    ids = sorted(nodes, key=lambda n: (layer_order.get(nodes[n].get("layer", ""), 9), nodes[n]["label"], n))
    graph = layout(ids, preds, LINEAGE_STYLE)
    titles = []
    for column in graph.columns:
        if {nodes[n]["kind"] for n in column.nodes} == {"job"}:
            titles.append("jobs")
        else:
            seen = [nodes[n].get("layer") for n in column.nodes if nodes[n]["kind"] == "dataset"]
            titles.append(" / ".join(dict.fromkeys(str(s) for s in seen)))
    drawn = []
    for node in ids:
        info = nodes[node]
        x, y = graph.pos[node]
        if info["kind"] == "job":
            status = LINEAGE_STATUS.get(info["status"], PENDING)
            colours = STATUS_COLOURS[status]
            tip = f"job {info['full']}\nlast event: {info['status'] or '-'}"
            css = f"lineage-node lineage-job status-{status}"
        else:
            layer, rows = info["layer"], info["rows"]
            colours = LAYER_COLOURS.get(layer, LAYER_COLOURS["other"])
            tip = f"{layer} dataset {info['label']}\n{info['full']}" + (
                f"\nrows written: {rows:,}" if rows is not None else ""
            )
            css = f"lineage-node lineage-dataset layer-{layer}"
        drawn.append(
            {
                "job": info["kind"] == "job",
                "css": css,
                "tip": tip,
                "x": x,
                "y": y,
                "stroke": colours[0],
                "fill": colours[1],
                "label": _clip(info["label"], 23),
                "font_size": 10 if len(info["label"]) > 20 else 11,
            }
        )
    legend = [
        *[(f"{layer} dataset", LAYER_COLOURS[layer]) for layer in LINEAGE_LAYERS],
        ("job completed", STATUS_COLOURS[SUCCEEDED]),
        ("job failed", STATUS_COLOURS[FAILED]),
    ]
    return {
        "graph": graph,
        "titles": titles,
        "nodes": drawn,
        "legend": legend,
        "events": len(events),
        "jobs": sum(1 for n in nodes.values() if n["kind"] == "job"),
        "datasets": sum(1 for n in nodes.values() if n["kind"] == "dataset"),
    }


def _metrics(metrics: list[dict]) -> list[tuple[str, str, str, str]]:
    rows = []
    for m in metrics:
        if not isinstance(m, dict):
            continue
        dims = m.get("dimensions") or {}
        dim_text = (
            ", ".join(f"{k}={v}" for k, v in sorted(dims.items())) if isinstance(dims, dict) else str(dims)
        )
        rows.append((str(m.get("metric", "")), dim_text, _num(m.get("value")), str(m.get("unit", ""))))
    rows.sort(key=lambda r: (r[1], r[0]))
    return rows


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
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            run=state,
            docs=data_docs_href,
            summary=_summary(state, env),
            errors=_errors(state),
            dag=_dag(state, dag),
            timeline=_timeline(state),
            rows=_rows(state, dag),
            kafka=_kafka_lag(state),
            dq=_dq(state),
            lineage=_lineage(list(lineage_events or [])),
            metrics=_metrics(list(metrics or [])),
        )
    )
