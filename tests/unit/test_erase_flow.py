"""erase_subject on a small lake: which rows an id or an email brings, the refusal while silver
has yet to read the subject's bronze rows, and the record of each table as its delete commits."""

from __future__ import annotations

from collections import Counter

import pytest

from pipeline.erase import SilverBehind, erase_subject
from pipeline.silver.job import CONSUMED
from pipeline.silver.pii import keyed_hash, pii_key
from tests.helpers import make_ctx

BRONZE = "contact_id string, email string, _source_file string"
SILVER = "contact_id string, email_hash string"
# CON-0000001 changed address (a@x.com, then a2@x.com); CON-0000002 shares an address CON-0000001 had
CONTACTS = [
    ("CON-0000001", "a@x.com", "f1.csv"),
    ("CON-0000001", "shared@x.com", "f2.csv"),
    ("CON-0000002", "shared@x.com", "f2.csv"),
    ("CON-0000002", "b@x.com", "f3.csv"),
    ("CON-0000003", "c@x.com", "f3.csv"),
]


@pytest.fixture
def lake(spark, tmp_path):
    """bronze crm_contacts and silver contacts, silver having read bronze's version 0."""
    ctx = make_ctx(spark, tmp_path / "lake")
    key = pii_key(ctx.settings)
    ctx.lake.append(ctx.table_path("bronze", "crm_contacts"), spark.createDataFrame(CONTACTS, BRONZE))
    current = {c: e for c, e, _ in CONTACTS}  # silver: each contact's latest row
    silver = [(c, keyed_hash(key, e)) for c, e in sorted(current.items())]
    ctx.lake.append(
        ctx.table_path("silver", "contacts"), spark.createDataFrame(silver, SILVER), metadata={CONSUMED: 0}
    )
    return ctx


def ids_left(ctx, layer, name):
    return sorted({r["contact_id"] for r in ctx.lake.read(ctx.table_path(layer, name)).collect()})


def test_an_id_takes_its_own_rows_not_those_of_another_person_with_an_address_it_had(lake):
    erasure = erase_subject(lake, "con-0000001", check=None)
    assert {m.table: m.rows for m in erasure.matches} == {"bronze/crm_contacts": 2, "silver/contacts": 1}
    assert ids_left(lake, "bronze", "crm_contacts") == ["CON-0000002", "CON-0000003"]
    assert ids_left(lake, "silver", "contacts") == ["CON-0000002", "CON-0000003"]


def test_an_email_takes_every_row_of_the_ids_it_names(lake):
    erasure = erase_subject(lake, " A@X.com\u00a0", check=None)
    assert {m.table: m.rows for m in erasure.matches} == {"bronze/crm_contacts": 2, "silver/contacts": 1}
    assert ids_left(lake, "bronze", "crm_contacts") == ["CON-0000002", "CON-0000003"]


def test_an_erasure_is_refused_while_silver_has_not_read_the_subjects_bronze_rows(spark, lake):
    bronze, silver = lake.table_path("bronze", "crm_contacts"), lake.table_path("silver", "contacts")
    lake.lake.append(bronze, spark.createDataFrame([("CON-0000003", "c2@x.com", "f4.csv")], BRONZE))
    # silver has not read version 1, which holds none of CON-0000002's rows: not refused, and
    # neither is the next erasure for that commit alone
    erase_subject(lake, "CON-0000002", check=None)
    assert lake.lake.version(bronze) == 2
    with pytest.raises(SilverBehind, match=r"silver/contacts has read bronze/crm_contacts up to version 0 of 2"
                                           r".*--only silver_contacts`"):  # fmt: skip
        erase_subject(lake, "CON-0000003", check=None)
    assert lake.lake.version(bronze) == 2 and lake.lake.version(silver) == 1  # nothing more deleted

    lake.lake.append(silver, spark.createDataFrame([], SILVER), metadata={CONSUMED: 2})  # silver caught up
    erase_subject(lake, "CON-0000003", check=None)
    assert ids_left(lake, "bronze", "crm_contacts") == ["CON-0000001"]
    # one audit row per table as its delete commits, silver's first: bronze, deleted last, still
    # names the ids of an erasure killed in between
    audit = lake.table_path("_ops", "erasures")
    tables = [Counter(r["table"] for r in lake.lake.read(audit, v).collect()) for v in (1, 2, 3)]
    assert [list(b - a) for a, b in zip(tables, tables[1:], strict=False)] == [
        ["silver/contacts"],
        ["bronze/crm_contacts"],
    ]
