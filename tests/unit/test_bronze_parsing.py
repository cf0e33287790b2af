"""Bronze parsing: every landing record comes out, parsed or with its raw text and a reason."""

from __future__ import annotations

import json

import pytest
from chispa import assert_df_equality

from pipeline.bronze.audit import AUDIT_COLUMNS, with_audit_columns
from pipeline.bronze.kafka import parse_kafka_records
from pipeline.bronze.readers import read_csv, read_fx_json
from pipeline.catalog import DatasetSpec
from pipeline.storage import list_files

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
        ("", None, '{"base": "USD", "date": "2026-07-0', "malformed JSON document"),
        ("EUR", "0.9", None, None),
        ("GBP", "N/A", None, None),
    ]


def kafka_records(spark, values):
    data = [("product_events", 0, i, "2026-07-01 10:00:00", "k", v, None) for i, v in enumerate(values)]
    schema = (
        "topic string, partition int, offset long, ts string, key string, value string, _parse_error string"
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
    assert all(r["_parse_error"] == "Kafka value is not a JSON event object" for r in parsed[1:])
    assert all(r["value"] == r["_corrupt_record"] for r in parsed[1:])


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
