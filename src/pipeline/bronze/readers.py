"""Landing-format readers: files in, one DataFrame of source records out.

Each reader returns the source's own columns plus `_source_file`, `_corrupt_record` (the raw
text of a record that could not be parsed, else null) and `_parse_error` (why). Values stay
as delivered — typing is silver's job — so nothing is lost between landing and bronze.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from pipeline.catalog import DatasetSpec
from pipeline.storage import LandingFile, first_line

CORRUPT = "_corrupt_record"
ERROR = "_parse_error"
SOURCE_FILE = "_source_file"

Reader = Callable[[SparkSession, list[LandingFile], DatasetSpec, str], DataFrame]


class LandingFormatError(ValueError):
    """A landing file cannot be read at all; the message names the dataset and the file."""


def _file_uri() -> Column:
    return F.col("_metadata.file_path")


def read_csv(
    spark: SparkSession, files: list[LandingFile], spec: DatasetSpec, landing_root: str
) -> DataFrame:
    """CRM exports. Files are grouped by header, so a file with an extra column (schema drift)
    is read by its own header instead of shifting every value one column over."""
    by_header: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for f in files:
        line = first_line(spark, f.path) if f.size else None
        if not line:
            continue  # a 0-byte export holds no records
        header = tuple(next(csv.reader([line.lstrip("\ufeff")])))
        if len(set(header)) != len(header) or not all(header):
            raise LandingFormatError(
                f"{spec.name}: {f.uri}: header has blank or repeated column names: {line!r}"
            )
        by_header[header].append(f.path)
    frames = []
    for header, paths in sorted(by_header.items()):
        schema = StructType(
            [StructField(c, StringType()) for c in header] + [StructField(CORRUPT, StringType())]
        )
        df = (
            spark.read.schema(schema)
            .option("header", "true")
            .option("multiLine", "true")  # quoted fields may hold newlines
            .option("escape", '"')
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT)
            .csv(paths)
        )
        error = F.when(
            F.col(CORRUPT).isNotNull(),
            F.lit(f"malformed CSV record: field count differs from the header's {len(header)} columns"),
        )
        frames.append(df.withColumn(ERROR, error).withColumn(SOURCE_FILE, _file_uri()))
    return _union(spark, frames)


def read_parquet(
    spark: SparkSession, files: list[LandingFile], spec: DatasetSpec, landing_root: str
) -> DataFrame:
    """Snowflake / Redshift unloads. mergeSchema takes added columns; a changed type fails the
    read with Spark's message, which names the column."""
    if not files:
        return _union(spark, [])
    df = (
        spark.read.option("mergeSchema", "true")
        .option("basePath", landing_root)  # keeps partition folders (event_date=...) as columns
        .parquet(*[f.path for f in files])
    )
    return (
        df.withColumn(SOURCE_FILE, _file_uri())
        .withColumn(CORRUPT, F.lit(None).cast("string"))
        .withColumn(ERROR, F.lit(None).cast("string"))
    )


FX_FILE_SCHEMA = "base string, date string, timestamp string, rates map<string,string>"


def read_fx_json(
    spark: SparkSession, files: list[LandingFile], spec: DatasetSpec, landing_root: str
) -> DataFrame:
    """Vendor FX files: one JSON document per file, exploded to one row per currency; rates
    stay strings so a vendor's "N/A" reaches silver's quarantine instead of vanishing here."""
    if not files:
        return _union(spark, [])
    raw = spark.read.text([f.path for f in files], wholetext=True).select(
        F.col("value").alias("_raw"), _file_uri().alias(SOURCE_FILE)
    )
    doc = F.from_json("_raw", FX_FILE_SCHEMA)
    parsed = raw.withColumn("_doc", doc)
    unreadable = F.col("_doc.base").isNull() & F.col("_doc.date").isNull() & F.col("_doc.rates").isNull()
    no_rates = F.coalesce(F.size("_doc.rates"), F.lit(-1)) <= 0
    return parsed.select(
        F.col("_doc.base").alias("base"),
        F.col("_doc.date").alias("rate_date"),
        F.col("_doc.timestamp").alias("vendor_timestamp"),
        F.explode_outer("_doc.rates").alias("currency", "rate"),
        SOURCE_FILE,
        F.when(unreadable | no_rates, F.col("_raw")).alias(CORRUPT),
        F.when(unreadable, F.lit("malformed JSON document"))
        .when(no_rates, F.lit("JSON document has no rates"))
        .alias(ERROR),
    )


def _union(spark: SparkSession, frames: list[DataFrame]) -> DataFrame:
    if not frames:
        empty = StructType([StructField(c, StringType()) for c in (SOURCE_FILE, CORRUPT, ERROR)])
        return spark.createDataFrame([], empty)
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame, allowMissingColumns=True)
    return result


READERS: dict[str, Reader] = {"csv": read_csv, "parquet": read_parquet, "fx_json": read_fx_json}
