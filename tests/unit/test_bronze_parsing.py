"""Bronze parsing: every landing record comes out, parsed or with its raw text and a reason."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import io
import json
import logging
import re
import shutil
import zipfile
from datetime import date, datetime
from pathlib import Path

import pytest
import yaml
from chispa import assert_df_equality
from pyspark.sql import functions as F

from pipeline.bronze.audit import AUDIT_COLUMNS, with_audit_columns
from pipeline.bronze.ingest import NEWEST, ingest_files, iso_from_micros, newest_event_time
from pipeline.bronze.kafka import parse_kafka_records, replay_timestamp
from pipeline.bronze.readers import LandingFormatError, check_parquet, csv_header, read_csv, read_fx_json
from pipeline.catalog import Catalog, CsvOptions, DatasetSpec, load_catalog
from pipeline.settings import ConfigError
from pipeline.storage import file_key, list_files
from tests.helpers import make_ctx

CSV_SPEC = DatasetSpec(
    source_system="crm", landing="crm/x", reader="csv", description="t", file_suffix=".csv", name="crm_x"
)
FX_SPEC = DatasetSpec(
    source_system="fx", landing="fx", reader="fx_json", description="t", file_suffix=".json", name="fx"
)


def read(spark, reader, spec, folder):
    return reader(spark, list_files(spark, str(folder), spec.file_suffix), spec, str(folder))


def test_csv_keeps_quoted_commas_newlines_and_flags_wrong_field_counts(spark, tmp_path):
    (tmp_path / "a.csv").write_text(
        'id,name,amount\n1,"Smith, Jones & ""Partners""",10\n2,"two\nlines",20\n3,too,many,fields\n4,few\n'
    )
    df = read(spark, read_csv, CSV_SPEC, tmp_path).orderBy("id")
    got = [(r["id"], r["name"], r["_corrupt_record"], r["_parse_error"] is not None) for r in df.collect()]
    assert got == [
        ("1", 'Smith, Jones & "Partners"', None, False),
        ("2", "two\nlines", None, False),
        ("3", "too", "3,too,many,fields", True),
        ("4", "few", "4,few", True),
    ]


def test_a_line_of_spaces_and_tabs_is_blank_and_a_record_with_an_empty_first_field_is_kept(spark, tmp_path):
    """Spark skips an empty line; one of spaces and tabs only (LF or CRLF) is skipped as well,
    not quarantined as a malformed record. A record whose first field is empty or a space is data."""
    (tmp_path / "a.csv").write_bytes(b"id,name\n1,a\n   \n\t\n \t \n,b\n ,c\n2,too,many\n")
    (tmp_path / "b.csv").write_bytes(b"id,name\r\n3,d\r\n  \r\n,e\r\n")
    df = read(spark, read_csv, CSV_SPEC, tmp_path)
    assert df.count() == 6  # as bronze counts a file's rows (a query of no data column)
    got = sorted((r["id"] or "", r["name"] or "", r["_corrupt_record"] or "") for r in df.collect())
    assert got == [
        ("", "b", ""),
        ("", "e", ""),
        (" ", "c", ""),
        ("1", "a", ""),
        ("2", "too", "2,too,many"),
        ("3", "d", ""),
    ]


def test_csv_reads_a_drifted_file_by_its_own_header(spark, tmp_path):
    (tmp_path / "a.csv").write_text("id,name\n1,a\n")
    (tmp_path / "b.csv").write_text("id,name,region\n2,b,EMEA\n")
    (tmp_path / "c.csv").write_text("")  # 0-byte export
    (tmp_path / "d.csv").write_text("id,name\n")  # header only
    df = read(spark, read_csv, CSV_SPEC, tmp_path)
    collected = df.collect()
    assert sorted((r["id"], r["name"], r["region"]) for r in collected) == [
        ("1", "a", None),
        ("2", "b", "EMEA"),
    ]
    assert all(r["_corrupt_record"] is None for r in collected)


def test_csv_with_a_repeated_header_column_is_refused_naming_the_file(spark, tmp_path):
    (tmp_path / "bad.csv").write_text("id,id\n1,2\n")
    with pytest.raises(ValueError, match=r"crm_x: .*bad.csv: header has blank or repeated"):
        read(spark, read_csv, CSV_SPEC, tmp_path)


def test_fx_file_explodes_to_one_row_per_currency_and_keeps_bad_files_raw(spark, tmp_path):
    (tmp_path / "rates_1.json").write_text(
        json.dumps({"base": "USD", "date": "2026-07-01", "rates": {"EUR": 0.9, "GBP": "N/A"}})
    )
    (tmp_path / "rates_2.json").write_text('{"base": "USD", "date": "2026-07-0')
    df = read(spark, read_fx_json, FX_SPEC, tmp_path)
    got = sorted(
        (r["currency"] or "", r["rate"], r["_corrupt_record"], r["_parse_error"]) for r in df.collect()
    )
    assert got == [
        (
            "",
            None,
            '{"base": "USD", "date": "2026-07-0',
            "malformed JSON document: Unterminated string starting at: line 1 column 25 (char 24)",
        ),
        ("EUR", "0.9", None, None),
        ("GBP", "N/A", None, None),
    ]


def test_fx_rates_land_as_the_vendor_wrote_them(spark, tmp_path):
    """Bronze keeps the document's text: digits beyond a double's, an exponent out of a double's
    range and both spellings of NaN reach silver as written (Spark's JSON reader rounds
    1.08500000000000000001 to 1.085, turns 1e400 into "Infinity" and swaps NaN and "NaN")."""
    (tmp_path / "rates_1.json").write_text(
        '\ufeff{"base": "USD", "date": "2026-07-01", "rates": {"EUR": 1.08500000000000000001, '
        '"JPY": 1e400, "CHF": NaN, "GBP": "NaN", "SEK": 0.1e1, "NOK": null}}'
    )
    df = read(spark, read_fx_json, FX_SPEC, tmp_path)
    got = sorted(
        (r["base"], r["rate_date"], r["currency"], r["rate"], r["_parse_error"]) for r in df.collect()
    )
    assert got == [
        ("USD", "2026-07-01", "CHF", "NaN", None),
        ("USD", "2026-07-01", "EUR", "1.08500000000000000001", None),
        ("USD", "2026-07-01", "GBP", "NaN", None),
        ("USD", "2026-07-01", "JPY", "1e400", None),
        ("USD", "2026-07-01", "NOK", None, None),
        ("USD", "2026-07-01", "SEK", "0.1e1", None),
    ]


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (
            '{"base": "USD", "rates": {"EUR": 1}}\n{"base": "USD", "rates": {"GBP": 2}}',
            "malformed JSON document: Extra data: line 2",
        ),
        ('[{"base": "USD", "rates": {"EUR": 1}}]', "JSON document is an array, expected one object"),
        (
            '{"base": "USD", "date": "2026-07-01", "date": "2026-07-02", "rates": {"EUR": 1}}',
            "JSON document gives date more than once",
        ),
        ('{"base": "USD", "rates": [{"EUR": 1}]}', "JSON document: rates is an array, expected an object"),
        (
            '{"base": "USD", "rates": {"EUR": {"bid": 1}}}',
            "rates: currency EUR is an object, expected a number",
        ),
        ("\n  \n", "empty JSON file"),  # a 0-byte file holds no records; this one says why
    ],
)
def test_an_fx_document_that_cannot_be_taken_as_one_set_of_rates_keeps_its_text_and_says_why(
    spark, tmp_path, document, reason
):
    """Two documents in one file, an array, a repeated date, rates in another shape: none lands
    half-read (Spark's reader took the first of two documents and dropped the second)."""
    (tmp_path / "rates_1.json").write_text(document)
    rows = read(spark, read_fx_json, FX_SPEC, tmp_path).collect()
    assert rows and all(r["_parse_error"].startswith(reason) for r in rows), rows
    assert all(r["_corrupt_record"] == document for r in rows)


