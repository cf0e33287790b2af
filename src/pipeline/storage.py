"""File listing and peeking through Hadoop's FileSystem API, so one code path serves local
folders and s3:// (EMRFS on EMR) alike."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import SparkSession


@dataclass(frozen=True, order=True)
class LandingFile:
    uri: str  # URI form, as Spark reports it in _metadata.file_path; the ledger key
    path: str  # Hadoop path form, what readers are given
    size: int


def file_key(uri: str) -> str:
    """One spelling of a file's URI for comparisons: Spark's `_metadata.file_path` says
    `file:/a/b` where the landing listing says `file:///a/b` (the same local file)."""
    if uri.startswith("file:/") and not uri.startswith("file://"):
        return "file://" + uri[len("file:") :]
    return uri


def _fs(spark: SparkSession, location: str):
    jvm = spark.sparkContext._jvm  # type: ignore[union-attr]
    path = jvm.org.apache.hadoop.fs.Path(location)
    return path, path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())  # type: ignore[union-attr]


def list_files(spark: SparkSession, root: str, suffix: str | tuple[str, ...] = "") -> list[LandingFile]:
    """Every file below `root` ending in `suffix` (or one of them), sorted; hidden files (`_`,
    `.`) skipped."""
    path, fs = _fs(spark, root)
    if not fs.exists(path):
        return []
    found = []
    iterator = fs.listFiles(path, True)
    while iterator.hasNext():
        status = iterator.next()
        file_path = status.getPath()
        name = file_path.getName()
        if name.startswith(("_", ".")) or not name.endswith(suffix):
            continue
        found.append(LandingFile(file_path.toUri().toString(), file_path.toString(), status.getLen()))
    return sorted(found)


def first_line(spark: SparkSession, location: str) -> str | None:
    """The first line of a text file (a CSV header), decompressed as Spark would read it
    (`.gz`), or None for an empty file. Invalid UTF-8 reads as U+FFFD."""
    jvm = spark.sparkContext._jvm  # type: ignore[union-attr]
    path, fs = _fs(spark, location)
    stream = fs.open(path)
    codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(
        spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
    ).getCodec(path)
    if codec is not None:
        stream = codec.createInputStream(stream)
    try:
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
        return reader.readLine()
    finally:
        stream.close()


def head_and_tail(spark: SparkSession, location: str, size: int, n: int) -> tuple[bytes, bytes]:
    """The first and the last `n` bytes of a file of `size` bytes (two small reads, e.g. to
    check Parquet's magic numbers without reading the file)."""
    jvm = spark.sparkContext._jvm  # type: ignore[union-attr]
    io = jvm.org.apache.commons.io.IOUtils
    path, fs = _fs(spark, location)
    stream = fs.open(path)
    try:
        head = bytes(io.toByteArray(stream, min(n, size)))
        stream.seek(max(size - n, 0))
        return head, bytes(io.toByteArray(stream, min(n, size)))
    finally:
        stream.close()


def sha256(spark: SparkSession, location: str) -> str:
    """SHA-256 of a file's bytes, hex, streamed in the JVM (the file never crosses into Python)."""
    jvm = spark.sparkContext._jvm  # type: ignore[union-attr]
    digest = jvm.java.security.MessageDigest.getInstance("SHA-256")
    path, fs = _fs(spark, location)
    stream = jvm.java.security.DigestInputStream(fs.open(path), digest)
    try:
        jvm.org.apache.commons.io.IOUtils.consume(stream)
    finally:
        stream.close()
    return bytes(digest.digest()).hex()


def read_text(spark: SparkSession, location: str) -> str:
    """A small text file (a streaming checkpoint entry), whole, as UTF-8."""
    jvm = spark.sparkContext._jvm  # type: ignore[union-attr]
    path, fs = _fs(spark, location)
    stream = fs.open(path)
    try:
        return bytes(jvm.org.apache.commons.io.IOUtils.toByteArray(stream)).decode("utf-8")
    finally:
        stream.close()


def write_text(spark: SparkSession, location: str, text: str) -> None:
    """Write (replace) a small text file, e.g. the run state under <lake>/_ops."""
    path, fs = _fs(spark, location)
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()
