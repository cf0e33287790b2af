"""The run report: a self-contained HTML file (no script, no external resource) with the DAG,
timeline, row counts, DQ, lineage and errors; the observer writes it under the lake."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest

from pipeline.driver.dag import load_dag
from pipeline.driver.state import RunState, StepOutcome
from pipeline.report import ReportObserver, render_report
from pipeline.report.graph import layout
from pipeline.report.html import DAG_STYLE, dataset_layer
from pipeline.settings import LakeSettings, Settings

DAG_YAML = """
steps:
  bronze_orders: {job: bronze, dataset: snowflake_orders}
  bronze_fx: {job: bronze, dataset: fx_rates}
  silver_orders: {job: silver, dataset: orders, depends_on: [bronze_orders]}
  silver_fx: {job: silver, dataset: fx_rates, depends_on: [bronze_fx]}
  gold_fct_orders: {job: gold, dataset: fct_orders, depends_on: [silver_orders, silver_fx]}
  gold_revenue_daily: {job: gold, dataset: revenue_daily, depends_on: [gold_fct_orders]}
"""
EVIL = '<script>alert("x")</script> & friends'


@pytest.fixture()
def dag(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text(DAG_YAML)
    return load_dag(path, {"bronze", "silver", "gold"})


def outcome(step, status, start, end, rows_in=0, rows_out=0, **kw):
    return StepOutcome(
        step,
        status=status,
        attempts=0 if status == "skipped" else 1,
        started_at=start,
        ended_at=end,
        seconds=kw.pop("seconds", 1.0),
        rows_in=rows_in,
        rows_out=rows_out,
        **kw,
    )


def make_state() -> RunState:
    t = "2026-01-02T03:04:{:02d}.000Z".format
    return RunState(
        "20260102T030400Z-abc123",
        [
            outcome("bronze_orders", "succeeded", t(0), t(5), 100, 100, seconds=5.0),
            outcome("bronze_fx", "succeeded", t(5), t(8), 50, 50, seconds=3.0),
            outcome(
                "silver_orders",
                "succeeded",
                t(8),
                t(15),
                100,
                90,
                seconds=7.0,
                details={
                    "quarantined": 6,
                    "duplicates": 4,
                    "dq": [
                        {
                            "rule": "order_id:not_null",
                            "severity": "critical",
                            "passed": True,
                            "observed": 0,
                            "expected": 0,
                            "column": "order_id",
                        },
                        {
                            "rule": "amount:range",
                            "severity": "warning",
                            "passed": False,
                            "observed": 3,
                            "expected": 0,
                            "column": "amount<b>",
                        },
                    ],
                },
            ),
            outcome(
                "silver_fx",
                "failed",
                t(15),
                t(20),
                seconds=5.0,
                error=f"ContractError: {EVIL}",
                error_kind="fatal",
            ),
            outcome(
                "gold_fct_orders", "skipped", None, t(20), error="upstream failed", error_kind="upstream"
            ),
        ],
        status="failed",
        started_at=t(0),
        ended_at=t(21),
    )


def lineage_events(lake: str) -> list[dict]:
    def ds(layer, table, rows=None):
        d = {"namespace": "file", "name": f"{lake}/{layer}/{table}"}
        if rows is not None:
            d["outputFacets"] = {"outputStatistics": {"rowCount": rows}}
        return d

    def event(kind, job, inputs, outputs):
        return {
            "eventType": kind,
            "eventTime": "2026-01-02T03:04:05.000Z",
            "producer": "https://example.invalid/producer",
            "job": {"namespace": "lakehouse", "name": f"pipeline.{job}"},
            "run": {"runId": "x"},
            "inputs": inputs,
            "outputs": outputs,
        }

    return [
        {
            "eventType": "START",
            "job": {"namespace": "lakehouse", "name": "pipeline"},
            "inputs": [],
            "outputs": [],
        },
        event(
            "COMPLETE",
            "bronze_orders",
            [ds("landing", "snowflake/orders")],
            [ds("bronze", "snowflake_orders", 100)],
        ),
        event(
            "COMPLETE",
            "silver_orders",
            [ds("bronze", "snowflake_orders")],
            [ds("silver", "orders", 90), ds("quarantine", "orders", 6)],
        ),
        event("FAIL", "silver_fx", [ds("bronze", "fx_rates")], [ds("silver", "fx_rates")]),
    ]


METRICS = [
    {"metric": "RowsOut", "value": 90, "unit": "Count", "dimensions": {"Dataset": "orders"}, "run_id": "r"},
    {
        "metric": "RunFailed",
        "value": 1,
        "unit": "Count",
        "dimensions": {"Environment": "local"},
        "run_id": "r",
    },
]


def render(dag, tmp_path, **kw):
    return render_report(make_state(), dag, lineage_events(str(tmp_path / "lake")), METRICS, **kw)


def test_report_shows_every_step_with_its_status(dag, tmp_path):
    html = render(dag, tmp_path, env="local")
    for name in dag.steps:
        assert f'data-step="{name}"' in html
    assert 'class="node step status-succeeded" data-step="bronze_orders"' in html
    assert 'class="node step status-failed" data-step="silver_fx"' in html
    assert 'class="node step status-skipped" data-step="gold_fct_orders"' in html
    assert 'class="node step status-not-run" data-step="gold_revenue_daily"' in html
    assert "#c62828" in html and "#2e7d32" in html  # failed red, succeeded green
    assert "20260102T030400Z-abc123" in html and ">failed</span>" in html
    assert "environment</span> local" in html


class PageText(HTMLParser):
    """What a browser shows: the text and the attribute values, and every element's tag."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self.tags: set[str] = set()
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.texts.extend(v for _, v in attrs if v)

    def handle_data(self, data):
        self.texts.append(data)

    def shows(self, text: str) -> bool:
        return any(text in t for t in self.texts)


