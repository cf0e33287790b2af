"""Landing-format readers: files in, one DataFrame of source records out.

Each reader returns the source's own columns plus `_source_file`, `_corrupt_record` (the raw
text of a record that could not be parsed, else null) and `_parse_error` (why). Values stay
as delivered — typing is silver's job — so nothing is lost between landing and bronze.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, DecimalType, StringType, StructField, StructType

from pipeline.catalog import FILE_READERS, CsvOptions, DatasetSpec, audit_clash
from pipeline.storage import (
    LandingFile,
    first_bytes,
    head_and_first_line,
    head_and_tail,
    path_part,
    spark_path,
)

CORRUPT = "_corrupt_record"
ERROR = "_parse_error"
SOURCE_FILE = "_source_file"
PARQUET_MAGIC = b"PAR1"
# Readers whose columns keep the source's types (the others' are text or fixed by the reader).
TYPED_READERS = frozenset({"parquet"})

Reader = Callable[[SparkSession, list[LandingFile], DatasetSpec, str], DataFrame]


class LandingFormatError(ValueError):
    """A landing file cannot be read at all; the message names the dataset and the file."""


def _file_uri() -> Column:
    return F.col("_metadata.file_path")


# A CSV header names columns: identifiers of bounded length. Anything else (binary garbage, a
# data row where the header should be) is not a header, and must not become bronze columns.
HEADER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Read CSV bytes as ISO-8859-1 (one char per byte) so every record's bytes survive the parser;
# they are decoded as UTF-8 afterwards, where invalid bytes can be seen and flagged.
BYTES_AS_TEXT = "ISO-8859-1"


# Files that are not CSV text at all, by their first bytes (as Spark reads them: a `.gz` file
# decompressed): (signature, what the file is, the fix; `{suffix}` is the dataset's file suffix).
# Named only for a file whose first line is no plausible header, so no CSV is refused by them.
NOT_TEXT = (
    (b"\x1f\x8b", "gzip-compressed data", "name it {suffix}.gz, or deliver it uncompressed"),
    (b"PK\x03\x04", "a zip archive", "unzip it and deliver the CSV file itself"),
    (PARQUET_MAGIC, "a Parquet file", "deliver a CSV export (Parquet lands through a parquet dataset)"),
)
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
SNIFF_BYTES = 16  # read with the header line: the signatures above, 8 UTF-16 code units


def csv_header(
    spark: SparkSession, f: LandingFile, spec: DatasetSpec, known: frozenset[str] = frozenset()
) -> tuple[str, ...] | None:
    """A CSV landing file's header (its first line split by the dataset's dialect, or the
    catalogue's `columns` for files without one), or None for a 0-byte file. LandingFormatError
    (naming the dataset and the file) when it is not a plausible header: a name that is not an
    identifier, a blank or repeated name, two names differing only by case, or (given the
    contract's `known` columns) no known column at all, in any case. A file that is not text
    (gzip or zip bytes, Parquet, UTF-16) is named as such, with the fix."""
    dialect = spec.csv
    if not f.size:
        return None
    head = b""
    if dialect.header:
        # Read as UTF-8: names are ASCII identifiers, the same bytes in ISO-8859-1, and any other
        # byte fails the identifier check below in either encoding.
        head, line = head_and_first_line(spark, f.path, SNIFF_BYTES)
        if not line:
            return None
        header = tuple(next(csv.reader([line.lstrip("\ufeff")], **_python_dialect(dialect)), ()))
    else:
        # No header to judge: the first bytes alone tell a file that is not CSV text.
        head = first_bytes(spark, f.path, SNIFF_BYTES)
        not_text = _not_text(head, f.uri, spec)
        if not_text:
            raise LandingFormatError(f"{spec.name}: {f.uri}: {not_text}")
        line, header = ",".join(dialect.columns), tuple(dialect.columns)
    why = _implausible(header, line, known)
    if why:
        raise LandingFormatError(f"{spec.name}: {f.uri}: {_not_text(head, f.uri, spec) or why}")
    return header


def _implausible(header: tuple[str, ...], line: str, known: frozenset[str]) -> str | None:
    """Why `header` (split from `line`) is no CSV header, or None."""
    if len(set(header)) != len(header) or not all(header):
        return f"header has blank or repeated column names: {line[:200]!r}"
    odd = [c for c in header if not HEADER_NAME.fullmatch(c)]
    if odd:
        return (
            f"not a CSV header: {len(odd)} column name(s) are not identifiers "
            f"([A-Za-z_][A-Za-z0-9_]*, at most 128 characters), e.g. {odd[0][:60]!r}; "
            "replace the file with a proper export"
        )
    if clash := audit_clash(header):
        return f"{clash}; rename them in the export"
    spellings: dict[str, list[str]] = defaultdict(list)
    for c in header:
        spellings[c.lower()].append(c)
    twins = next((names for names in spellings.values() if len(names) > 1), None)
    if twins:
        return (
            f"header has column names differing only by case: {' and '.join(map(repr, twins))} "
            "(bronze's column names ignore case, so they would be one column); "
            "rename one of them and export the file again"
        )
    if known and not {k.lower() for k in known}.intersection(spellings):
        return (
            f"not a CSV header: none of its {len(header)} columns is a contract column "
            f"(e.g. {sorted(known)[0]}); replace the file with a proper export"
        )
    return None


def _not_text(head: bytes, uri: str, spec: DatasetSpec) -> str | None:
    """What a file whose first bytes are `head` is, if not CSV text, and the fix; else None."""
    suffix = spec.file_suffix or ".csv"
    for signature, what, fix in NOT_TEXT:
        if head.startswith(signature):
            if uri.lower().endswith(".gz"):  # already decompressed once by its name (in any case)
                return f"not a CSV file: {what} inside a .gz file; compress the CSV text once, as gzip"
            return f"not a CSV file: {what} under a {suffix} name; {fix.format(suffix=suffix)}"
    pairs = head[: len(head) // 2 * 2]
    ascii_utf16 = len(pairs) >= 4 and any(
        all(pairs[i::2]) and not any(pairs[1 - i :: 2]) for i in (0, 1)
    )  # ASCII text in UTF-16 without a byte-order mark: a NUL in every other byte
    if head[:2] in UTF16_BOMS or ascii_utf16:
        encoding = spec.csv.encoding
        return (
            f"not a CSV file bronze can read: UTF-16 text (the dataset's encoding is {encoding}); "
            f"re-export it as {encoding}"
        )
    return None


def _python_dialect(dialect: CsvOptions) -> dict[str, object]:
    """The dialect as Python's csv module spells it (for the header line)."""
    doubled = dialect.escape == dialect.quote
    return {
        "delimiter": dialect.sep,
        "quotechar": dialect.quote or None,
        "quoting": csv.QUOTE_MINIMAL if dialect.quote else csv.QUOTE_NONE,
        "doublequote": doubled,
        "escapechar": None if doubled else dialect.escape,
    }


def read_csv(
    spark: SparkSession, files: list[LandingFile], spec: DatasetSpec, landing_root: str
) -> DataFrame:
    """CRM exports, in the dataset's dialect (`options:` in datasets.yaml). Files are grouped by
    header, so a file with an extra column (schema drift) is read by its own header instead of
    shifting every value one column over. Headers differing only by case (`ACCOUNT_ID,NAME`,
    `account_id,name`) are one group, read under the first file's spelling (bronze's column
    names ignore case; bronze's ingest renames them to its own or the contract's spelling)."""
    dialect = spec.csv
    by_header: dict[tuple[str, ...], list[str]] = defaultdict(list)
    spelling: dict[tuple[str, ...], tuple[str, ...]] = {}
    for f in files:
        header = csv_header(spark, f, spec)
        if header is not None:  # a 0-byte export holds no records
            folded = tuple(c.lower() for c in header)
            spelling.setdefault(folded, header)
            by_header[folded].append(spark_path(f.path))
    frames = []
    for folded, paths in sorted(by_header.items()):
        header = spelling[folded]  # the schema names the fields by position; the header line is skipped
        schema = StructType(
            [StructField(c, StringType()) for c in header] + [StructField(CORRUPT, StringType())]
        )
        df = (
            spark.read.schema(schema)
            .option("header", str(dialect.header).lower())
            .option("multiLine", "true")  # quoted fields may hold newlines
            .option("sep", dialect.sep)
            .option("quote", dialect.quote or "\u0000")  # Spark's spelling of "no quote character"
            .option("escape", dialect.escape)
            .option("encoding", BYTES_AS_TEXT)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT)
            .csv(paths)
        )
        if len(header) > 1:
            # A line of spaces and tabs only is blank, as the empty lines Spark skips: a lone
            # field, it is no record of a file with more columns (it was quarantined as malformed).
            # The first field is read too: Spark refuses a query of the corrupt column alone (a count).
            blank = _blank_line(dialect.sep)
            first = F.col(f"`{header[0]}`")
            df = df.filter(F.col(CORRUPT).isNull() | ~(F.col(CORRUPT).rlike(blank) & first.rlike(blank)))
        malformed = F.when(
            F.col(CORRUPT).isNotNull(),
            F.lit(f"malformed CSV record: field count differs from the header's {len(header)} columns"),
        )
        if dialect.encoding == "UTF-8":
            frames.append(as_utf8(df, header, malformed, dialect.sep))
        else:  # ISO-8859-1 as declared: every byte is a character, nothing to flag
            frames.append(
                df.select(
                    *[f"`{c}`" for c in header],
                    CORRUPT,
                    malformed.alias(ERROR),
                    _file_uri().alias(SOURCE_FILE),
                )
            )
    return _union(spark, frames)