def test_a_currency_given_twice_in_one_fx_file_is_flagged_not_resolved_by_chance(spark, tmp_path):
    """{"EUR": 0.85, "EUR": 0.95}: which rate the vendor meant is unknown, so both rows go to
    silver as malformed (quarantined with the document); the file's other currencies land."""
    (tmp_path / "rates_1.json").write_text(
        '{"base": "USD", "date": "2026-07-01", "rates": {"EUR": 0.85, "CHF": 0.8, "EUR": 0.95}}'
    )
    df = read(spark, read_fx_json, FX_SPEC, tmp_path)
    got = sorted(
        (r["currency"], r["rate"], r["_corrupt_record"] is not None, r["_parse_error"]) for r in df.collect()
    )
    assert got == [
        ("CHF", "0.8", False, None),
        ("EUR", "0.85", True, "rates: currency EUR given twice"),
        ("EUR", "0.95", True, "rates: currency EUR given twice"),
    ]


def kafka_records(spark, values, replay=None):
    """Records in the sources' shape; `replay`: (partition, _corrupt_record, _parse_error,
    _source_file) of each as a replay file gives it, else the broker's (no file, nothing corrupt)."""
    replay = replay or [(0, None, None, None)] * len(values)
    data = [
        ("product_events", p, i, "2026-07-01 10:00:00", "k", v, *rest)
        for i, (v, (p, *rest)) in enumerate(zip(values, replay, strict=True))
    ]
    schema = (
        "topic string, partition int, offset long, ts string, key string, value string, "
        "_corrupt_record string, _parse_error string, _source_file string"
    )
    return (
        spark.createDataFrame(data, schema).selectExpr("*", "cast(ts as timestamp) as timestamp").drop("ts")
    )


def test_kafka_values_parse_to_event_columns_or_stay_raw_as_corrupt(spark):
    good = json.dumps(
        {
            "event_id": "e1",
            "event_type": "item_viewed",
            "account_id": "ACC-1",
            "event_ts": "2026-07-01T09:59:00Z",
            "properties": {"a": "b"},
            "experiment_id": "x",
        }
    )
    records = kafka_records(spark, [good, '{"event_id": "e2", "event_t', "[1, 2]", None])
    parsed = parse_kafka_records(records).orderBy("offset").collect()
    assert (parsed[0]["event_id"], parsed[0]["properties"], parsed[0]["_corrupt_record"]) == (
        "e1",
        {"a": "b"},
        None,
    )
    assert parsed[0]["_source_file"] == "kafka://product_events/0/0"
    assert str(parsed[0]["kafka_date"]) == "2026-07-01"
    assert [r["_corrupt_record"] for r in parsed[1:3]] == ['{"event_id": "e2", "event_t', "[1, 2]"]
    assert all(r["_parse_error"] == "Kafka value is not a JSON event object" for r in parsed[1:3])
    assert all(r["value"] == r["_corrupt_record"] for r in parsed[1:3])
    # a record without a value (a tombstone) is corrupt as well: silver quarantines it as malformed
    assert (parsed[3]["value"], parsed[3]["_corrupt_record"]) == (None, "")
    assert parsed[3]["_parse_error"].startswith("Kafka record has no value")


def test_a_replay_line_without_kafka_coordinates_names_its_replay_file(spark):
    """A line of a replay file that is not a Kafka record (no partition, say) keeps its raw text
    and says which replay file it came from; a record with its coordinates keeps kafka://."""
    event = json.dumps({"event_id": "e1", "event_type": "item_viewed"})
    file = "file:/landing/kafka/product_events/p9.jsonl"
    raw = '{"topic": "product_events", "partition": "9", "offset": 1}'
    records = kafka_records(
        spark,
        [event, raw],
        replay=[(0, None, None, file), (None, raw, "malformed Kafka replay record", file)],
    )
    parsed = parse_kafka_records(records).orderBy("offset").collect()
    assert [r["_source_file"] for r in parsed] == ["kafka://product_events/0/0", file]
    assert (parsed[1]["_corrupt_record"], parsed[1]["_parse_error"]) == (raw, "malformed Kafka replay record")


def test_a_replay_timestamp_is_epoch_milliseconds_or_iso_8601_text(spark):
    texts = [
        "1790352000000",  # Kafka's own form
        "2026-10-01T07:25:59.122Z",
        "-1000",
        "1500.5",  # not whole milliseconds
        "99999999999999999",  # past year 9999: null, not an ANSI overflow
        "9" * 30,
        "yesterday",
        None,
    ]
    df = spark.createDataFrame([(t,) for t in texts], "t string")
    got = [r[0] for r in df.select(replay_timestamp(F.col("t"))).collect()]
    assert got[:3] == [  # collected in the session's time zone, UTC
        datetime(2026, 9, 25, 16, 0),
        datetime(2026, 10, 1, 7, 25, 59, 122000),
        datetime(1969, 12, 31, 23, 59, 59),
    ]
    assert got[3:] == [None] * 5


def test_audit_columns_are_added_in_a_fixed_order(spark):
    df = spark.createDataFrame(
        [("x", "f", None, None)], "a string, _source_file string, _corrupt_record string, _parse_error string"
    )
    out = with_audit_columns(df, "crm", "run-1:crm")
    assert tuple(out.columns) == ("a", *AUDIT_COLUMNS)
    expected = spark.createDataFrame(
        [("x", "crm", "f", "run-1:crm", None, None)],
        "a string, _source_system string, _source_file string, _batch_id string, _corrupt_record string, _parse_error string",
    )
    assert_df_equality(out.drop("_ingestion_ts"), expected, ignore_nullable=True)


# -- newest_data_at (freshness) -------------------------------------------------------------


def csv_ctx(spark, tmp_path, event_time="updated_at"):
    ctx = make_ctx(spark, tmp_path / "lake")
    ctx.catalog = Catalog({"crm_x": dataclasses.replace(CSV_SPEC, event_time=event_time)})
    landing = tmp_path / "lake" / "landing" / "crm" / "x"
    landing.mkdir(parents=True)
    return ctx, landing


def test_malformed_event_times_are_ignored_not_fatal(spark, tmp_path):
    ctx, landing = csv_ctx(spark, tmp_path)
    (landing / "a.csv").write_text(
        "id,updated_at,name\n"
        "1,2026-07-01T10:00:00Z,a\n"
        "2,yesterday,b\n"
        "3,2026-13-45,c\n"
        "4,99999-01-01,d\n"  # parses, but has no ISO 8601 form: ignored
        "5,,e\n"
        "6,2026-07-09T08:00:00Z,too,many\n"  # a corrupt record's values do not count
    )
    (landing / "b.csv").write_text(
        "id,updated_at,name\n7,31/02/2026,g\n8,2026-07-02T23:59:59.5Z,h\n"
        "9,9999-12-31T00:00:00Z,placeholder\n"  # later than its arrival: would pass freshness for good
        "10,T10:00,no date\n"  # Spark reads it as today at 10:00: no data time at all
    )
    result = ingest_files(ctx, "crm_x")
    assert result.rows_out == 10 and result.details["corrupt_records"] == 1
    newest = datetime.fromisoformat(result.details["newest_data_at"])
    assert newest == datetime.fromisoformat("2026-07-02T23:59:59.500+00:00")


