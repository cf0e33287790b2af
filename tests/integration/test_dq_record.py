"""The gates' record of a whole run (the session's shared run, two steps at a time): every gate
the run state shows reaches `_ops/dq_results`, in the one commit the run's end made, and the
spool the gates wrote to is empty."""

from __future__ import annotations

from pipeline.dq.record import GATES_KEY, results_path, spool_path


def test_a_run_records_every_gate_it_ran_in_one_dq_results_commit(pipeline_run):
    ctx, lake, outcomes = pipeline_run
    gated = {name: o.details for name, o in outcomes.items() if o.details.get("dq")}
    assert {"silver_orders", "gold_fct_orders", "bronze_kafka_events"} <= set(gated)

    (commit,) = ctx.lake.history(results_path(ctx))  # one commit for the whole run
    assert commit.metadata["run_id"] == "first"
    assert {g["step"] for g in commit.metadata[GATES_KEY]} == set(gated)

    rows = ctx.lake.read(results_path(ctx)).groupBy("step").count().collect()
    # A step's gate recorded what its details show; the Kafka step one result per rule for each
    # micro-batch, its details one per rule for the whole query.
    expected = {name: len(d["dq"]) * d.get("dq_micro_batches", 1) for name, d in gated.items()}
    assert {r["step"]: r["count"] for r in rows} == expected
    spool = lake / spool_path(ctx).removeprefix(str(lake) + "/")
    assert not spool.exists() or not any(spool.iterdir())