def _blank_line(sep: str) -> str:
    """A record's text holding spaces and tabs only (not the delimiter: tabs are empty fields in
    a tab-separated file); a CRLF line keeps its carriage return."""
    blanks = "".join(c for c in " \t" if c != sep)
    return rf"^[{blanks}]+\r?$"


def as_utf8(df: DataFrame, header: tuple[str, ...], malformed: Column, sep: str) -> DataFrame:
    """Columns read as ISO-8859-1 back to UTF-8 text. A record with invalid UTF-8 bytes keeps its
    values (invalid bytes as U+FFFD), its raw bytes in `_corrupt_record` (base64 of the fields
    joined by the delimiter, or of the whole malformed line) and the reason in `_parse_error`, so silver
    quarantines it instead of taking replaced text for data."""
    # encode(.., latin1) gives the bytes as delivered; as a string they may be invalid UTF-8, which
    # encode(.., 'UTF-8') replaces by U+FFFD: a difference marks invalid bytes.
    raw = {c: F.encode(F.col(f"`{c}`"), BYTES_AS_TEXT).cast("string") for c in (*header, CORRUPT)}
    valid = {c: F.encode(v, "UTF-8") for c, v in raw.items()}
    invalid = [F.when(valid[c] != raw[c].cast("binary"), F.lit(c)) for c in raw]
    bad_columns = F.concat_ws(", ", *invalid)
    # An empty field reads as null, which concat_ws would drop: it joins as '' to keep its place.
    fields = [F.coalesce(raw[c], F.lit("")) for c in header]
    record_bytes = F.coalesce(raw[CORRUPT], F.concat_ws(sep, *fields)).cast("binary")
    bad = bad_columns != ""
    return df.select(
        *[valid[c].cast("string").alias(c) for c in header],
        F.when(bad, F.base64(record_bytes)).otherwise(valid[CORRUPT].cast("string")).alias(CORRUPT),
        F.when(
            bad,
            F.concat(
                F.lit("invalid UTF-8 bytes in "),
                bad_columns,
                F.lit(": _corrupt_record holds the record's raw bytes, base64"),
            ),
        )
        .otherwise(malformed)
        .alias(ERROR),
        _file_uri().alias(SOURCE_FILE),
    )


