"""What a failed step records: the root cause (the innermost Java exception, not py4j's "An error
occurred while calling o123.parquet."), the dataset, the file and a hint; from a real Spark
failure on a truncated Parquet file, and from Python and text-only errors."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.driver.dag import load_dag
from pipeline.driver.retry import classify, explain
from pipeline.driver.runner import run_steps
from pipeline.driver.state import MemoryStateStore, summary_table
from pipeline.settings import LakeSettings
from pipeline.step_result import StepResult

CORRUPT_HINT = "corrupt or truncated file: fix or remove the file, then rerun"


def truncated_parquet(folder: Path) -> Path:
    """A Parquet file cut in half, as an interrupted unload leaves it (no footer)."""
    folder.mkdir(parents=True)
    path = folder / "part-00000.parquet"
    pq.write_table(pa.table({"id": list(range(500)), "name": [f"n{i}" for i in range(500)]}), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


class ReadsParquet:
    """An executor whose step reads a folder of Parquet files, as bronze reads an unload."""

    name = "fake"

    def __init__(self, spark, folder: Path, schema: str | None):
        self.spark, self.folder, self.schema = spark, folder, schema

    def run(self, step, ctx) -> StepResult:
        reader = self.spark.read.schema(self.schema) if self.schema else self.spark.read
        rows = reader.parquet(str(self.folder)).count()
        return StepResult(rows_in=rows, rows_out=rows)


@pytest.mark.parametrize("schema", [None, "id BIGINT, name STRING"], ids=["schema-inferred", "schema-given"])
def test_a_truncated_parquet_file_is_recorded_with_its_java_cause_file_and_hint(spark, tmp_path, schema):
    path = truncated_parquet(tmp_path / "unload" / "orders")
    dag_file = tmp_path / "pipeline.yaml"
    dag_file.write_text("steps:\n  bronze_snowflake_orders: {job: bronze, dataset: snowflake_orders}\n")
    dag = load_dag(dag_file, {"bronze"})
    ctx = SimpleNamespace(
        run_id="20260102T030405Z-abc123", settings=SimpleNamespace(lake=LakeSettings(root=str(tmp_path)))
    )
    store = MemoryStateStore()

    state = run_steps(
        ctx,
        dag,
        ["bronze_snowflake_orders"],
        io.StringIO(),
        executor=ReadsParquet(spark, path.parent, schema),
        store=store,
        sleep=lambda s: pytest.fail(f"a corrupt file is not worth a retry (waited {s}s)"),
    )

    outcome = store.load(ctx.run_id).step("bronze_snowflake_orders")  # as the state file has it
    assert outcome is not None and (outcome.status, outcome.error_kind, outcome.attempts) == (
        "failed",
        "fatal",
        1,
    )
    error = outcome.error or ""
    assert "An error occurred while calling" not in error  # py4j's wrapper says nothing
    assert error.startswith("bronze snowflake_orders: ")  # the dataset
    assert f"file:{path}" in error  # the file, as Spark names it
    assert error.endswith(f"; hint: {CORRUPT_HINT}")
    assert "\n" not in error and len(error) <= 300
    chain = outcome.details["error_chain"]
    assert "org.apache.spark.SparkException" in chain[0]  # outermost first; Java classes, not py4j's
    assert any(f"file:{path}" in entry for entry in chain)
    assert outcome.details["error_file"] == f"file:{path}"
    # `lakehouse status` clips the table's column but prints the error in full under it
    assert f"bronze_snowflake_orders: {error}" in summary_table(state, full_errors=True).splitlines()


def test_the_real_spark_error_names_the_innermost_java_class_and_stays_fatal(spark, tmp_path):
    path = truncated_parquet(tmp_path / "orders")
    with pytest.raises(Exception) as raised:
        spark.read.parquet(str(path)).count()
    report = explain(raised.value)
    assert report.message.startswith(
        f"java.lang.RuntimeException: file:{path} is not a Parquet file. Expected magic number at tail"
    )
    assert report.chain[-1].startswith("java.lang.RuntimeException: ")
    assert (report.path, report.hint) == (f"file:{path}", CORRUPT_HINT)
    assert classify(raised.value) == "fatal"  # rerunning reads the same broken bytes


def test_a_task_failure_reported_as_text_is_explained_by_its_innermost_cause(spark, tmp_path):
    """A Parquet footer of garbage (magic numbers and length intact) fails while Spark merges the
    schemas, in a task: the job's error carries the task's causes as text only, behind "Exception
    thrown in awaitResult". The explanation is the innermost of them, with a hint (bronze's
    rejection names the file: no message here does)."""
    path = tmp_path / "orders" / "garbled_footer.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"order_id": ["ORD-1", "ORD-2"], "amount": [1.5, 2.5]}), path)
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    data[-8 - footer : -8] = b"\xab" * footer
    path.write_bytes(bytes(data))
    with pytest.raises(Exception) as raised:
        spark.read.option("mergeSchema", "true").parquet(str(path)).count()
    report = explain(raised.value, 500)
    assert "awaitResult" not in report.cause and "can not read FileMetaData" in " ".join(report.chain)
    assert report.cause.startswith(report.chain[-1]) and report.hint == CORRUPT_HINT, report


def test_a_captured_spark_error_is_named_once_with_its_path_and_hint(spark, tmp_path):
    missing = tmp_path / "unload" / "customers"
    with pytest.raises(Exception) as raised:
        spark.read.parquet(str(missing))
    assert type(raised.value).__module__ == "pyspark.errors.exceptions.captured"
    report = explain(raised.value, job="bronze", dataset="snowflake_customers")
    # a long message is shortened in its middle: the step, the error class and the path's end stay
    assert report.message.startswith(
        "bronze snowflake_customers: org.apache.spark.sql.AnalysisException: [PATH_NOT_FOUND] Path does not"
    )
    assert "unload/customers" in report.message
    assert report.message.endswith(
        "; hint: a file is missing: check the path, or what removed it while the step ran, then rerun"
    )
    # pyspark raises it "from None" over the py4j error: the Java cause is listed once
    assert len(report.chain) == len(set(report.chain)) == 1
    assert classify(raised.value) == "fatal"


class TextOnlyPy4JError(Exception):
    """A py4j error whose JVM is gone: only its text, with the Java stack, is left."""

    def __str__(self):
        return (
            "An error occurred while calling o88.save.\n"
            ": org.apache.spark.SparkException: Job aborted.\n"
            "\tat org.apache.spark.sql.execution.datasources.FileFormatWriter$.write(FileFormatWriter.scala:1)\n"
            "Caused by: java.io.IOException: No space left on device\n"
            "\tat java.base/java.io.FileOutputStream.writeBytes(Native Method)\n"
        )


@pytest.mark.parametrize(
    ("exc", "message", "kind"),
    [
        (
            TextOnlyPy4JError(),
            "java.io.IOException: No space left on device; hint: no space left: free disk where Spark spills "
            "(spark.local.dir, /tmp) or on the target volume, then rerun",
            # unchanged: an IOException in text is not one of the transient patterns
            "fatal",
        ),
        (
            PermissionError(13, "Permission denied", "/landing/crm/accounts.csv"),
            "PermissionError: [Errno 13] Permission denied: '/landing/crm/accounts.csv'; hint: permission "
            "denied: grant the run's user or role access to the path (file mode, IAM or bucket policy), then rerun",
            "fatal",
        ),
        (
            RuntimeError(
                "java.io.EOFException: Reached the end of stream with 10 bytes left to read "
                "in s3a://unload/orders/part-7.parquet."
            ),
            "RuntimeError: java.io.EOFException: Reached the end of stream with 10 bytes left to read in "
            f"s3a://unload/orders/part-7.parquet.; hint: {CORRUPT_HINT}",
            "fatal",
        ),
        (
            RuntimeError("java.net.SocketException: Connection reset"),
            "RuntimeError: java.net.SocketException: Connection reset",
            "transient",
        ),
    ],
    ids=["no-space", "permission", "eof-in-s3", "connection-reset"],
)
def test_known_causes_get_a_hint_and_keep_their_classification(exc, message, kind):
    assert explain(exc).message == message
    assert classify(exc) == kind


def test_the_path_is_taken_from_the_message_without_the_sentence_around_it():
    report = explain(RuntimeError("could not read s3://unload/orders/part-7.parquet. Retry later"))
    assert report.path == "s3://unload/orders/part-7.parquet"
    # named once: it is already in the message
    assert report.message.count("s3://unload/orders/part-7.parquet") == 1


def test_a_long_cause_is_clipped_before_the_file_and_the_hint():
    exc = RuntimeError("x" * 1000 + " while reading file:/lake/landing/a.parquet: not a Parquet file")
    report = explain(exc, limit=200)
    assert len(report.message) <= 200
    assert report.message.endswith(f"... (file file:/lake/landing/a.parquet); hint: {CORRUPT_HINT}")


class _Throwable:
    """A py4j JavaObject stand-in: getClass().getName(), getMessage(), getCause()."""

    def __init__(self, name: str, message: str, cause: _Throwable | None = None):
        self._name, self._message, self._cause = name, message, cause

    def getClass(self):  # noqa: N802 - the Java API's names
        return type("Class", (), {"getName": lambda _: self._name})()

    def getMessage(self):  # noqa: N802
        return self._message

    def getCause(self):  # noqa: N802
        return self._cause


def test_an_error_our_code_raised_in_a_jvm_callback_is_named_without_a_file_hint():
    """A foreachBatch function that refuses a micro-batch: the JVM wraps the Python exception in
    py4j's "Python Proxy" error; the recorded cause is the Python exception at the end of the
    traceback, and words in it ("corrupt records") draw no file hint."""
    traceback = (
        "An exception was raised by the Python Proxy. Return Message: Traceback (most recent call last):\n"
        '  File "/work/src/pipeline/bronze/kafka.py", line 300, in write_batch\n'
        "    raise MicroBatchRefused(...)\n"
        "pipeline.bronze.kafka.MicroBatchRefused: kafka_events: micro-batch 3 was not written: "
        "critical rule value:corrupt failed (12 corrupt records)\n"
    )
    proxy = _Throwable("py4j.Py4JException", traceback)
    failed = _Throwable(
        "org.apache.spark.sql.streaming.StreamingQueryException", "[STREAM_FAILED] ...", proxy
    )
    exc = RuntimeError("kafka_events: streaming query failed")
    exc.java_exception = failed
    report = explain(exc, dataset="kafka_events")
    assert report.message.startswith(
        "pipeline.bronze.kafka.MicroBatchRefused: kafka_events: micro-batch 3 was not written"
    )
    assert report.hint is None and "hint" not in report.message
    assert "Python Proxy" not in report.message