def test_text_is_escaped_and_nothing_is_loaded_from_outside(dag, tmp_path):
    html = render(dag, tmp_path, data_docs_href="../data_docs/index.html")
    assert "<script" not in html.lower()
    page = PageText(html)
    assert "script" not in page.tags
    assert page.shows(f"ContractError: {EVIL}")  # shown as text, not run
    assert "amount<b>" in page.texts
    loads = re.findall(r"""(?:src|href)\s*=\s*["']?([^"' >]+)""", html, flags=re.I)
    assert loads == ["../data_docs/index.html", "../data_docs/index.html"]
    assert "url(http" not in html and "@import" not in html
    assert "example.invalid" not in html  # the producer URL of the events is not rendered


def test_hostile_names_from_files_lineage_and_retries_stay_text(dag, tmp_path):
    """Dataset and file names come from landing folders and lineage events, errors from
    exceptions and retries: none of them may become markup anywhere in the page."""
    state = make_state()
    state.steps[3].retries = [{"attempt": 1, "error": f"timeout {EVIL}", "wait_s": 2}]
    state.steps[4].error = f"upstream {EVIL}"
    events = lineage_events(str(tmp_path / "lake"))
    hostile_file = '<img src=x onerror="alert(1)">.csv'
    events[1]["inputs"] = [{"namespace": "file", "name": f"/lake/landing/snowflake/{hostile_file}"}]
    metrics = [{**METRICS[0], "dimensions": {"Dataset": EVIL}}]
    html = render_report(state, dag, events, metrics, env=EVIL)
    page = PageText(html)
    assert page.tags.isdisjoint({"script", "img"})
    assert page.shows(f"attempt 1: timeout {EVIL} (waited 2s)")  # the retry
    assert page.shows(f"Dataset={EVIL}")  # the metric's dimensions
    assert page.shows(f"(upstream {EVIL})")  # the skipped step's reason
    assert page.shows("snowflake/<img src=x o\u2026")  # the dataset node, clipped to 23
    assert page.shows(f"landing dataset snowflake/{hostile_file}")  # its tooltip
    assert page.shows(f" {EVIL}")  # the environment in the header