def check_parquet(spark: SparkSession, f: LandingFile, spec: DatasetSpec) -> None:
    """LandingFormatError unless the file starts and ends with Parquet's magic number and its
    footer length fits: a truncated or overwritten unload fails here without a Spark job."""
    head, tail = head_and_tail(spark, f.path, f.size, 8)
    footer = int.from_bytes(tail[-8:-4], "little") if len(tail) == 8 else -1
    if f.size < 12 or head[:4] != PARQUET_MAGIC or tail[-4:] != PARQUET_MAGIC or footer > f.size - 12:
        raise LandingFormatError(
            f"{spec.name}: {f.uri}: not a complete Parquet file ({f.size} bytes; magic number or "
            "footer missing, e.g. a truncated transfer); unload the file again"
        )


def read_parquet(
    spark: SparkSession, files: list[LandingFile], spec: DatasetSpec, landing_root: str
) -> DataFrame:
    """Snowflake / Redshift unloads. mergeSchema takes added columns; a file with a column of
    another type than bronze's (on a first load, the contract's) is rejected naming it.
    Partition folders (`date=...`, `event_date=...`) become columns; files are read in groups
    of one folder layout, so a file outside the partition folders (at the dataset root) lands
    with null partition columns: read with the others, Spark's partition discovery would
    silently skip it."""
    groups: dict[tuple[str, ...], list[LandingFile]] = defaultdict(list)
    for f in files:
        groups[partition_columns(f.path, landing_root)].append(f)
    frames = [
        _parquet_group(spark, group, spec, landing_root)
        for _, group in sorted(groups.items(), key=lambda g: (-len(g[1]), g[0]))
    ]  # main layout first
    return _union(spark, frames)