def test_missing_event_time_column_reports_no_newest_data_at(spark, tmp_path, caplog):
    ctx, landing = csv_ctx(spark, tmp_path)
    (landing / "a.csv").write_text("id,name\n1,a\n")  # the export lost its updated_at column
    with caplog.at_level(logging.WARNING, logger="pipeline.bronze.ingest"):
        result = ingest_files(ctx, "crm_x")
    assert result.rows_out == 1 and result.details["newest_data_at"] is None
    assert "event_time column 'updated_at' is not in this batch" in caplog.text

    ctx, landing = csv_ctx(spark, tmp_path / "unparseable")
    (landing / "a.csv").write_text("id,updated_at\n1,N/A\n")
    with caplog.at_level(logging.WARNING, logger="pipeline.bronze.ingest"):
        result = ingest_files(ctx, "crm_x")
    assert result.rows_out == 1 and result.details["newest_data_at"] is None
    assert "no parseable updated_at value" in caplog.text


def test_newest_event_time_of_typed_columns(spark, caplog):
    df = spark.createDataFrame(
        [(date(2026, 7, 1), datetime(2026, 7, 1, 12, 30), 1, None), (None, None, 2, None)],
        "d date, ts timestamp, n int, _corrupt_record string",
    )

    def newest(column):
        agg = newest_event_time(df, "typed", column)
        return None if agg is None else iso_from_micros(df.agg(agg).first()[NEWEST])

    assert newest("d") == "2026-07-01T00:00:00+00:00"
    assert newest("ts") == "2026-07-01T12:30:00+00:00"  # the suite runs with TZ=UTC
    with caplog.at_level(logging.WARNING, logger="pipeline.bronze.ingest"):
        assert newest("n") is None
        assert newest("") is None
    assert "'n' is int, not a string, date or timestamp" in caplog.text


# -- hostile files: implausible headers, invalid UTF-8, truncated Parquet ---------------------


@pytest.mark.parametrize(
    ("first_line", "why"),
    [
        (b"\x89\xfe\x00garbage\xff,\x01\x02\n1,2\n", "not identifiers"),
        (b"1,2026-07-01,abc\n2,2026-07-02,def\n", "not identifiers"),  # a data row, no header
    ],
)
def test_a_csv_without_a_plausible_header_is_refused_naming_the_file(spark, tmp_path, first_line, why):
    (tmp_path / "junk.csv").write_bytes(first_line)
    with pytest.raises(LandingFormatError, match=rf"crm_x: .*junk.csv: not a CSV header: .*{why}"):
        read(spark, read_csv, CSV_SPEC, tmp_path)


def test_a_csv_header_must_name_a_contract_column_when_there_is_a_contract(spark, tmp_path):
    (tmp_path / "a.csv").write_text("foo,bar\n1,2\n")
    (f,) = list_files(spark, str(tmp_path), ".csv")
    assert csv_header(spark, f, CSV_SPEC) == ("foo", "bar")
    assert csv_header(spark, f, CSV_SPEC, frozenset({"bar", "id"})) == ("foo", "bar")
    with pytest.raises(LandingFormatError, match="none of its 2 columns is a contract column"):
        csv_header(spark, f, CSV_SPEC, frozenset({"id", "name"}))
    (tmp_path / "a.csv").write_text("ID,Name\n1,2\n")  # the contract's columns in another case
    (f,) = list_files(spark, str(tmp_path), ".csv")
    assert csv_header(spark, f, CSV_SPEC, frozenset({"id", "name"})) == ("ID", "Name")


def test_an_upper_case_csv_header_lands_under_the_contracts_names(spark, tmp_path):
    """crm_accounts' contract reads `account_id`, `account_name`, ...: an export spelling them in
    upper case (or mixed) lands under those names, each value in its own column, read with the
    files spelled as the contract does."""
    ctx = make_ctx(spark, tmp_path / "lake")
    landing = tmp_path / "lake" / "landing" / "crm" / "accounts"
    landing.mkdir(parents=True)
    (landing / "accounts_20260701.csv").write_text(
        "ACCOUNT_ID,ACCOUNT_NAME,SEGMENT,UPDATED_AT\nACC-000001,Acme,SMB,2026-07-01T00:00:00Z\n"
    )
    (landing / "accounts_20260702.csv").write_text(
        "account_id,account_name,segment,updated_at\nACC-000002,Globex,Enterprise,2026-07-02T00:00:00Z\n"
    )
    (landing / "accounts_20260703.csv").write_text(
        "Segment,Account_Id,Account_Name,Updated_At\nMid-Market,ACC-000003,Initech,2026-07-03T00:00:00Z\n"
    )
    out = ingest_files(ctx, "crm_accounts")
    assert (out.rows_out, out.details["rejected_files"]) == (3, 0)
    assert out.details["newest_data_at"] == "2026-07-03T00:00:00+00:00"
    table = ctx.lake.read(ctx.table_path("bronze", "crm_accounts"))
    assert sorted(c for c in table.columns if not c.startswith("_")) == [
        "account_id",
        "account_name",
        "segment",
        "updated_at",
    ]
    rows = sorted(
        (r["account_id"], r["account_name"], r["segment"], r["_corrupt_record"]) for r in table.collect()
    )
    assert rows == [
        ("ACC-000001", "Acme", "SMB", None),
        ("ACC-000002", "Globex", "Enterprise", None),
        ("ACC-000003", "Initech", "Mid-Market", None),
    ]


def test_a_csv_header_naming_one_column_in_two_cases_is_refused_naming_both(spark, tmp_path):
    (tmp_path / "twins.csv").write_text("id,name,ID\n1,a,2\n")
    with pytest.raises(LandingFormatError, match=r"crm_x: .*twins.csv: .*'id' and 'ID'.*; rename one"):
        read(spark, read_csv, CSV_SPEC, tmp_path)
    (f,) = list_files(spark, str(tmp_path), ".csv")
    with pytest.raises(LandingFormatError, match="'id' and 'ID'"):
        csv_header(spark, f, CSV_SPEC, frozenset({"id", "name"}))


def zipped(text: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.csv", text)
    return buffer.getvalue()


def parquet_bytes(text: bytes) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table({"id": ["1"], "name": ["a"]}), buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("pack", "reason"),
    [
        (
            gzip.compress,
            "gzip-compressed data under a .csv name; name it .csv.gz, or deliver it uncompressed",
        ),
        (zipped, "a zip archive under a .csv name; unzip it and deliver the CSV file itself"),
        (parquet_bytes, "a Parquet file under a .csv name; deliver a CSV export"),
    ],
)
def test_a_compressed_or_binary_file_named_csv_is_refused_saying_what_it_is(spark, tmp_path, pack, reason):
    text = b"id,name\n1,a\n"
    (tmp_path / "a.csv").write_bytes(pack(text))
    with pytest.raises(LandingFormatError, match=rf"^crm_x: \S*a\.csv: not a CSV file: {re.escape(reason)}"):
        read(spark, read_csv, CSV_SPEC, tmp_path)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (gzip.compress(b"1|a\n2|b\n"), "gzip-compressed data under a .csv name"),
        ("1|a\n2|b\n".encode("utf-16-le"), "UTF-16 text"),
    ],
    ids=["gzip", "utf-16"],  # gzip's bytes hold a time: each test process would name it apart
)
def test_a_headerless_csv_source_refuses_a_file_that_is_not_text(spark, tmp_path, data, reason):
    """No header to judge, so the first bytes alone: gzip or UTF-16 would otherwise land as
    rows of garbage, each quarantined as malformed without saying why."""
    ctx, landing = dialect_ctx(spark, tmp_path, sep="|", header=False, columns=["id", "note"])
    (landing / "bad.csv").write_bytes(data)
    (landing / "good.csv").write_text("1|a\n2|b\n")
    out = ingest_files(ctx, "crm_x")
    assert (out.rows_out, out.details["rejected_files"]) == (2, 1)
    (rejection,) = out.details["rejected"]
    assert rejection["path"].endswith("/bad.csv") and reason in rejection["reason"], rejection


