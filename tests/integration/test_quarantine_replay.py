"""`lakehouse quarantine replay`, through the real CLI: a reference list missing a currency
quarantines every order in it; once the list is fixed, the replay moves those orders to silver
exactly once, also across a crash between its silver and quarantine writes, and a second replay
does nothing."""

from __future__ import annotations

import re
import shutil

import pytest
from deltalake import DeltaTable

from pipeline import cli
from pipeline.silver import replay
from tests.helpers import REPO

pytestmark = pytest.mark.slow
FIXED = "EUR"  # the currency the broken reference list lacks
STEPS = "bronze_crm_accounts,silver_accounts,bronze_snowflake_orders,silver_orders"


def _rows(path) -> list[dict]:
    return DeltaTable(str(path)).to_pyarrow_table().to_pylist()


def _replayable(row: dict) -> bool:
    """A quarantined order whose only broken rule is the missing currency (computed here from
    the stored rows, independently of the replay's own conformance)."""
    return (
        row["_rules_broken"] == ["currency:not_in_currencies"]
        and (row["currency"] or "").strip().upper() == FIXED
    )


def test_replay_moves_fixed_rows_to_silver_exactly_once(fresh_lake, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_LAKE_ENGINE", "delta-rs")  # the quicker engine on small tables
    lake = fresh_lake
    broken = tmp_path / "config-broken"
    shutil.copytree(REPO / "config", broken)
    currencies = broken / "reference" / "currencies.yaml"
    currencies.write_text(currencies.read_text().replace(f" {FIXED},", ""))
    assert cli.main(["run", "--lake", str(lake), "--config-dir", str(broken), "--only", STEPS]) == 0

    quarantine, silver = lake / "quarantine" / "orders", lake / "silver" / "orders"
    q_before, s_before = _rows(quarantine), _rows(silver)
    moving = [r for r in q_before if _replayable(r)]
    staying = [r for r in q_before if not _replayable(r)]
    assert moving and staying  # EUR orders were quarantined, and genuine defects too
    latest: dict[str, object] = {r["order_id"]: r["updated_at"] for r in s_before}
    for r in moving:
        latest[r["order_id"]] = max(latest.get(r["order_id"], r["updated_at"]), r["updated_at"])
    new_orders = {r["order_id"] for r in moving} - {r["order_id"] for r in s_before}

    # dry run: the counts, nothing written
    q_version, s_version = DeltaTable(str(quarantine)).version(), DeltaTable(str(silver)).version()
    replay_args = [
        "quarantine",
        "replay",
        "orders",
        "--lake",
        str(lake),
        "--config-dir",
        str(REPO / "config"),
    ]
    assert cli.main([*replay_args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{len(q_before)} rows = {len(moving)} replayed" in out, out
    assert f"{len(staying)} still quarantined" in out, out
    assert (DeltaTable(str(quarantine)).version(), DeltaTable(str(silver)).version()) == (
        q_version,
        s_version,
    )

    # a crash after the silver write: silver has the rows, quarantine still has them too
    def crash(*args, **kwargs):
        raise RuntimeError("killed between the silver and the quarantine write")

    with monkeypatch.context() as m:
        m.setattr(replay, "_rewrite_quarantine", crash)
        with pytest.raises(RuntimeError, match="killed between"):
            cli.main(replay_args)
    capsys.readouterr()
    assert DeltaTable(str(quarantine)).version() == q_version
    crashed_silver = DeltaTable(str(silver)).version()
    assert crashed_silver == s_version + 1

    # the rerun finishes the quarantine half without writing silver again
    assert cli.main(replay_args) == 0
    out = capsys.readouterr().out
    assert "finished an interrupted replay" in out, out
    written, duplicates = map(int, re.search(r"\((\d+) to silver/orders, (\d+) duplicates\)", out).groups())
    assert written == len({r["order_id"] for r in moving})  # one current row per order
    assert len(moving) == written + duplicates  # in = silver + duplicates (+ still quarantined)
    assert DeltaTable(str(silver)).version() == crashed_silver

    s_after, q_after = _rows(silver), _rows(quarantine)
    assert len(s_after) == len(s_before) + len(new_orders)
    assert len({r["order_id"] for r in s_after}) == len(s_after)  # each order once
    assert {r["order_id"]: r["updated_at"] for r in s_after} == latest
    # quarantine: exactly the rows that still fail, with their original batch
    assert len(q_after) == len(staying)
    assert not any(_replayable(r) for r in q_after)
    key = ("_source_file", "order_id", "updated_at", "_quarantine_batch_id")
    assert sorted(tuple(map(str, (r[k] for k in key))) for r in q_after) == sorted(
        tuple(map(str, (r[k] for k in key))) for r in staying
    )

    # a second replay finds nothing to move and writes nothing
    assert cli.main(replay_args) == 0
    out = capsys.readouterr().out
    assert "= 0 replayed" in out and f"{len(staying)} still quarantined" in out, out
    assert DeltaTable(str(silver)).version() == crashed_silver
    assert DeltaTable(str(quarantine)).version() == q_version + 1


def test_replayed_account_versions_rebuild_the_scd2_chains_a_clean_run_builds(
    generated_landing, tmp_path, capsys, monkeypatch
):
    """A contract rule that was wrong (segment Enterprise not allowed) quarantines versions out of
    the middle of accounts' histories; after the fix, the replay leaves silver accounts equal to
    a run that never had the wrong rule: the same versions, validity ranges and current flags."""
    monkeypatch.setenv("LAKEHOUSE_LAKE_ENGINE", "delta-rs")
    broken = tmp_path / "config-broken"
    shutil.copytree(REPO / "config", broken)
    contract = broken / "contracts" / "accounts.yaml"
    contract.write_text(
        contract.read_text().replace("allowed: [Enterprise, Mid-Market, SMB]", "allowed: [Mid-Market, SMB]")
    )
    lakes = {}
    for name, config in (("replayed", broken), ("clean", REPO / "config")):
        lakes[name] = tmp_path / name
        shutil.copytree(generated_landing, lakes[name] / "landing")
        steps = "bronze_crm_accounts,silver_accounts"
        assert (
            cli.main(["run", "--lake", str(lakes[name]), "--config-dir", str(config), "--only", steps]) == 0
        )
    q_before = _rows(lakes["replayed"] / "quarantine" / "accounts")
    wrongly_refused = [r for r in q_before if r["_rules_broken"] == ["segment:not_allowed"]]
    assert wrongly_refused

    args = [
        "quarantine",
        "replay",
        "accounts",
        "--lake",
        str(lakes["replayed"]),
        "--config-dir",
        str(REPO / "config"),
    ]
    assert cli.main(args) == 0
    assert f"= {len(wrongly_refused)} replayed" in capsys.readouterr().out

    def versions(lake):
        drop = ("_batch_id", "_source_file")
        return sorted(
            tuple(str(v) for k, v in sorted(r.items()) if k not in drop)
            for r in _rows(lake / "silver" / "accounts")
        )

    replayed, clean = versions(lakes["replayed"]), versions(lakes["clean"])
    assert replayed == clean
    q_after = _rows(lakes["replayed"] / "quarantine" / "accounts")
    assert len(q_after) == len(q_before) - len(wrongly_refused)
    assert not any(r["_rules_broken"] == ["segment:not_allowed"] for r in q_after)
