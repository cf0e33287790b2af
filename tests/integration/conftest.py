"""A generated landing zone shared by the integration tests (generated once per session)."""

from __future__ import annotations

import fcntl
import io
import json
import shutil

import pytest

from pipeline.app import local_executor
from pipeline.app.observers import observers_for
from pipeline.driver.dag import load_dag
from pipeline.driver.runner import run_steps
from pipeline.driver.state import LocalStateStore
from pipeline.generate import generate
from pipeline.jobs import JOBS
from tests.helpers import REPO, make_ctx
from tests.kafka_broker import KafkaBroker, create_topic, produce, replay_records

SCALE, SEED, DEFECT_RATE, DAYS = (
    0.02,
    7,
    0.02,
    33,
)  # ~330 landing files; from a Saturday, so orders precede the first FX rate


@pytest.fixture(scope="session")
def generated_landing(tmp_path_factory):
    """A pristine landing zone; tests copy it into their own lake before changing anything."""
    root = tmp_path_factory.mktemp("generated") / "landing"
    generate(root, scale=SCALE, seed=SEED, defect_rate=DEFECT_RATE, days=DAYS)
    return root


@pytest.fixture(scope="session")
def pipeline_run(spark, tmp_path_factory, generated_landing, worker_id):
    """The whole DAG run once on the generated landing zone, shared by the integration tests
    that only read its tables and what its observers wrote (ctx, lake folder, outcome per step,
    as the run state recorded them). Once per session, not per test worker: the first worker to
    need it runs it in the workers' common tmp folder while the others wait, then each reads it."""
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # pytest-xdist: each worker's basetemp is a folder of the common one
        shared = shared.parent
    lake, done = shared / "pipeline_run" / "lake", shared / "pipeline_run" / "done"
    with open(shared / "pipeline_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(lake, ignore_errors=True)  # what a worker that failed mid-run left
            shutil.copytree(generated_landing, lake / "landing")
            ctx = make_ctx(spark, lake, run_id="first")
            dag = load_dag(REPO / "config" / "pipeline.yaml", set(JOBS))
            out = io.StringIO()
            # Watched as `lakehouse run` watches it: lineage, metrics, alerts, Data Docs, report.
            # Two steps at once (spark.parallel_steps 2, each in a session of its own): every
            # test reading this run checks tables written side by side.
            state = run_steps(
                ctx,
                dag,
                dag.order(),
                out,
                observers=observers_for(ctx.settings, dag),
                executor=local_executor(parallel_steps=2),
            )
            assert not state.failed, out.getvalue()
            done.touch()
    state = LocalStateStore(lake / "_ops" / "runs").load("first")
    return make_ctx(spark, lake, run_id="first"), lake, {s.step: s for s in state.steps}


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """One real Kafka broker (KRaft, 127.0.0.1, free ports) for the whole session. A broker that
    cannot start fails the tests that need it, with its log (BrokerError); nothing is skipped."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka-broker")).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_product_events(spark, kafka_broker, generated_landing):
    """The topic `product_events` (3 partitions) holding the generator's product events, produced
    from its replay files with their keys, partitions and timestamps, so each record has the
    replay file's (partition, offset). Read-only for the tests: each uses its own checkpoint.
    Returns (bootstrap servers, topic, the produced records in (partition, offset) order)."""
    topic = "product_events"
    records = replay_records(generated_landing / "kafka" / "product_events")
    create_topic(spark, kafka_broker.bootstrap_servers, topic, partitions=3)
    produce(spark, kafka_broker.bootstrap_servers, topic, records)
    return kafka_broker.bootstrap_servers, topic, records


@pytest.fixture
def fresh_lake(tmp_path, generated_landing):
    lake = tmp_path / "lake"
    shutil.copytree(generated_landing, lake / "landing")
    return lake


def manifest(lake) -> dict:
    return json.loads((lake / "landing" / "_manifest.json").read_text())