def _parquet_group(
    spark: SparkSession, group: list[LandingFile], spec: DatasetSpec, landing_root: str
) -> DataFrame:
    read = (
        spark.read.option("mergeSchema", "true")
        .option("basePath", landing_root)  # keeps partition folders (event_date=...) as columns
        .parquet(*[spark_path(f.path) for f in group])
    )
    if clash := audit_clash(read.columns):
        # Read alone when its batch fails (ingest sets files aside one by one): names the file.
        files = ", ".join(f.uri for f in group[:3]) + (
            f" and {len(group) - 3} more" if len(group) > 3 else ""
        )
        raise LandingFormatError(f"{spec.name}: {files}: {clash}; rename them in the export")
    return (
        read.withColumn(SOURCE_FILE, _file_uri())  # _metadata is the file scan's: before the union
        .withColumn(CORRUPT, F.lit(None).cast("string"))
        .withColumn(ERROR, F.lit(None).cast("string"))
    )


def partition_columns(path: str, landing_root: str) -> tuple[str, ...]:
    """The partition columns Spark's discovery finds in a file's folders below `landing_root`,
    by its rule: `name=value` folders upwards from the file, up to the first other folder above
    one of them (`date=2026-07-01/retry/x.parquet`: date). Spark's discovery keeps one layout:
    a file whose folders name none, read beside files whose folders do, is left out, unread."""
    root = path_part(landing_root).rstrip("/") + "/"
    path = path_part(path)
    if not path.startswith(root):
        return ()
    columns: list[str] = []
    for folder in reversed(path[len(root) :].split("/")[:-1]):
        name, sep, _ = folder.partition("=")
        if sep and name:
            columns.append(name)
        elif columns:
            break
    return tuple(reversed(columns))


# One vendor document as the UDF below returns it: values are the literal text the vendor wrote.
FX_DOCUMENT = (
    "base string, rate_date string, vendor_timestamp string, "
    "rates array<struct<currency: string, rate: string, error: string>>, error string"
)
FX_FIELDS = ("base", "date", "timestamp")  # the document's keys for the first three