def test_a_gzip_file_named_csv_gz_and_a_utf8_bom_header_still_land(spark, tmp_path):
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(b"id,name\n1,a\n"))
    (tmp_path / "b.csv").write_bytes(b"\xef\xbb\xbfid,name\n2,b\n")
    files = list_files(spark, str(tmp_path), (".csv", ".csv.gz"))
    rows = read_csv(spark, files, CSV_SPEC, str(tmp_path)).collect()
    assert sorted((r["id"], r["name"], r["_parse_error"]) for r in rows) == [
        ("1", "a", None),
        ("2", "b", None),
    ]


def test_a_gzip_csv_named_in_upper_case_lands_too(spark, tmp_path):
    """The listing takes `.CSV.GZ` as the dataset's `.csv.gz`; Hadoop picks its decompressor by
    the exact, lower-case suffix, so such a file must not reach Spark as raw gzip bytes."""
    (tmp_path / "A.CSV.GZ").write_bytes(gzip.compress(b"id,name\n1,a\n"))
    (tmp_path / "b.Csv.Gz").write_bytes(gzip.compress(b"id,name\n2,b\n"))
    files = list_files(spark, str(tmp_path), (".csv", ".csv.gz"))
    assert len(files) == 2
    rows = read_csv(spark, files, CSV_SPEC, str(tmp_path)).collect()
    assert sorted((r["id"], r["name"], r["_parse_error"]) for r in rows) == [
        ("1", "a", None),
        ("2", "b", None),
    ]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])  # with a BOM, without
def test_a_utf16_csv_is_refused_naming_the_encoding_and_the_fix(spark, tmp_path, encoding):
    (tmp_path / "a.csv").write_bytes("id,name\n1,a\n".encode(encoding))
    with pytest.raises(LandingFormatError, match=r"^crm_x: \S*a\.csv: .*UTF-16 .*; re-export it as UTF-8$"):
        read(spark, read_csv, CSV_SPEC, tmp_path)


def test_invalid_utf8_records_keep_their_raw_bytes_and_a_reason(spark, tmp_path):
    bad_line = b'2,Bj\xf6rk \xff,"x, y"'
    (tmp_path / "a.csv").write_bytes(b"id,name,note\n1,J\xc3\xbcrgen,ok\n" + bad_line + b"\n3,short\n")
    rows = {r["id"]: r for r in read(spark, read_csv, CSV_SPEC, tmp_path).collect()}
    assert rows["1"]["name"] == "Jürgen" and rows["1"]["_parse_error"] is None  # valid UTF-8 untouched
    bad = rows["2"]
    assert bad["name"] == "Bj\ufffdrk \ufffd" and bad["note"] == "x, y"
    assert bad["_parse_error"].startswith("invalid UTF-8 bytes in name:")
    # The raw bytes of the record's fields, joined by ',' (the CSV quoting is the parser's).
    assert base64.b64decode(bad["_corrupt_record"]) == b"2,Bj\xf6rk \xff,x, y"
    assert rows["3"]["_corrupt_record"] == "3,short" and rows["3"]["_parse_error"].startswith("malformed CSV")


def test_invalid_utf8_raw_bytes_keep_empty_fields_in_place(spark, tmp_path):
    # An empty field reads as null: the raw bytes keep its place, so field n stays field n.
    (tmp_path / "a.csv").write_bytes(b"id,name,note\n,Bj\xf6rk,\n")
    (bad,) = read(spark, read_csv, CSV_SPEC, tmp_path).collect()
    assert bad["_parse_error"].startswith("invalid UTF-8 bytes in name:")
    assert base64.b64decode(bad["_corrupt_record"]) == b",Bj\xf6rk,"