def test_both_graphs_share_one_layout(dag, tmp_path):
    """The DAG and the lineage graph are drawn by one layout: a step's column is its longest
    path from a source, and every edge starts at its predecessor's right side."""
    names = list(dag.steps)
    graph = layout(names, {n: dag.steps[n].depends_on for n in names}, DAG_STYLE)
    columns = {n: i for i, c in enumerate(graph.columns) for n in c.nodes}
    assert columns == {
        "bronze_orders": 0, "bronze_fx": 0, "silver_orders": 1, "silver_fx": 1,
        "gold_fct_orders": 2, "gold_revenue_daily": 3,
    }  # fmt: skip
    html = render(dag, tmp_path)
    dag_svg = html[html.index('id="dag"') : html.index('id="timeline"')]
    lineage_svg = html[html.index('id="lineage"') : html.index('id="metrics"')]
    assert dag_svg.count('marker-end="url(#dag-arrow)"') == len(graph.edges) == 5
    for path in graph.edges:
        assert f'<path d="{path}"' in dag_svg
    x, y = graph.pos["bronze_orders"]
    assert graph.edges[0].startswith(f"M{x + DAG_STYLE.node_w:.1f},{y + DAG_STYLE.node_h / 2:.1f} ")
    # the lineage graph: 3 jobs, 6 datasets, one edge per input and output of each job
    assert lineage_svg.count('marker-end="url(#lineage-arrow)"') == 1 + 1 + 1 + 2 + 1 + 1


def test_timeline_rows_and_dq(dag, tmp_path):
    html = render(dag, tmp_path)
    # a bar for each step that started (gold_fct_orders was skipped: no start)
    assert html.count('class="timeline-bar"') == 4
    assert 'class="bar status-failed" data-step="silver_fx"' in html
    # bronze -> silver flow with quarantine and duplicates, balanced 100 = 90 + 6 + 4
    row = re.search(r"<tr><td class=mono>bronze_orders</td>.*?</tr>", html).group(0)
    assert ">100<" in row and ">90<" in row and ">6<" in row and ">4<" in row and "balanced" in row
    # DQ table: one failed of two
    assert "1 failed</span> of 2 checks" in html
    assert "order_id:not_null" in html and 'class="dq-failed"' in html
    # errors section with the failed step and the skipped one
    errors = html[html.index('id="errors"') :]
    assert "silver_fx" in errors and "fatal" in errors and "gold_fct_orders" in errors
    # no Data Docs link unless given
    assert "data_docs" not in html


def test_lineage_graph_nodes(dag, tmp_path):
    html = render(dag, tmp_path)
    section = html[html.index('id="lineage"') : html.index('id="metrics"')]
    assert section.count("lineage-node lineage-job") == 3  # the pipeline's own START has no datasets
    assert "lineage-job status-failed" in section  # silver_fx: FAIL
    for layer in ("landing", "bronze", "silver", "quarantine"):
        assert f"layer-{layer}" in section
    assert ">snowflake_orders<" in section and ">silver_orders<" in section
    assert "rows written: 6" in section  # the quarantine's output statistics
    assert dataset_layer("file", "/x/lake/quarantine/orders") == ("quarantine", "orders")
    assert dataset_layer("postgres://db:5432", "shop.public.orders") == ("source", "shop.public.orders")