class _JsonObject(list):
    """A JSON object as its (key, value) pairs in document order: repeated keys stay visible."""


def _literal(value: object) -> str | None:
    """A scalar as the vendor wrote it (numbers keep their digits); None for JSON null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _kind(value: object) -> str:
    return "an object" if isinstance(value, _JsonObject) else "an array" if isinstance(value, list) else ""


def parse_fx_document(raw: str | None) -> tuple:
    """One vendor FX file -> (base, date, timestamp, [(currency, rate, error)], error), every value
    the literal text of the document: Python's parser keeps a number's digits (1e400, a rate with
    more digits than a double holds) and a repeated key, where Spark's JSON reader rounds through
    a double and keeps one of two currencies. A document that cannot be read gives its reason."""
    text = (raw or "").lstrip("\ufeff")
    if not text.strip():
        return None, None, None, [], "empty JSON file"
    try:
        doc = json.loads(
            text, parse_float=str, parse_int=str, parse_constant=str, object_pairs_hook=_JsonObject
        )
    except ValueError as exc:  # json.JSONDecodeError: the message gives line and column
        return None, None, None, [], f"malformed JSON document: {exc}"
    if not isinstance(doc, _JsonObject):
        return None, None, None, [], f"JSON document is {_kind(doc) or 'a scalar'}, expected one object"
    fields: dict[str, list[object]] = defaultdict(list)
    for key, value in doc:
        fields[key].append(value)
    last = {key: values[-1] for key, values in fields.items()}
    header = [None if _kind(last.get(key)) else _literal(last.get(key)) for key in FX_FIELDS]
    rates = last.get("rates")
    repeated = [key for key in (*FX_FIELDS, "rates") if len(fields[key]) > 1]
    nested = [f"{key} is {_kind(last[key])}" for key in FX_FIELDS if _kind(last.get(key))]
    error = (
        f"JSON document gives {' and '.join(repeated)} more than once"
        if repeated
        else f"JSON document: {'; '.join(nested)}, expected a string"
        if nested
        else f"JSON document: rates is {_kind(rates)}, expected an object of currency: rate"
        if isinstance(rates, list) and not isinstance(rates, _JsonObject)
        else "JSON document has no rates"
        if not rates or not isinstance(rates, _JsonObject)
        else None
    )
    if not isinstance(rates, _JsonObject):
        return (*header, [], error)
    seen = Counter(currency for currency, _ in rates)
    out = []
    for currency, value in rates:
        why = (
            f"rates: currency {currency} given twice"
            if seen[currency] > 1
            else f"rates: currency {currency} is {_kind(value)}, expected a number"
            if _kind(value)
            else None
        )
        out.append((currency, None if _kind(value) else _literal(value), why))
    return (*header, out, error)


def read_fx_json(
    spark: SparkSession, files: list[LandingFile], spec: DatasetSpec, landing_root: str
) -> DataFrame:
    """Vendor FX files: one JSON document per file, exploded to one row per currency; rates
    stay strings so a vendor's "N/A" reaches silver's quarantine instead of vanishing here."""
    if not files:
        return _union(spark, [])
    raw = spark.read.text([spark_path(f.path) for f in files], wholetext=True).select(
        F.col("value").alias("_raw"), _file_uri().alias(SOURCE_FILE)
    )
    parsed = raw.withColumn("_doc", F.udf(parse_fx_document, FX_DOCUMENT)("_raw"))
    rows = parsed.select(
        "_doc.base",
        "_doc.rate_date",
        "_doc.vendor_timestamp",
        F.explode_outer("_doc.rates").alias("_rate"),
        SOURCE_FILE,
        "_raw",
        F.col("_doc.error").alias("_doc_error"),
    )
    error = F.coalesce("_doc_error", "_rate.error")
    return rows.select(
        "base",
        "rate_date",
        "vendor_timestamp",
        F.col("_rate.currency").alias("currency"),
        F.col("_rate.rate").alias("rate"),
        SOURCE_FILE,
        F.when(error.isNotNull(), F.col("_raw")).alias(CORRUPT),
        error.alias(ERROR),
    )


def read_batch(
    spark: SparkSession,
    spec: DatasetSpec,
    files: list[LandingFile],
    landing_root: str,
    voids: Mapping[LandingFile, Mapping[str, DataType]],
) -> DataFrame:
    """The files read as one batch by the dataset's reader, except those in `voids` (file ->
    columns holding no value in it -> bronze's type): each is read alone, those columns as nulls
    of bronze's type. A Parquet column of nulls only is typed by its writer (Spark reads
    pyarrow's null type as int), which no merge with the batch's type takes, yet it fits any."""
    reader = READERS[spec.reader]
    rest = [f for f in files if f not in voids]
    frames = [reader(spark, rest, spec, landing_root)] if rest else []
    frames += [
        reader(spark, [f], spec, landing_root).withColumns(
            {c: F.lit(None).cast(t) for c, t in voids[f].items()}
        )
        for f in files
        if f in voids
    ]
    return _union(spark, frames)


def castable(got: DataType, want: DataType) -> bool:
    """Whether bronze takes a column typed `got` as its type `want` value by value: a decimal of
    another precision at the same scale (Snowflake unloads NUMBER as decimal(38,s) whatever the
    values; a column declared decimal(18,2) holds the same numbers)."""
    return isinstance(got, DecimalType) and isinstance(want, DecimalType) and got.scale == want.scale


def fitted(df: DataFrame, reference: StructType) -> DataFrame:
    """`df` with each column of a `castable` type other than `reference`'s (names matched
    ignoring case) cast to it. A record holding a value that does not fit (1e17 in
    decimal(18,2)) keeps all its values as JSON in `_corrupt_record`, and `_parse_error` names
    the column, the value and the type: silver quarantines it instead of taking a null amount."""
    want = {f.name.lower(): f.dataType for f in reference.fields}
    retype = {
        f.name: want[f.name.lower()]
        for f in df.schema.fields
        if f.dataType != want.get(f.name.lower(), f.dataType) and castable(f.dataType, want[f.name.lower()])
    }
    if not retype:
        return df
    lost = {c: F.col(f"`{c}`").isNotNull() & F.col(f"`{c}`").try_cast(t).isNull() for c, t in retype.items()}
    any_lost = reduce(lambda a, b: a | b, lost.values())
    values = F.to_json(
        F.struct(*[F.col(f"`{c}`") for c in df.columns if c not in (CORRUPT, ERROR, SOURCE_FILE)])
    )
    why = F.concat_ws(
        "; ",
        *[
            F.when(
                lost[c],
                F.concat(
                    F.lit(f"`{c}` value "),
                    F.col(f"`{c}`").cast("string"),
                    F.lit(
                        f" does not fit {t.simpleString()}, bronze's type (the record's values: _corrupt_record)"
                    ),
                ),
            )
            for c, t in retype.items()
        ],
    )
    return df.withColumns(
        {
            **{c: F.col(f"`{c}`").try_cast(t) for c, t in retype.items()},
            CORRUPT: F.when(any_lost, values).otherwise(F.col(CORRUPT)),
            ERROR: F.when(any_lost, why).otherwise(F.col(ERROR)),
        }
    )


def _union(spark: SparkSession, frames: list[DataFrame]) -> DataFrame:
    if not frames:
        empty = StructType([StructField(c, StringType()) for c in (SOURCE_FILE, CORRUPT, ERROR)])
        return spark.createDataFrame([], empty)
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame, allowMissingColumns=True)
    return result


# One function per file reader the catalogue names (pipeline.catalog.FILE_READERS), read_<name>:
# a name without its function fails here, at import, not in a run.
READERS: dict[str, Reader] = {name: globals()[f"read_{name}"] for name in FILE_READERS}
