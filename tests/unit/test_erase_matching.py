"""Erasure's matching rules: config/erasure.yaml is checked against the contracts, and the
predicates it builds select the same rows in Spark (counting) and in each engine's DELETE."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from pipeline.contracts.model import load_contracts
from pipeline.erase import ErasureConfig, SubjectColumns, _raw_predicate, _silver_predicate, load_erasure
from pipeline.settings import ConfigError
from tests.helpers import REPO

KEY = b"test-key"


@pytest.fixture(scope="module")
def contracts():
    return load_contracts(REPO / "config" / "contracts", REPO / "config" / "reference")


def test_the_shipped_config_names_read_columns_of_known_contracts(contracts):
    config = load_erasure(REPO / "config", contracts)
    assert {s.dataset for s in config.subjects} == {"contacts", "behavior_events", "product_events"}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{dataset: leads, ids: [lead_id]}", "no contract for dataset 'leads'"),
        ("{dataset: contacts, ids: [contact_no]}", "contacts has no read column 'contact_no'"),
        ("{dataset: contacts, emails: [phone]}", "not pii: email"),
        ("{dataset: accounts, ids: [country]}", "only trim/lower/upper identify a person"),
    ],
)
def test_a_config_naming_what_cannot_identify_a_person_is_refused(tmp_path, contracts, entry, message):
    (tmp_path / "erasure.yaml").write_text(f"subjects:\n  - {entry}\n")
    with pytest.raises(ConfigError, match=message) as err:
        load_erasure(tmp_path, contracts)
    assert "erasure.yaml: subjects[0]" in str(err.value)


ROWS = [
    # tag, contact_id, email, _corrupt_record: the subject in every spelling bronze may hold it
    ("id, spaces", " con-0000007 ", "someone@else.com", None),
    ("id, Unicode white space", "\u00a0CON-0000007\r", "x@y.com", None),
    ("email, no id", " \t", "  O'Brien@Example.COM\u00a0", None),
    ("raw text", None, None, "CON-0000009,broken line with o'brien@example.com in it"),
    # others: a near miss on every column, LIKE's wildcards in an address, and another person's
    # row holding an address the subject used (a shared or reassigned address)
    ("near miss", "CON-00000070", "obrien@example.com", None),
    ("wildcards", "CON-0000010", "o_brien@example.com", "CON-0000010,o%brien@example.com"),
    ("another person", "CON-0000011", "o'brien@example.com", None),
]
SUBJECT_ROWS = ["email, no id", "id, Unicode white space", "id, spaces", "raw text"]


def test_raw_and_silver_predicates_select_the_subject_in_spark_and_in_the_engine(
    spark, lake, tmp_path, contracts
):
    contract = contracts["contacts"]
    cols = SubjectColumns("contacts", ids=["contact_id"], emails=["email"])
    config = ErasureConfig([cols], raw_text=["_corrupt_record", "value"])
    ids, emails = {"CON-0000007"}, {"o'brien@example.com"}
    df = spark.createDataFrame(ROWS, "tag string, contact_id string, email string, _corrupt_record string")
    predicate = _raw_predicate(config, contract, cols, df.columns, ids, emails)
    assert "`value`" not in predicate  # raw-text columns the table lacks are left out
    assert sorted(r["tag"] for r in df.filter(predicate).collect()) == SUBJECT_ROWS

    path = str(tmp_path / "bronze")
    lake.append(path, df)
    lake.delete(path, predicate)
    assert sorted(r["tag"] for r in lake.read(path).collect()) == ["another person", "near miss", "wildcards"]

    # silver holds the keyed hash of the normalised email, and normalised ids
    digest = hmac.new(KEY, b"o'brien@example.com", hashlib.sha256).hexdigest()
    silver = spark.createDataFrame(
        [("CON-0000007", "x"), (None, digest), ("CON-0000011", digest), ("CON-0000012", "y")],
        "contact_id string, email_hash string",
    )
    chosen = silver.filter(_silver_predicate(contract, cols, silver.columns, ids, emails, KEY))
    assert sorted(r["contact_id"] or "" for r in chosen.collect()) == ["", "CON-0000007"]
