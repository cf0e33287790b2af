"""`lakehouse erase`, through the real CLI, on a lake the contacts steps wrote: one contact
named by email is gone from every table (found by an independent scan of every cell for the id,
the emails and their keyed hashes), every other row stays, the audit names tables and counts
without the subject in clear, and the next run neither fails nor brings the contact back, not
even from a landing file that held only their record."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import re
from pathlib import Path

import pytest
from deltalake import DeltaTable

from pipeline import cli
from pipeline.silver.pii import LOCAL_DEVELOPMENT_KEY

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]  # five CLI calls under a loaded CI
STEPS = "bronze_crm_contacts,silver_contacts"  # gold rebuilds need the whole DAG: not here
LAYERS = ("bronze", "quarantine", "silver", "gold")


def _tables(lake: Path) -> dict[str, Path]:
    return {
        f"{layer}/{p.name}": p
        for layer in LAYERS
        for p in sorted((lake / layer).glob("*"))
        if (p / "_delta_log").is_dir()
    }


def _holding(path: Path, needles: set[str]) -> tuple[int, int]:
    """(rows, rows with any needle in any cell, case-insensitive): a scan that knows nothing of
    columns or contracts."""
    rows = DeltaTable(str(path)).to_pyarrow_table().to_pylist()
    hits = sum(1 for r in rows if any(n in json.dumps(r, default=str).lower() for n in needles))
    return len(rows), hits


def _contact_versions(landing: Path) -> dict[str, list[dict]]:
    versions: dict[str, list[dict]] = {}
    for f in sorted((landing / "crm" / "contacts").glob("*.csv")):
        with f.open(newline="") as fh:
            for row in csv.DictReader(fh):
                versions.setdefault(row["contact_id"], []).append(row)
    return versions


def test_erase_removes_one_person_everywhere_and_only_them(fresh_lake, capsys, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_LAKE_ENGINE", "delta-rs")  # the quicker engine on small tables
    lake = fresh_lake
    args = ["--lake", str(lake)]

    # the subject: a contact exported several times, named by the email of its latest version
    versions = {
        k: v for k, v in _contact_versions(lake / "landing").items() if re.fullmatch(r"CON-\d{7}", k)
    }  # a contact id as issued (defects blank or mangle some)
    contact_id, rows = max(
        versions.items(), key=lambda kv: (len({r["email"] for r in kv[1]}), len(kv[1]), kv[0])
    )
    emails = {r["email"].strip().lower() for r in rows if "@" in r["email"]}
    email = max(emails)
    # a re-delivered file holding only this contact's record, ingested with the others
    only_them = lake / "landing" / "crm" / "contacts" / "contacts_20260930_redelivery.csv"
    with only_them.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[-1]))
        writer.writeheader()
        writer.writerow(rows[-1])
    assert cli.main(["run", *args, "--only", STEPS]) == 0

    hashes = {hmac.new(LOCAL_DEVELOPMENT_KEY, e.encode(), hashlib.sha256).hexdigest() for e in emails}
    needles = {contact_id.lower(), *emails, *hashes}
    before = {k: _holding(p, needles) for k, p in _tables(lake).items()}
    expected = {k: hits for k, (_, hits) in before.items() if hits}
    assert {"bronze/crm_contacts", "silver/contacts"} <= set(expected), expected
    versions_before = {k: DeltaTable(str(p)).version() for k, p in _tables(lake).items()}
    capsys.readouterr()

    # nothing matches: refused, naming where it looked
    assert cli.main(["erase", *args, "--subject", "nobody@example.invalid", "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "no row matches" in err and "bronze/crm_contacts" in err and "silver/contacts" in err, err

    # dry run: what it would erase, per table, nothing written
    assert cli.main(["erase", *args, "--subject", email.upper(), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert all(f"{table:<28} {hits:>6} rows" in out for table, hits in expected.items()), out
    assert {k: DeltaTable(str(p)).version() for k, p in _tables(lake).items()} == versions_before

    # as the shell runs it: the lease records the command line, which must not carry the subject
    monkeypatch.setattr("sys.argv", ["lakehouse", "erase", *args, "--subject", email])
    assert cli.main(["erase", *args, "--subject", email]) == 0
    out = capsys.readouterr().out
    leases = [p.read_text().lower() for p in (lake / "_ops" / "lease").glob("*.json")]
    assert leases and not any(email in text for text in leases), leases
    assert only_them.name in out, out  # named for the operator to remove at the source
    after = {k: _holding(p, needles) for k, p in _tables(lake).items()}
    assert {k: hits for k, (_, hits) in after.items() if hits} == {}
    # every other row stays: each table lost exactly the subject's rows
    assert {k: n for k, (n, _) in after.items()} == {k: n - h for k, (n, h) in before.items()}

    audit = DeltaTable(str(lake / "_ops" / "erasures")).to_pyarrow_table().to_pylist()
    assert {r["table"]: r["rows_erased"] for r in audit} == expected
    subject_hash = hmac.new(LOCAL_DEVELOPMENT_KEY, email.encode(), hashlib.sha256).hexdigest()
    assert {r["subject_hash"] for r in audit} == {subject_hash}
    assert not any(
        n in json.dumps(r, default=str).lower() for r in audit for n in (email, contact_id.lower())
    )
    assert all(r["version_after"] == r["version_before"] + 1 for r in audit)
    assert all((r["files_gone_after"] - r["erased_at"]).total_seconds() == 168 * 3600 for r in audit)

    # the next run passes and brings nothing back (the file of only their record is not re-ingested)
    assert cli.main(["run", *args, "--only", STEPS]) == 0
    again = {k: _holding(p, needles) for k, p in _tables(lake).items()}
    assert {k: hits for k, (_, hits) in again.items() if hits} == {}