def test_parquet_check_refuses_a_truncated_file(spark, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": list(range(100))}), tmp_path / "ok.parquet")
    data = (tmp_path / "ok.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    files = {Path(f.path).name: f for f in list_files(spark, str(tmp_path), ".parquet")}
    spec = dataclasses.replace(CSV_SPEC, reader="parquet", name="orders_x")
    check_parquet(spark, files["ok.parquet"], spec)
    with pytest.raises(LandingFormatError, match=r"orders_x: .*cut.parquet: not a complete Parquet file"):
        check_parquet(spark, files["cut.parquet"], spec)


@pytest.mark.parametrize("column", ["_source_file", "_Batch_Id", "_parse_error", "_ingestion_ts"])
def test_a_csv_column_named_like_a_bronze_audit_column_is_refused_naming_it(spark, tmp_path, column):
    """Bronze adds these to every row: a source column of the name would be dropped, overwritten
    or ambiguous (an error naming no file), so its file is refused with the column and the fix."""
    ctx, landing = csv_ctx(spark, tmp_path)
    (landing / "a.csv").write_text("id,updated_at\n1,2026-07-01T00:00:00Z\n")
    (landing / "b.csv").write_text(f"id,updated_at,{column}\n2,2026-07-01T00:00:00Z,x\n")
    out = ingest_files(ctx, "crm_x")
    assert out.rows_out == 1 and out.details["rejected_files"] == 1
    ((path, reason),) = [(r["path"], r["reason"]) for r in out.details["rejected"]]
    assert path.endswith("/b.csv") and f"{column!r} have the name of a column bronze adds" in reason
    assert "rename them in the export" in reason


def test_a_parquet_column_named_like_a_bronze_audit_column_is_refused_naming_the_file(spark, tmp_path):
    import pyarrow as pa

    ctx, landing = parquet_ctx(spark, tmp_path)
    put_parquet(landing, "date=2026-07-01/data_0.parquet", order_table("ORD-0000001"))
    clashing = order_table("ORD-0000002")
    clashing = clashing.append_column("_ingestion_ts", pa.array(["2020-01-01"]))
    put_parquet(landing, "date=2026-07-01/data_1.parquet", clashing)
    out = ingest_files(ctx, "snowflake_orders")
    assert out.rows_out == 1 and out.details["rejected_files"] == 1
    ((path, reason),) = [(r["path"], r["reason"]) for r in out.details["rejected"]]
    assert path.endswith("/data_1.parquet") and "'_ingestion_ts' have the name of a column bronze" in reason
    assert bronze_rows(ctx, "snowflake_orders", "order_id") == [("ORD-0000001",)]


def test_a_file_still_being_written_when_listed_waits_for_the_next_run(spark, tmp_path, monkeypatch):
    """Listed empty (a writer that creates the file first), complete when hashed: nothing of it is
    read or recorded this run, and the next run lands its rows. Before, its hash went into the
    ledger beside the empty listing, and the next run took the complete file for one copied with
    new times: its rows never landed."""
    from pipeline.bronze import ingest as ingest_module

    ctx, landing = csv_ctx(spark, tmp_path)
    (landing / "a.csv").write_text("id,updated_at\n1,2026-07-01T00:00:00Z\n")
    (landing / "b.csv").write_text("")  # the writer has created it, not written it yet
    real = ingest_module.sha256_of

    def writer_finishes_then_hash(spark_, files):
        (landing / "b.csv").write_text("id,updated_at\n2,2026-07-01T00:00:00Z\n3,2026-07-01T00:00:00Z\n")
        return real(spark_, files)

    monkeypatch.setattr(ingest_module, "sha256_of", writer_finishes_then_hash)
    first = ingest_files(ctx, "crm_x")
    assert first.rows_out == 1 and first.details["changed_since_listed"][0].endswith("/b.csv")
    monkeypatch.setattr(ingest_module, "sha256_of", real)
    second = ingest_files(ctx, "crm_x")
    assert second.rows_out == 2
    rows = ctx.lake.read(ctx.table_path("bronze", "crm_x")).select("id").collect()
    assert sorted(r["id"] for r in rows) == ["1", "2", "3"]


def test_a_bad_file_is_rejected_once_its_neighbours_land_and_a_changed_file_is_retried(spark, tmp_path):
    ctx, landing = csv_ctx(spark, tmp_path)
    (landing / "a.csv").write_text("id,updated_at\n1,2026-07-01T00:00:00Z\n2,2026-07-01T00:00:00Z\n")
    garbage = b"\x1f\x8b\x08\x00\xde\xad\xbe\xef,\x00\xff\n\x00\x01"
    (landing / "b.csv").write_bytes(garbage)
    first = ingest_files(ctx, "crm_x")
    assert first.rows_out == 2 and first.details["rejected_files"] == 1
    ((path, reason),) = [(r["path"], r["reason"]) for r in first.details["rejected"]]
    assert path.endswith("/b.csv") and "gzip-compressed data under a .csv name" in reason
    rejected = ctx.lake.read(ctx.table_path("_ops", "rejected_files")).collect()
    assert [(r["dataset"], r["size"], r["sha256"], r["run_id"]) for r in rejected] == [
        ("crm_x", len(garbage), hashlib.sha256(garbage).hexdigest(), ctx.run_id)
    ]
    assert rejected[0]["path"].endswith("/b.csv") and rejected[0]["reason"] == reason

    again = ingest_files(ctx, "crm_x")  # unchanged: not read again
    assert (again.rows_out, again.details["new_files"], again.details["rejected_unchanged"]) == (0, 0, 1)

    (landing / "b.csv").write_text("id,updated_at\n3,2026-07-02T00:00:00Z\n")  # re-delivered, fixed
    fixed = ingest_files(ctx, "crm_x")
    assert (fixed.rows_out, fixed.details["rejected_files"]) == (1, 0)
    table = ctx.lake.read(ctx.table_path("bronze", "crm_x"))
    assert sorted(r["id"] for r in table.collect()) == ["1", "2", "3"]


def test_the_ledger_follows_bronze_a_few_commits_behind_and_for_tables_written_before_it(
    spark, tmp_path, monkeypatch
):
    """A bronze step commits once (its commit lists its files); the ledger takes what it lacks
    from bronze's log and records it once it lags CATCH_UP_COMMITS commits: a new process, with
    nothing held, knows every file either way."""
    from pipeline.bronze import ingest
    from pipeline.bronze import ledger as ledger_module
    from pipeline.bronze.ledger import legacy_ingested

    ctx, landing = csv_ctx(spark, tmp_path)
    table, ledger_path = ctx.table_path("bronze", "crm_x"), ctx.table_path("_ops", "ingested_files")
    monkeypatch.setattr(ledger_module, "CATCH_UP_COMMITS", 100)
    for i, name in enumerate(["a.csv", "b.csv", "c.csv"], 1):
        (landing / name).write_text(f"id,updated_at\n{i},2026-07-0{i}T00:00:00Z\n")
        (landing / f"empty{i}.csv").write_text("id,updated_at\n")
        assert ingest.ingest_files(ctx, "crm_x").details["new_files"] == 2
        monkeypatch.setattr(ledger_module, "_HELD", {})  # each in a new process: no ledger rows held
    assert not ctx.lake.exists(ledger_path)  # the steps' commits are bronze's alone
    assert ingest.ingest_files(ctx, "crm_x").details["new_files"] == 0  # known from bronze's log

    monkeypatch.setattr(ledger_module, "CATCH_UP_COMMITS", 3)  # bronze is further behind: recorded
    assert ingest.ingest_files(ctx, "crm_x").details["new_files"] == 0
    rows = ctx.lake.read(ledger_path).collect()
    names = ["a.csv", "b.csv", "c.csv", "empty1.csv", "empty2.csv", "empty3.csv"]
    assert sorted(r["file"].rsplit("/", 1)[1] for r in rows) == names
    assert {r["bronze_version"] for r in rows} == {ctx.lake.version(table)}

    # Commits the ledger never recorded and the log no longer holds (log cleanup removes commit
    # files a checkpoint covers): read from the table, recorded, nothing ingested twice.
    from pathlib import Path

    monkeypatch.setattr(ledger_module, "CATCH_UP_COMMITS", 100)
    for i, name in ((4, "d.csv"), (5, "e.csv")):
        (landing / name).write_text(f"id,updated_at\n{i},2026-07-0{i}T00:00:00Z\n")
        assert ingest.ingest_files(ctx, "crm_x").details["new_files"] == 1
    newest = ctx.lake.version(table)
    ctx.lake.checkpoint(table)
    (Path(table) / "_delta_log" / f"{newest - 1:020d}.json").unlink()  # d.csv's commit
    monkeypatch.setattr(ledger_module, "_HELD", {})
    assert ingest.ingest_files(ctx, "crm_x").details["new_files"] == 0
    recorded = ctx.lake.read(ledger_path).collect()
    assert {"d.csv", "e.csv"} <= {r["file"].rsplit("/", 1)[1] for r in recorded}
    assert ctx.lake.read(table).count() == 5

    # A table from before the ledger: its file commits list no landing files.
    old_ctx, old_landing = csv_ctx(spark, tmp_path / "old")
    (old_landing / "a.csv").write_text("id,updated_at\n1,2026-07-01T00:00:00Z\n")
    (old_landing / "empty.csv").write_text("id,updated_at\n")
    old_table = old_ctx.table_path("bronze", "crm_x")
    rows = old_ctx.spark.createDataFrame(
        [("1", f"file:{old_landing}/a.csv")], "id string, _source_file string"
    )
    empty_uri = f"file://{old_landing}/empty.csv"
    old_ctx.lake.append(old_table, rows, metadata={"batch_id": "old:crm_x", "empty_files": [empty_uri]})
    keys = ingest.landing_keys(old_ctx, "crm_x")
    assert legacy_ingested(old_ctx.lake, old_table, keys) == {"crm/x/a.csv": None, "crm/x/empty.csv": None}
    assert ingest.ingest_files(old_ctx, "crm_x").details["new_files"] == 0


def test_the_ledger_is_read_again_only_after_a_commit_this_process_did_not_make(spark, tmp_path, monkeypatch):
    """A step with nothing new reads no ledger rows while the ledger table is as this process
    left it (its own appends included); another writer's commit to it is seen at the next step."""
    from pipeline.bronze import ingest, ledger
    from pipeline.bronze.ledger import SCHEMA
    from pipeline.storage import file_key, list_files

    ctx, landing = csv_ctx(spark, tmp_path)
    ledger_path = ctx.table_path("_ops", "ingested_files")
    reads: list[str] = []
    read = ctx.lake.read
    monkeypatch.setattr(
        ctx.lake, "read", lambda path, version=None: reads.append(path) or read(path, version)
    )

    def new_files(name: str | None = None) -> tuple[int, int]:
        if name:
            (landing / name).write_text("id,updated_at\n1,2026-07-01T00:00:00Z\n")
        reads.clear()
        return ingest.ingest_files(ctx, "crm_x").details["new_files"], reads.count(ledger_path)

    monkeypatch.setattr(ledger, "CATCH_UP_COMMITS", 1)  # the ledger records each bronze commit
    assert new_files("a.csv") == (1, 0)  # no ledger yet
    assert new_files() == (0, 0)  # the ledger made from bronze's log, by this process's append
    monkeypatch.setattr(ledger, "_HELD", {})
    assert new_files() == (0, 1)  # a ledger this process has not read
    assert new_files() == (0, 0)
    assert new_files("b.csv") == (1, 0)
    assert new_files() == (0, 0)  # its own catch-up append extends what it holds

    # Another writer records c.csv (bronze's version covered): this process reads it once.
    (landing / "c.csv").write_text("id,updated_at\n3,2026-07-03T00:00:00Z\n")
    (c,) = [f for f in list_files(spark, str(landing), ".csv") if f.path.endswith("/c.csv")]
    version = ctx.lake.version(ctx.table_path("bronze", "crm_x"))
    ctx.lake.append(
        ledger_path,
        spark.createDataFrame([("crm_x", file_key(c.uri), version, "other", *c.stamp, None)], SCHEMA),
    )
    assert new_files() == (0, 1)
    assert new_files() == (0, 0)


def test_a_file_rewritten_under_its_path_is_ingested_again_as_a_new_delivery(spark, tmp_path):
    """A corrected export sent under the old name (another size, or the same size and a later
    modification time) lands as a new delivery beside the first, named in the step's details;
    an unchanged file never does, after the ledger is lost (rebuilt from bronze's commits) too."""
    import os

    from pipeline.bronze.ledger import SCHEMA

    ctx, landing = csv_ctx(spark, tmp_path)
    table, ledger_path = ctx.table_path("bronze", "crm_x"), ctx.table_path("_ops", "ingested_files")
    a, b = landing / "a.csv", landing / "b.csv"
    a.write_text("id,updated_at,name\n1,2026-07-01T00:00:00Z,wrong\n")
    b.write_text("id,updated_at,name\n2,2026-07-01T00:00:00Z,b\n")
    assert ingest_files(ctx, "crm_x").rows_out == 2

    def names() -> list[tuple[str, str]]:
        return sorted((r["id"], r["name"]) for r in ctx.lake.read(table).collect())

    a.write_text("id,updated_at,name\n1,2026-07-01T00:00:00Z,right\n")  # another size
    again = ingest_files(ctx, "crm_x")
    assert (again.rows_out, again.details["new_files"]) == (1, 1)
    assert [p.rsplit("/", 1)[-1] for p in again.details["redelivered"]] == ["a.csv"]
    assert names() == [("1", "right"), ("1", "wrong"), ("2", "b")]
    assert ingest_files(ctx, "crm_x").details["new_files"] == 0

    # The same size, new bytes: told apart by the modification time.
    a.write_text("id,updated_at,name\n1,2026-07-01T00:00:00Z,rigHt\n")
    stat = a.stat()
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    assert ingest_files(ctx, "crm_x").rows_out == 1
    assert ("1", "rigHt") in names()

    # The ledger lost: rebuilt from bronze's commit metadata, stamps included.
    ctx.lake.overwrite(ledger_path, spark.createDataFrame([], SCHEMA))
    assert ingest_files(ctx, "crm_x").details["new_files"] == 0
    b.write_text("id,updated_at,name\n2,2026-07-01T00:00:00Z,bb\n")
    assert ingest_files(ctx, "crm_x").details["redelivered"][0].endswith("/b.csv")


def test_a_ledger_written_before_stamps_knows_its_files_by_path(spark, tmp_path, monkeypatch):
    from pipeline.bronze import ledger

    ctx, landing = csv_ctx(spark, tmp_path)
    (landing / "a.csv").write_text("id,updated_at\n1,2026-07-01T00:00:00Z\n")
    assert ingest_files(ctx, "crm_x").rows_out == 1
    monkeypatch.setattr(ledger, "CATCH_UP_COMMITS", 1)
    assert ingest_files(ctx, "crm_x").rows_out == 0  # the ledger catches up: a.csv's row
    ledger_path = ctx.table_path("_ops", "ingested_files")
    old = ctx.lake.read(ledger_path).drop("size", "modified_ms", "sha256").collect()
    shutil.rmtree(tmp_path / "lake" / "_ops" / "ingested_files")
    ctx.lake.append(
        ledger_path,
        spark.createDataFrame(old, "dataset string, file string, bronze_version long, batch_id string"),
    )
    (landing / "a.csv").write_text("id,updated_at\n1,2026-07-02T00:00:00Z,x\n")
    (landing / "b.csv").write_text("id,updated_at\n2,2026-07-01T00:00:00Z\n")
    result = ingest_files(ctx, "crm_x")  # a.csv is known (no stamp to compare), b.csv is new
    assert (result.rows_out, result.details["new_files"]) == (1, 1)
    assert "redelivered" not in result.details


def dialect_ctx(spark, tmp_path, **options):
    ctx, landing = csv_ctx(spark, tmp_path)
    spec = dataclasses.replace(ctx.catalog["crm_x"], options=CsvOptions(**options))
    ctx.catalog = Catalog({"crm_x": spec})
    return ctx, landing


def test_a_semicolon_separated_latin1_source_lands_with_its_columns_and_values(spark, tmp_path):
    """A European spreadsheet export: ';' between fields, ',' as the decimal mark, ISO-8859-1."""
    ctx, landing = dialect_ctx(spark, tmp_path, sep=";", encoding="ISO-8859-1")
    text = 'id;name;amount;updated_at\n1;Müller, Jörg;12,50;2026-07-01T00:00:00Z\n2;"Ça; va";3,00;2026-07-01T00:00:00Z\n'
    (landing / "a.csv").write_bytes(text.encode("latin-1"))
    out = ingest_files(ctx, "crm_x")  # through the header pre-check (bronze.rejected) and the read
    assert (out.rows_out, out.details["rejected_files"]) == (2, 0)
    table = ctx.lake.read(ctx.table_path("bronze", "crm_x"))
    assert [c for c in table.columns if not c.startswith("_")] == ["id", "name", "amount", "updated_at"]
    rows = sorted((r["id"], r["name"], r["amount"], r["_corrupt_record"]) for r in table.collect())
    assert rows == [("1", "Müller, Jörg", "12,50", None), ("2", "Ça; va", "3,00", None)]


def test_a_csv_dialect_with_its_own_quote_and_escape_and_no_header(spark, tmp_path):
    ctx, landing = dialect_ctx(
        spark, tmp_path, sep="|", quote="'", escape="\\", header=False, columns=["id", "note"]
    )
    (landing / "a.csv").write_text("1|'it\\'s | fine'\n2|plain\n3|too|many\n")
    out = ingest_files(ctx, "crm_x")
    assert out.rows_out == 3
    table = ctx.lake.read(ctx.table_path("bronze", "crm_x"))
    rows = sorted((r["id"], r["note"], r["_parse_error"] is not None) for r in table.collect())
    assert rows == [("1", "it's | fine", False), ("2", "plain", False), ("3", "too", True)]


def test_a_header_split_by_the_wrong_delimiter_is_refused_naming_the_file(spark, tmp_path):
    """The pre-check splits by the dataset's delimiter: a comma file in a ';' dataset is one
    column named 'id,name', not an identifier."""
    ctx, landing = dialect_ctx(spark, tmp_path, sep=";")
    (landing / "a.csv").write_text("id,updated_at\n1,2026-07-01T00:00:00Z\n")
    out = ingest_files(ctx, "crm_x")
    assert out.details["rejected_files"] == 1
    assert "'id,updated_at'" in out.details["rejected"][0]["reason"]


def land_records(landing: Path, ids: dict[str, str]) -> None:
    """One CSV record (`id` as given) in each file named (a path below `landing`)."""
    for name, i in ids.items():
        (landing / name).parent.mkdir(parents=True, exist_ok=True)
        (landing / name).write_text(f"id,updated_at\n{i},2026-07-01T00:00:00Z\n")


def test_hostile_file_names_land_or_are_rejected_each_with_its_own_reason(spark, tmp_path, caplog):
    """A ':' in a name (an ISO time) is rejected naming it and the fix, recorded with its
    checksum, and its neighbours land; glob characters land under their own file's URI; a
    writer's `_temporary/` attempt and a `.hidden/` folder are skipped; `.CSV` lands; a file
    matching no suffix is named in the details and the log, not rejected."""
    ctx, landing = csv_ctx(spark, tmp_path)
    names = {
        "a.csv": "1",
        "b_2026-10-01T10:00:00.csv": "2",
        "c[1].csv": "3",
        "d_{a,b}.csv": "4",
        "e*.csv": "5",
        "F.CSV": "6",
        "date=2026-10-01/g.csv": "7",
        "_temporary/0/_temporary/attempt_1/t.csv": "8",
        ".hidden/h.csv": "9",
        "notes.txt": "10",
    }
    land_records(landing, names)
    uris = {f.path.rsplit("/", 1)[-1]: f.uri for f in list_files(spark, str(landing), ".csv")}
    with caplog.at_level(logging.WARNING, logger="pipeline.bronze.ingest"):
        first = ingest_files(ctx, "crm_x")
    assert (first.rows_out, first.details["rejected_files"]) == (6, 1)
    ((path, reason),) = [(r["path"], r["reason"]) for r in first.details["rejected"]]
    colon = landing / "b_2026-10-01T10:00:00.csv"
    assert path == uris[colon.name] and "holds ':'" in reason and "rename it" in reason
    (row,) = ctx.lake.read(ctx.table_path("_ops", "rejected_files")).collect()
    assert row["sha256"] == hashlib.sha256(colon.read_bytes()).hexdigest() and row["reason"] == reason
    table = ctx.lake.read(ctx.table_path("bronze", "crm_x"))
    landed = {r["id"]: r["_source_file"] for r in table.collect()}
    expected = {"1": "a.csv", "3": "c[1].csv", "4": "d_{a,b}.csv", "5": "e*.csv", "6": "F.CSV", "7": "g.csv"}
    assert {i: file_key(uri) for i, uri in landed.items()} == {
        i: file_key(uris[name]) for i, name in expected.items()
    }
    assert first.details["ignored_files"] == 1 and first.details["ignored"][0].endswith("/notes.txt")
    assert "crm_x: 1 landing file(s) match none of the dataset's suffixes" in caplog.text
    assert "notes.txt" in caplog.text

    again = ingest_files(ctx, "crm_x")  # the rejected file is left alone, nothing lands twice
    assert (again.rows_out, again.details["new_files"], again.details["rejected_unchanged"]) == (0, 0, 1)


def test_files_the_catalogue_leaves_alone_are_neither_read_nor_warned_about(spark, tmp_path, caplog):
    """`ignore` patterns match a file's name or its path below the landing folder (`*` crossing
    folders), in any case, whatever its suffix: a README or an exporter's summaries beside the
    deliveries, counted only. Every other file matching no suffix is still named at every run."""
    ctx, landing = csv_ctx(spark, tmp_path)
    ctx.catalog = Catalog(
        {"crm_x": dataclasses.replace(ctx.catalog["crm_x"], ignore=["README*", "meta/*.csv"])}
    )
    files = {
        "a.csv": "1",
        "README.md": "2",
        "readme.CSV": "3",
        "meta/summary.csv": "4",
        "meta/2026/summary.csv": "5",
        "notes.txt": "6",
        "b/meta.csv": "7",
    }
    land_records(landing, files)
    with caplog.at_level(logging.INFO, logger="pipeline.bronze.ingest"):
        first = ingest_files(ctx, "crm_x")
    ids = {r["id"] for r in ctx.lake.read(ctx.table_path("bronze", "crm_x")).collect()}
    assert (first.rows_out, ids) == (2, {"1", "7"})
    assert first.details["left_alone_files"] == 4
    assert first.details["ignored_files"] == 1 and first.details["ignored"][0].endswith("/notes.txt")
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "notes.txt" in warned and "datasets.crm_x.ignore" in warned
    assert not any(name in warned for name in ("README.md", "readme.CSV", "summary.csv"))
    assert "4 landing file(s) left alone by datasets.crm_x.ignore" in caplog.text


@pytest.mark.parametrize(
    ("reader", "patterns", "refusal"),
    [
        ("csv", [" "], "ignore: a pattern is empty"),
        ("csv", ["*"], "matches any file ending in '.csv', every delivery"),
        ("csv", ["*.CSV"], "every delivery"),
        ("kafka", ["README*"], "file readers only"),
    ],
)
def test_an_ignore_the_reader_cannot_keep_is_refused(tmp_path, reader, patterns, refusal):
    path = tmp_path / "datasets.yaml"
    entry = {"source_system": "s", "landing": "s/x", "reader": reader, "description": "x"}
    entry |= {"file_suffix": ".csv" if reader == "csv" else ".jsonl", "ignore": patterns}
    path.write_text(yaml.safe_dump({"datasets": {"x": entry}}))
    with pytest.raises(ConfigError, match=refusal):
        load_catalog(path)


# -- Parquet unloads ---------------------------------------------------------------------------

ORDER_TS = datetime(2026, 7, 1, 9, 0)


def order_table(order_id: str, amount_type=None, amount=None):
    """One order as Snowflake unloads it (the generator's schema), `amount` typed as given."""
    import decimal

    import pyarrow as pa

    amount_type = amount_type or pa.decimal128(18, 2)
    ts = pa.timestamp("us", "UTC")
    schema = pa.schema(
        [
            ("order_id", pa.string()),
            ("account_id", pa.string()),
            ("order_ts", ts),
            ("status", pa.string()),
            ("currency", pa.string()),
            ("amount", amount_type),
            ("updated_at", ts),
        ]
    )
    row = dict(
        order_id=order_id,
        account_id="ACC-000001",
        order_ts=ORDER_TS,
        status="placed",
        currency="USD",
        amount=decimal.Decimal("10.00") if amount is None else amount,
        updated_at=ORDER_TS,
    )
    return pa.Table.from_pylist([row], schema)


def parquet_ctx(spark, tmp_path, dataset="snowflake_orders"):
    """A context on a fresh lake with the repo's catalogue and contracts, and `dataset`'s landing."""
    ctx = make_ctx(spark, tmp_path / "lake")
    landing = Path(ctx.landing_path(dataset))
    landing.mkdir(parents=True)
    return ctx, landing


def put_parquet(landing: Path, relative: str, table) -> None:
    import pyarrow.parquet as pq

    (landing / relative).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, landing / relative)


def bronze_rows(ctx, dataset, *columns):
    return sorted(
        tuple(r) for r in ctx.lake.read(ctx.table_path("bronze", dataset)).select(*columns).collect()
    )


@pytest.mark.parametrize("first_load", [True, False])
def test_a_parquet_file_outside_the_partition_folders_lands_with_a_null_partition(
    spark, tmp_path, first_load
):
    ctx, landing = parquet_ctx(spark, tmp_path)
    if not first_load:
        put_parquet(landing, "date=2026-07-01/data_0.parquet", order_table("ORD-0000001"))
        assert ingest_files(ctx, "snowflake_orders").rows_out == 1
    put_parquet(landing, "date=2026-07-02/data_0.parquet", order_table("ORD-0000002"))
    put_parquet(landing, "date=2026-07-02/retry/data_0.parquet", order_table("ORD-0000003"))
    put_parquet(landing, "loose_orders.parquet", order_table("ORD-0000004"))
    result = ingest_files(ctx, "snowflake_orders")
    assert (result.rows_out, result.details["empty_files"], result.details["rejected_files"]) == (3, 0, 0)
    rows = bronze_rows(ctx, "snowflake_orders", "order_id", "date")
    assert rows[-3:] == [
        ("ORD-0000002", date(2026, 7, 2)),
        ("ORD-0000003", date(2026, 7, 2)),
        ("ORD-0000004", None),
    ]


def test_a_behaviour_unload_file_outside_its_event_date_folders_lands_in_the_null_partition(spark, tmp_path):
    import pyarrow as pa

    ctx, landing = parquet_ctx(spark, tmp_path, "redshift_behavior")
    ts = pa.timestamp("us", "UTC")

    def event(i):
        row = dict(event_id=f"e{i}", user_id="u", event_type="click", event_ts=ORDER_TS, loaded_at=ORDER_TS)
        schema = pa.schema(
            [("event_id", pa.string()), ("user_id", pa.string()), ("event_type", pa.string())]
            + [("event_ts", ts), ("loaded_at", ts)]
        )
        return pa.Table.from_pylist([row], schema)

    put_parquet(landing, "event_date=2026-07-01/0000_part_00.parquet", event(1))
    put_parquet(landing, "0000_part_00.parquet", event(2))
    result = ingest_files(ctx, "redshift_behavior")
    assert (result.rows_out, result.details["empty_files"]) == (2, 0)
    assert bronze_rows(ctx, "redshift_behavior", "event_id", "event_date") == [
        ("e1", date(2026, 7, 1)),
        ("e2", None),
    ]


def test_a_file_the_batch_read_returns_no_rows_of_is_rejected_not_recorded_as_empty(
    spark, tmp_path, monkeypatch
):
    from pipeline.bronze import ingest, readers

    ctx, landing = parquet_ctx(spark, tmp_path)
    put_parquet(landing, "date=2026-07-01/a.parquet", order_table("ORD-0000001"))
    put_parquet(landing, "date=2026-07-01/b.parquet", order_table("ORD-0000002"))
    reader = readers.READERS["parquet"]

    def losing(spark, files, spec, root):  # a reader that leaves b.parquet's rows out
        df = reader(spark, files, spec, root)
        return df.filter(~F.col("_source_file").endswith("/b.parquet")) if len(files) > 1 else df

    monkeypatch.setitem(readers.READERS, "parquet", losing)
    result = ingest_files(ctx, "snowflake_orders")
    assert (result.rows_out, result.details["empty_files"], result.details["rejected_files"]) == (1, 0, 1)
    ((path, reason),) = [(r["path"], r["reason"]) for r in result.details["rejected"]]
    assert path.endswith("/b.parquet") and "holds 1 row(s) but the batch read" in reason
    done = ingest.ledger(ctx).ingested(
        "snowflake_orders",
        ctx.table_path("bronze", "snowflake_orders"),
        ingest.landing_keys(ctx, "snowflake_orders"),
    )
    assert [k.rsplit("/", 1)[-1] for k in done.stamps] == ["a.parquet"]


def test_a_first_parquet_load_sets_aside_files_typed_against_the_contract_or_most_files(spark, tmp_path):
    import pyarrow as pa

    ctx, landing = parquet_ctx(spark, tmp_path)
    day = "date=2026-07-01"
    put_parquet(landing, f"{day}/good.parquet", order_table("ORD-0000001"))
    put_parquet(landing, f"{day}/float.parquet", order_table("ORD-0000002", pa.float64(), 10.0))
    put_parquet(landing, f"{day}/wide.parquet", order_table("ORD-0000003", pa.decimal128(38, 2)))  # fits
    # a column no contract types: most files hold it as text
    for name, values in (("c1", pa.array(["web"])), ("c2", pa.array(["app"])), ("c3", pa.array([7]))):
        table = order_table(f"ORD-000001{name[1:]}").append_column("channel", values)
        put_parquet(landing, f"{day}/channel_{name}.parquet", table)
    result = ingest_files(ctx, "snowflake_orders")
    reasons = {r["path"].rsplit("/", 1)[-1]: r["reason"] for r in result.details["rejected"]}
    assert sorted(reasons) == ["channel_c3.parquet", "float.parquet"]
    assert "`amount` is double here, decimal(18,2) in the contract orders" in reasons["float.parquet"]
    assert (
        "`channel` is bigint here, string in most files of this first load" in reasons["channel_c3.parquet"]
    )
    assert result.rows_out == 4
    schema = ctx.lake.read(ctx.table_path("bronze", "snowflake_orders")).schema
    assert (schema["amount"].dataType.simpleString(), schema["channel"].dataType.simpleString()) == (
        "decimal(18,2)",
        "string",
    )


def test_a_first_load_types_a_new_column_by_the_files_that_fill_it_not_by_empty_ones(spark, tmp_path):
    """A column no contract types, empty in most files of a first load (pyarrow writes an all-null
    column as its null type, which Spark reads as int) and text in one: bronze types it string
    from the file holding values, and no file is set aside; a later file with text lands too."""
    import pyarrow as pa

    ctx, landing = parquet_ctx(spark, tmp_path)
    day = "date=2026-07-01"
    for i, values in enumerate((pa.nulls(1), pa.nulls(1), pa.array(["web"]))):
        table = order_table(f"ORD-000002{i}").append_column("channel", values)
        put_parquet(landing, f"{day}/channel_{i}.parquet", table)
    first = ingest_files(ctx, "snowflake_orders")
    assert (first.rows_out, first.details["rejected_files"]) == (3, 0)
    bronze = ctx.table_path("bronze", "snowflake_orders")
    assert ctx.lake.read(bronze).schema["channel"].dataType.simpleString() == "string"
    later = order_table("ORD-0000029").append_column("channel", pa.array(["app"]))
    put_parquet(landing, "date=2026-07-02/later.parquet", later)
    assert ingest_files(ctx, "snowflake_orders").rows_out == 1
    got = {r["order_id"]: r["channel"] for r in ctx.lake.read(bronze).collect()}
    assert got == {"ORD-0000020": None, "ORD-0000021": None, "ORD-0000022": "web", "ORD-0000029": "app"}


@pytest.mark.parametrize("first_load", [True, False])
def test_a_wider_decimal_lands_as_bronzes_type_where_it_fits_and_an_all_null_column_fits_any_type(
    spark, tmp_path, first_load
):
    """Snowflake unloads NUMBER as decimal(38,s): bronze stores it as its decimal(18,2) (on a first
    load, the contract's), value by value; a value that does not fit lands as a malformed record
    naming column and value, its values as JSON (silver quarantines it), never as a null amount. A
    column of nulls only (pyarrow's null type, which Spark reads as int, or text) fits any type."""
    import decimal

    import pyarrow as pa

    ctx, landing = parquet_ctx(spark, tmp_path)
    day = landing / "date=2026-07-01"
    if not first_load:
        put_parquet(day, "first.parquet", order_table("ORD-0000009"))
        assert ingest_files(ctx, "snowflake_orders").rows_out == 1
    wide, huge = pa.decimal128(38, 2), decimal.Decimal("12345678901234567890.25")
    put_parquet(day, "fits.parquet", order_table("ORD-0000001", wide, decimal.Decimal("12.50")))
    put_parquet(day, "huge.parquet", order_table("ORD-0000002", wide, huge))
    for order_id, nulls in (("ORD-0000003", pa.nulls(1)), ("ORD-0000004", pa.nulls(1, pa.string()))):
        put_parquet(day, f"{order_id}.parquet", order_table(order_id).set_column(5, "amount", nulls))
    put_parquet(day, "text.parquet", order_table("ORD-0000005").set_column(5, "amount", pa.array(["7"])))
    result = ingest_files(ctx, "snowflake_orders")
    reasons = {r["path"].rsplit("/", 1)[-1]: r["reason"] for r in result.details["rejected"]}
    assert list(reasons) == ["text.parquet"]
    assert "`amount` is string here, decimal(18,2) in " in reasons["text.parquet"]
    assert result.rows_out == 4
    bronze = ctx.lake.read(ctx.table_path("bronze", "snowflake_orders"))
    assert bronze.schema["amount"].dataType.simpleString() == "decimal(18,2)"
    rows = {r["order_id"]: r for r in bronze.collect()}
    assert [
        (rows[o]["amount"], rows[o]["_parse_error"]) for o in ("ORD-0000001", "ORD-0000003", "ORD-0000004")
    ] == [
        (decimal.Decimal("12.50"), None),
        (None, None),
        (None, None),
    ]
    overflow = rows["ORD-0000002"]
    assert overflow["amount"] is None
    assert f'"amount":{huge}' in overflow["_corrupt_record"]
    assert overflow["_parse_error"].startswith(f"`amount` value {huge} does not fit decimal(18,2)")
