"""Two writers of one table at the same moment, each its own OS process, on the session's local S3
endpoint: no commit may be lost.

delta-rs (`deltalake` 1.6.6, the project's second engine) commits to S3 by writing
`_delta_log/<version>.json` only if absent (S3 conditional writes); a writer that loses the race
for a version retries at the next one. Its DynamoDB log store (S3DynamoDBLogStore's protocol) was
removed in delta-rs 1.0, and delta-spark's `io.delta:delta-storage-s3-dynamodb` is not served by
this project's Maven mirror (docs/runtime_jars.md), so this is the multi-writer protocol that runs
here. The writers are configured as deployments are (lake.engine, lake.storage_options) and write
through the project's lake layer (tests/integration/concurrent_writer.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.lake import open_lake
from pipeline.settings import ConfigError, load_settings
from tests.helpers import REPO
from tests.s3_endpoint import env

pytestmark = pytest.mark.slow

BUCKET = "lakehouse-writers"
TABLE = f"s3a://{BUCKET}/lake/bronze/concurrent_appends"
WRITERS, APPENDS = ("a", "b"), 10
READY_TIMEOUT_S = 180


def writer_config(folder: Path, storage_options: dict[str, str]) -> Path:
    """The project's config with the lake in the bucket, on delta-rs, and a small Spark."""
    config = folder / "config"
    shutil.copytree(REPO / "config", config)
    local = yaml.safe_load((config / "local.yaml").read_text())
    local["lake"] = {"root": f"s3a://{BUCKET}/lake", "engine": "delta-rs", "storage_options": storage_options}
    local["spark"].update(master="local[1]", shuffle_partitions=1, driver_memory="1g", jars=[])
    (config / "local.yaml").write_text(yaml.safe_dump(local, sort_keys=False))
    return config


def test_two_processes_appending_at_once_lose_no_commit(spark, s3_endpoint, tmp_path, monkeypatch):
    for key, value in env().items():
        monkeypatch.setenv(key, value)
    s3_endpoint.create_bucket(BUCKET)
    config = writer_config(tmp_path, s3_endpoint.storage_options())
    settings = load_settings("local", config_dir=config)
    lake = open_lake(settings.lake.engine, spark, settings.lake.storage_options)
    lake.append(TABLE, spark.createDataFrame([], "writer string, seq int"))  # version 0: the table
    assert lake.version(TABLE) == 0

    ready = {w: tmp_path / f"ready-{w}" for w in WRITERS}
    go = tmp_path / "go"
    child_env = {**os.environ, **env(), "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    procs = {
        w: subprocess.Popen(
            [sys.executable, "-m", "tests.integration.concurrent_writer", str(config), TABLE, w, str(APPENDS)]
            + [str(ready[w]), str(go)],
            cwd=REPO,
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for w in WRITERS
    }
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(p.exists() for p in ready.values()):
            dead = {w: p.returncode for w, p in procs.items() if p.poll() is not None}
            assert not dead and time.monotonic() < deadline, (
                f"writers not ready within {READY_TIMEOUT_S} s (exited: {dead}):\n"
                + "\n".join(p.stderr.read().decode()[-2000:] for w, p in procs.items() if w in dead)
            )
            time.sleep(0.05)
        go.touch()  # both start appending at the same moment
        outputs = {w: p.communicate(timeout=300) for w, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    for w, (_, err) in outputs.items():
        assert procs[w].returncode == 0, f"writer {w}:\n{err.decode()[-3000:]}"
    reports = {w: json.loads(out.decode().strip().splitlines()[-1]) for w, (out, _) in outputs.items()}
    assert {r["engine"] for r in reports.values()} == {"delta-rs"}

    # They did write at the same time: each one's appends overlap the other's.
    spans = {w: (r["commits"][0]["started"], r["commits"][-1]["ended"]) for w, r in reports.items()}
    assert max(s for s, _ in spans.values()) < min(e for _, e in spans.values()), spans

    # No commit lost: one version per append, each append's commit exactly once, rows = appends.
    assert lake.version(TABLE) == len(WRITERS) * APPENDS
    commits = sorted(lake.history(TABLE), key=lambda c: c.version)
    assert [c.version for c in commits] == list(range(len(WRITERS) * APPENDS + 1))
    landed = sorted((c.metadata["writer"], c.metadata["seq"]) for c in commits[1:])
    assert landed == sorted((w, i) for w in WRITERS for i in range(APPENDS))
    order = [c.metadata["writer"] for c in commits[1:]]
    assert sum(a != b for a, b in zip(order, order[1:], strict=False)) >= 2, order  # interleaved
    s3_endpoint.configure_spark(spark, BUCKET)
    rows = sorted(tuple(r) for r in lake.read(TABLE).collect())
    assert rows == sorted((w, i) for w in WRITERS for i in range(APPENDS))


def test_delta_rs_refuses_the_dynamodb_log_store_it_no_longer_has(spark):
    options = {"AWS_S3_LOCKING_PROVIDER": "dynamodb", "DELTA_DYNAMO_TABLE_NAME": "lakehouse-dev-delta-log"}
    with pytest.raises(ConfigError) as err:
        open_lake("delta-rs", spark, options)
    message = str(err.value)
    assert "AWS_S3_LOCKING_PROVIDER, DELTA_DYNAMO_TABLE_NAME" in message
    assert "no DynamoDB log store" in message and "lake.engine: delta-spark" in message
