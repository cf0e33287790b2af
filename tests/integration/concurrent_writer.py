"""One writer process of tests/integration/test_s3_concurrent_writers.py: builds its run context
from the configuration folder it is given (SparkSession, lake engine and storage options, as
`lakehouse run` does), says it is ready, waits for the common start signal, then appends one row
per commit through the lake layer and prints what each append did as one JSON object.

    python -m tests.integration.concurrent_writer CONFIG_DIR TABLE WRITER APPENDS READY_FILE GO_FILE
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

START_TIMEOUT_S = 180


def main(config_dir: str, table: str, writer: str, appends: int, ready: str, go: str) -> None:
    from pipeline.context import RunContext
    from pipeline.settings import load_settings

    ctx = RunContext.create(load_settings("local", config_dir=Path(config_dir)), run_id=f"writer-{writer}")
    rows = [ctx.spark.createDataFrame([(writer, i)], "writer string, seq int") for i in range(appends)]
    Path(ready).touch()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not Path(go).exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"writer {writer}: no start signal ({go}) within {START_TIMEOUT_S} s")
        time.sleep(0.01)
    commits = []
    for i, df in enumerate(rows):
        started = time.time()
        ctx.lake.append(table, df, metadata={"writer": writer, "seq": i})
        commits.append({"seq": i, "started": started, "ended": time.time()})
    print(json.dumps({"writer": writer, "engine": ctx.lake.name, "commits": commits}), flush=True)
    ctx.spark.stop()


if __name__ == "__main__":
    config_dir, table, writer, appends, ready, go = sys.argv[1:7]
    main(config_dir, table, writer, int(appends), ready, go)