def test_kafka_consumer_lag_per_partition(dag, tmp_path):
    state = make_state()
    offsets = {
        "topic": "product_events",
        "partitions": {
            "10": {"latest": 40, "committed": 40, "lag": 0},
            "0": {"latest": 1_550, "committed": 1_500, "lag": 50},
            "1": {"latest": 7, "committed": 7, "lag": 0},
        },
    }
    state.steps.append(
        outcome(
            "bronze_kafka_events",
            "failed",
            "2026-01-02T03:04:00.000Z",
            "2026-01-02T03:04:09.000Z",
            details={"kafka_offsets": offsets, "kafka_consumer_lag": {"0": 50, "1": 0, "10": 0}},
            error="micro-batch refused",
        )
    )
    html = render_report(state, dag, [], [])
    section = html[html.index('id="kafka-lag"') : html.index('id="dq"')]
    rows = re.findall(r'<tr class="kafka-partition">(.*?)</tr>', section)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]
    assert [c[2:] for c in cells] == [
        ["0", "1,550", "1,500", "50"],
        ["1", "7", "7", "0"],
        ["10", "40", "40", "0"],
    ]
    assert all(c[:2] == ["bronze_kafka_events", "product_events"] for c in cells)
    assert 'class="num warn">50<' in section
    # Replay mode and other steps report no offsets: no section.
    assert 'id="kafka-lag"' not in render(dag, tmp_path)


def test_report_is_deterministic_and_handles_no_lineage(dag, tmp_path):
    assert render(dag, tmp_path) == render(dag, tmp_path)
    html = render_report(make_state(), dag, [], [])
    assert "No lineage events were recorded" in html and 'id="metrics"' not in html


def test_observer_writes_the_report_under_the_lake(dag, tmp_path):
    lake = tmp_path / "lake"
    run_id = "20260102T030400Z-abc123"
    (lake / "_ops" / "lineage").mkdir(parents=True)
    (lake / "_ops" / "lineage" / f"{run_id}.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in lineage_events(str(lake))) + "not json\n"
    )
    (lake / "_ops" / "metrics").mkdir(parents=True)
    (lake / "_ops" / "metrics" / f"{run_id}.jsonl").write_text("".join(json.dumps(m) + "\n" for m in METRICS))
    (lake / "_ops" / "data_docs").mkdir(parents=True)
    (lake / "_ops" / "data_docs" / "index.html").write_text("<html></html>")
    settings = Settings(lake=LakeSettings(root=str(lake)))
    observer = ReportObserver(settings, dag)
    assert observer.last_report_path is None
    ctx = SimpleNamespace(run_id=run_id, settings=settings)
    observer.step_started(ctx, dag.steps["bronze_orders"], make_state().steps[0])
    observer.step_finished(ctx, dag.steps["bronze_orders"], make_state().steps[0])
    observer.run_finished(ctx, make_state())
    path = lake / "_ops" / "reports" / f"{run_id}.html"
    assert observer.last_report_path == str(path)
    html = path.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert 'href="../data_docs/index.html"' in html
    assert "lineage-job status-failed" in html and "2 metric datums" in html
    assert [p.name for p in path.parent.iterdir()] == [f"{run_id}.html"]  # no temporary left


def test_observer_puts_the_report_on_s3(dag):
    class FakeS3:
        def __init__(self):
            self.put = []

        def head_object(self, **kw):
            raise RuntimeError("404")

        def put_object(self, **kw):
            self.put.append(kw)

    client = FakeS3()
    observer = ReportObserver(Settings(lake=LakeSettings(root="s3://bucket/lake")), dag, client=client)
    observer.run_finished(SimpleNamespace(run_id="20260102T030400Z-abc123"), make_state())
    assert observer.last_report_path == "s3://bucket/lake/_ops/reports/20260102T030400Z-abc123.html"
    [put] = client.put
    assert put["Bucket"] == "bucket" and put["Key"] == "lake/_ops/reports/20260102T030400Z-abc123.html"
    assert put["ContentType"] == "text/html" and put["Body"].startswith(b"<!DOCTYPE html>")


def _png_colours(data: bytes) -> int:
    """Distinct byte values in the PNG's decompressed image data (a blank page has a handful)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(idat)))


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not on PATH")
def test_report_renders_in_headless_chromium(dag, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render(dag, tmp_path, env="local"))
    shot = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--window-size=1400,1800",
                f"--screenshot={shot}",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    data = shot.read_bytes()
    assert len(data) > 20_000
    assert _png_colours(data) > 50
