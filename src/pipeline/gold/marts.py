"""The gold I/O edge: read silver (and gold fct_orders), compute a mart, stage its write.

`build_gold(ctx, mart)` is the job function for a DAG step `job: gold, dataset: <mart>`.

Write-audit-publish: the job returns the mart `Staged` as it will be after the write (computed,
not yet committed); the driver's check (the DQ gate, `driver.edge`) judges it and a critical
failure raises before anything is committed, so the table stays exactly as it was.

Incremental: a mart with an `update` rule recomputes only the keys its changed inputs affect
(`pipeline.gold.incremental` selects them from the inputs' change feeds) and keeps its other
rows. fct_orders recomputes the affected orders (or rebuilds in full when its MERGE would write
more than `incremental.rebuild_above_share` of config/marts.yaml of its rows: the new orders and
every row of a file holding a replaced one, which Delta rewrites whole), the check judges those
rows with the table's figures after the publish (row count; `counts` conditions over the table
as it will be), and the publish MERGEs them by order_id, recording their order dates in the commit;
revenue_daily recomputes those dates and engagement_daily the dates of the new events, and
overwrites the table with the result (a few thousand rows: written whole for less than a merge
costs). It rebuilds in full on
`--full-refresh` (ctx.full_refresh), when the table does not exist, when its definition, options
or as_of changed, when an input's recorded version is gone (the table is younger, or a VACUUM
since removed the old version and change feed the rule reads; revenue_daily reads fct_orders'
changed dates from its commits only, so a VACUUM of fct_orders keeps it incremental), when the
log no longer holds every commit since (log cleanup: the changes they recorded are lost), an
input gold mart was rebuilt in full since (which rows it changed is not recorded) or a commit of
fct_orders since records no changed order dates (revenue_daily). customer_360 (its 30-day
windows move with as_of, which a new day of events moves: every row may change) and
pipeline_summary (a few dozen rows) always rebuild in full.

Idempotent reruns: every gold commit carries, under the metadata key `gold`, a fingerprint of
what it was built from: the mart's definition version, its options in config/marts.yaml
(`gold.config`), the version of every input table it read (inputs are read at exactly those
versions) and, for marts that depend on it, the as-of date (by default the latest event date,
from the event tables' logs; each table's is also recorded per version, under
`latest_event_date`, so a rerun over the same versions looks nothing up).
When the table's latest fingerprint equals the one a run would write, the run skips the write,
so a rerun over unchanged inputs makes no new Delta version. Bump a mart's `definition` when its
business rule changes so the next run rebuilds it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipeline.context import RunContext
from pipeline.freshness import NEWEST_KEY, recorded_newest, stalest_input
from pipeline.gold import incremental as I
from pipeline.gold import transforms as T
from pipeline.gold.config import FctOrdersOptions, load_marts_config
from pipeline.lake import Commit, LakeError, MergeSpec
from pipeline.spark import date_value
from pipeline.step_result import Staged, StepResult, TableAfter, Unchanged

log = logging.getLogger(__name__)

FINGERPRINT_KEY = "gold"
WRITE_KEY = "gold_write"  # commit metadata: "full" or "incremental"
# commit metadata of an incremental fct_orders write: the order dates of the rows it recomputed
# (before and after), which revenue_daily recomputes
CHANGED_DATES_KEY = "changed_order_dates"
VACUUMS = frozenset({"VACUUM START", "VACUUM END"})
UNCHANGING = frozenset({"OPTIMIZE"}) | VACUUMS  # commits that change no row


@dataclass(frozen=True)
class Inputs:
    """The DataFrames a mart reads, by table name, the run's as-of date (None if unused) and the
    mart's options from config/marts.yaml (None: the defaults, or a mart without options)."""

    tables: dict[str, DataFrame]
    as_of: date | None
    options: Any = None

    def __getitem__(self, name: str) -> DataFrame:
        return self.tables[name]


@dataclass(frozen=True)
class Since:
    """The mart's inputs at the versions its last build read (`then`) and now, the mart, and
    each changed input's commits since (newest first)."""

    ctx: RunContext
    then: dict[str, int]
    now: dict[str, int]
    out_path: str
    commits: dict[str, list[Commit]]
    out_version: int  # the mart's version the update keeps rows of; publish refuses a newer one

    def changed(self, key: str) -> bool:
        return self.then[key] != self.now[key]

    def before(self, key: str) -> DataFrame:
        return self.ctx.lake.read(self._path(key), version=self.then[key])

    def changes(self, key: str) -> DataFrame:
        """Rows inserted or updated since (read_changes)."""
        return self.ctx.lake.read_changes(self._path(key), self.then[key], self.now[key])

    def recorded(self, key: str, name: str) -> list | None:
        """The lists the input's commits since recorded under metadata `name`, joined; None when
        a commit that changed rows recorded none."""
        found: list = []
        for commit in self.commits.get(key, []):
            if commit.operation in UNCHANGING:
                continue
            if name not in commit.metadata:
                return None
            found += commit.metadata[name]
        return found

    def _path(self, key: str) -> str:
        layer, name = key.split("/", 1)
        return self.ctx.table_path(layer, name)


@dataclass(frozen=True)
class Update:
    """An incremental build, in one of two shapes. `merge_on` empty: `result` is the whole mart
    as the write will leave it (the unaffected rows kept, the affected keys recomputed), which
    the gate checks and the publish overwrites the table with (per-date marts: a few thousand
    rows, cheaper written whole than merged). `merge_on` set: `result` is only the recomputed
    rows, one per key, which the gate checks with the table's figures after the publish and the
    publish MERGEs by those keys (fct_orders: one row per order, so a whole-mart overwrite would
    cost as much as a rebuild). `keys`: how many keys were recomputed; `dates_recorded`: for a
    merge, the date column whose values among the rows it replaces and the rows it writes the
    commit records (CHANGED_DATES_KEY: the dates a per-date mart built on this one recomputes)."""

    result: DataFrame
    keys: int
    cached: tuple[DataFrame, ...] = ()  # released after the write
    merge_on: tuple[str, ...] = ()
    dates_recorded: str | None = None


@dataclass(frozen=True)
class Mart:
    name: str
    silver: tuple[str, ...]
    build: Callable[[Inputs], DataFrame]
    gold: tuple[str, ...] = ()  # gold tables read (their steps must run first)
    main: tuple[str, ...] = ()  # inputs whose row counts make rows_in
    uses_as_of: bool = False
    definition: int = 1  # bump when the business rule changes: forces a rebuild
    check_rows_match_main: bool = False  # one output row per main-input row
    # The incremental rule: an Update, None when no key is affected, or why to rebuild in full.
    update: Callable[[Inputs, Since], Update | str | None] | None = None
    # Inputs the rule reads at the current version only, learning what changed from the commits'
    # metadata (never an old version nor the change feed): a VACUUM since removes nothing it reads.
    metadata_only: tuple[str, ...] = ()


def _fct_orders(i: Inputs) -> DataFrame:
    options = i.options or FctOrdersOptions()  # none given: the defaults (the brief's rule)
    return T.fct_orders(
        i["orders"], i["accounts"], i["fx_calendar"], before_first_version=options.before_first_version
    )


def _update_fct_orders(i: Inputs, since: Since) -> Update | None:
    """The orders whose silver row, FX rate (as of the order date) or account attributes in force
    (at the order time) changed, recomputed; a full rebuild instead when they, or the rows the
    MERGE would write (the new orders and every row of a file holding a replaced one), are more
    than `incremental.rebuild_above_share` of the orders (config/marts.yaml). The commit records
    their order dates, before and after, for revenue_daily."""
    options = i.options or FctOrdersOptions()
    fx = accounts = None
    if since.changed("silver/fx_rates"):
        fx = (
            I.fx_changes(since.changes("silver/fx_rates"), since.before("silver/fx_rates")),
            i["fx_calendar"],
        )
    if since.changed("silver/accounts"):
        # Only accounts in the change feed (inserted or updated versions) can differ: silver's
        # SCD2 merge deletes a superseded version only beside the version that replaces it.
        accounts = I.account_changes(
            i["orders"],
            since.before("silver/accounts"),
            i["accounts"],
            options.before_first_version,
            since.changes("silver/accounts"),
        )
    ids = I.affected_orders(i["orders"], since.changes("silver/orders"), fx, accounts).cache()
    keys = ids.count()
    if not keys:
        ids.unpersist()
        return None
    rows = _fct_orders(
        Inputs({**i.tables, "orders": i["orders"].join(ids, "order_id", "left_semi")}, i.as_of, options)
    )
    return Update(rows, keys, (ids,), merge_on=("order_id",), dates_recorded="order_date")


def _replace_dates(
    since: Since, column: str, dates: list[date | None], build: Callable[[Column], DataFrame]
) -> Update | str | None:
    """Recompute a per-date mart on `dates` only (`build` gets the filter on `column`); its other
    dates are kept as they are."""
    if None in dates:
        return f"a changed row has no {column}"
    found = sorted(set(dates))
    if not found:
        return None
    on_dates = F.col(column).isin([date_value(d) for d in found])
    rows = build(on_dates)
    lake = since.ctx.lake
    kept = lake.read(since.out_path, version=since.out_version)
    kept = kept.where(~F.coalesce(on_dates, F.lit(False)))
    return Update(kept.unionByName(rows), len(found))


def _revenue_daily(i: Inputs) -> DataFrame:
    return T.revenue_daily(i["fct_orders"])


def _update_revenue_daily(i: Inputs, since: Since) -> Update | str | None:
    """The order dates fct_orders' incremental writes since recomputed (before and after: an
    updated order may move to another date), as their commits record them, recomputed."""
    recorded = since.recorded("gold/fct_orders", CHANGED_DATES_KEY)
    if recorded is None:
        return f"a commit of gold/fct_orders since records no {CHANGED_DATES_KEY}"
    dates = [date.fromisoformat(d) if d is not None else None for d in recorded]
    return _replace_dates(since, "order_date", dates, lambda on: T.revenue_daily(i["fct_orders"].where(on)))


def _pipeline_summary(i: Inputs) -> DataFrame:
    return T.pipeline_summary(i["opportunities"], i["fx_calendar"], i["accounts"])


def _customer_360(i: Inputs) -> DataFrame:
    assert i.as_of is not None
    opps = T.opportunities_usd(i["opportunities"], i["accounts"], i["fx_calendar"])
    return T.customer_360(
        i["accounts"],
        i["fct_orders"],
        opps,
        i["contacts"],
        i["behavior_events"],
        i["product_events"],
        i.as_of,
    )


def _engagement_daily(i: Inputs) -> DataFrame:
    return T.engagement_daily(i["behavior_events"], i["product_events"])


def _update_engagement_daily(i: Inputs, since: Since) -> Update | str | None:
    """The event dates of the new web and product events, recomputed."""
    # Events are insert-only in silver (contract history: events): the new rows are the change.
    dates = I.changed_dates(
        "event_date", since.changes("silver/behavior_events"), since.changes("silver/product_events")
    )
    return _replace_dates(
        since,
        "event_date",
        [d for (d,) in dates.collect()],
        lambda on: T.engagement_daily(i["behavior_events"].where(on), i["product_events"].where(on)),
    )


MARTS: dict[str, Mart] = {
    m.name: m
    for m in [
        Mart(
            "fct_orders",
            silver=("orders", "accounts", "fx_rates"),
            build=_fct_orders,
            main=("orders",),
            definition=2,  # 2: no account version in force at order_ts -> unknown (was: the earliest)
            check_rows_match_main=True,
            update=_update_fct_orders,
        ),
        Mart(
            "revenue_daily",
            silver=(),
            gold=("fct_orders",),
            build=_revenue_daily,
            main=("fct_orders",),
            definition=2,  # 2: null country/segment shown as `unknown`
            update=_update_revenue_daily,
            metadata_only=("gold/fct_orders",),
        ),
        Mart(
            "pipeline_summary",
            silver=("opportunities", "accounts", "fx_rates"),
            build=_pipeline_summary,
            main=("opportunities",),
            definition=2,  # 2: an account deleted or unknown shown as segment `unknown` (was: null)
        ),
        Mart(
            "customer_360",
            silver=(
                "accounts",
                "opportunities",
                "fx_rates",
                "contacts",
                "behavior_events",
                "product_events",
            ),
            gold=("fct_orders",),
            build=_customer_360,
            main=("accounts",),
            uses_as_of=True,
        ),
        Mart(
            "engagement_daily",
            silver=("behavior_events", "product_events"),
            build=_engagement_daily,
            main=("behavior_events", "product_events"),
            update=_update_engagement_daily,
        ),
    ]
}


EVENT_TABLES = ("silver/behavior_events", "silver/product_events")  # as_of defaults to their latest date
EVENT_DATES_KEY = "latest_event_date"  # commit metadata: {table: [version, its latest event_date]}


def latest_event_dates(
    ctx: RunContext, versions: dict[str, int | None], recorded: dict[str, Any]
) -> dict[str, list]:
    """Each event table's latest event_date at the version read: the one recorded for that very
    version in the mart's last commit (a version's rows never change), else from the lake
    (`column_max`: the log's partition values, no data read)."""
    found = {}
    for key in EVENT_TABLES:
        version = versions[key]
        then = recorded.get(key)
        if then and then[0] == version:
            found[key] = then
            continue
        layer, name = key.split("/", 1)
        newest = ctx.lake.column_max(ctx.table_path(layer, name), "event_date", version)
        found[key] = [version, newest.isoformat() if newest else None]
    return found


def _resolve_as_of(ctx: RunContext, event_dates: dict[str, list]) -> date:
    as_of = getattr(ctx, "as_of", None)
    if as_of is not None:
        return as_of if isinstance(as_of, date) else date.fromisoformat(str(as_of))
    found = max((newest for _, newest in event_dates.values() if newest), default=None)
    if found is None:
        today = datetime.now(UTC).date()
        log.warning("gold: no events in silver to take as_of from; using today (UTC) %s", today)
        return today
    return date.fromisoformat(found)


def build_gold(ctx: RunContext, mart: str) -> Staged | Unchanged:
    """Build one gold mart from its inputs, or skip when its inputs and as_of are unchanged."""
    spec = MARTS.get(mart)
    if spec is None:
        raise KeyError(f"unknown gold mart {mart!r}; known: {', '.join(sorted(MARTS))}")
    marts_config = load_marts_config(ctx.settings.config_dir)
    options = getattr(marts_config, spec.name, None)
    rebuild_above = marts_config.incremental.rebuild_above_share
    out_path = ctx.table_path("gold", spec.name)

    sources = [("silver", name) for name in spec.silver] + [("gold", name) for name in spec.gold]
    versions = {f"{layer}/{name}": ctx.lake.version(ctx.table_path(layer, name)) for layer, name in sources}
    last = ctx.lake.newest_metadata_where(out_path, lambda metadata: FINGERPRINT_KEY in metadata) or {}
    previous = last.get(FINGERPRINT_KEY)
    event_dates = (
        latest_event_dates(ctx, versions, last.get(EVENT_DATES_KEY) or {}) if spec.uses_as_of else {}
    )
    as_of = _resolve_as_of(ctx, event_dates) if spec.uses_as_of else None
    fingerprint: dict[str, Any] = {
        "mart": spec.name,
        "definition": spec.definition,
        "options": asdict(options) if options is not None else {},
        "inputs": versions,
        "as_of": as_of.isoformat() if as_of else None,
    }
    if previous == fingerprint and not getattr(ctx, "full_refresh", False):
        log.info("gold %s: inputs unchanged (%s), skipping", spec.name, versions)
        return _unchanged(ctx, spec, out_path, versions, fingerprint, "inputs unchanged")

    # Read at the recorded versions (after the skip: a rerun reads nothing), so the fingerprint
    # names exactly what was used.
    tables = {
        name: ctx.lake.read(ctx.table_path(layer, name), version=versions[f"{layer}/{name}"])
        for layer, name in sources
    }
    rows_in = sum(tables[name].count() for name in spec.main)
    newest_at = stalest_input(ctx.lake, [ctx.table_path(layer, n) for layer, n in sources if n in spec.main])
    cached: list[DataFrame] = []
    if "fx_rates" in tables:
        # Tiny (days x currencies) and used twice per lookup (the join and its end-date clamp):
        # computed once. Broadcast at the join (transforms.fx_lookup).
        tables["fx_calendar"] = T.fx_calendar(tables["fx_rates"]).cache()
        cached.append(tables["fx_calendar"])
    inputs = Inputs(tables, as_of, options)

    def release() -> None:
        for frame in cached:
            frame.unpersist()

    try:
        commits: dict[str, list[Commit]] = {}  # the changed inputs' commits since, read once
        reason = _full_rebuild_reason(
            ctx, spec, previous, fingerprint, commits, rows_in, marts_config.incremental.rebuild_below_rows
        )
        update = None
        out_version: int | None = None
        after: _AfterMerge | None = None  # a merged update: the table as its publish leaves it
        if reason is None:
            assert spec.update is not None and previous is not None
            out_version = ctx.lake.version(out_path)
            found = spec.update(
                inputs, Since(ctx, previous["inputs"], versions, out_path, commits, out_version)
            )
            if isinstance(found, str):
                reason = found
            elif found is None:
                # Nothing this mart shows changed; the old fingerprint stays, so the next run
                # reads the changes since the same versions again.
                log.info("gold %s: inputs changed, no row affected", spec.name)
                release()
                return _unchanged(ctx, spec, out_path, versions, fingerprint, "no row affected")
            elif spec.check_rows_match_main and found.keys > rebuild_above * rows_in:
                # One row per main-input row: the keys are this share of the mart. Decided before
                # the result is computed: recomputing most keys and reading the mart besides costs
                # more than the rebuild (the ids are released with the rest).
                cached += found.cached
                reason = (
                    f"{found.keys} of {rows_in} rows affected, above incremental.rebuild_above_share "
                    f"{rebuild_above} of config/marts.yaml"
                )
            else:
                update = found
                cached += update.cached
        if update is not None:
            result = update.result.cache()
            cached.append(result)
            if update.merge_on:
                after, why = _after_merge(
                    ctx.lake.read(out_path, version=out_version),
                    result,
                    update.merge_on,
                    update.dates_recorded,
                )
                rows_out = after.rows if after is not None else 0
                reason = why
                if after is not None and after.written > rebuild_above * after.rows:
                    # Delta rewrites a file whole to replace one of its rows: replacing a few
                    # rows in each of the mart's files costs more than the rebuild.
                    reason = (
                        f"{after.written} of {after.rows} rows to write ({after.inserted} new, "
                        f"{after.rewritten} in the files holding the {after.merged - after.inserted} "
                        f"replaced), above incremental.rebuild_above_share {rebuild_above} of "
                        "config/marts.yaml"
                    )
            else:
                rows_out = result.count()
            if reason is None and spec.check_rows_match_main and rows_out != rows_in:
                # More rows than silver has: silver dropped some (a delete the change feed of
                # inserts and updates does not show). A full rebuild takes silver as it is.
                reason = f"{rows_out} rows after the update from {rows_in} input rows"
            if reason is not None:
                update = after = None
        if update is None:
            log.info("gold %s: full rebuild (%s)", spec.name, reason)
            result = spec.build(inputs).cache()
            cached.append(result)
            rows_out = result.count()
            if spec.check_rows_match_main and rows_out != rows_in:
                raise RuntimeError(
                    f"gold {spec.name}: {rows_out} rows from {rows_in} input rows; expected one per input "
                    "row (overlapping SCD2 versions or duplicate keys in silver?); nothing written"
                )
    except BaseException:
        release()
        raise

    def publish() -> StepResult:
        metadata = {
            **({CHANGED_DATES_KEY: after.dates} if after is not None and after.dates is not None else {}),
            FINGERPRINT_KEY: fingerprint,
            WRITE_KEY: "full" if update is None else "incremental",
            "run_id": ctx.run_id,
            "rows": rows_out,
            NEWEST_KEY: newest_at,
            **({EVENT_DATES_KEY: event_dates} if event_dates else {}),
        }
        if update is not None and (moved := ctx.lake.version(out_path)) != out_version:
            # The update keeps the rows of out_version (and the gate judged the table after it on
            # them): a commit since would be undone by an overwrite, unjudged by a merge.
            raise LakeError(
                f"gold {spec.name}: {out_path} moved from version {out_version} to {moved} while this "
                "incremental build was staged (another writer?); nothing written; run the step again"
            )
        if update is not None and update.merge_on:
            written = ctx.lake.merge(out_path, result, MergeSpec(keys=update.merge_on), metadata=metadata)
        else:
            written = ctx.lake.overwrite(out_path, result, metadata=metadata)
        log.info(
            "gold %s: %d rows in, %d rows out, version %s", spec.name, rows_in, rows_out, written.version
        )
        return StepResult(
            rows_in,
            rows_out,
            {
                "table": out_path,
                "version": written.version,
                "write": metadata[WRITE_KEY],
                # why in full, or how many keys (orders, dates) were recomputed
                **({"full_rebuild": reason} if update is None else {"keys_recomputed": update.keys}),
                **({"rows_merged": after.merged} if after is not None else {}),
                "inputs": versions,
                "as_of": fingerprint["as_of"],
                NEWEST_KEY: newest_at,  # as fresh as the stalest main input (pipeline.freshness)
            },
        )

    # Write, audit, publish: the driver's check judges the mart as the write will leave it, or
    # the rows a merge adds with the table's figures after it.
    table = after.figures if after is not None else None
    return Staged(spec.name, "gold", result, publish, table=table, release=release)


@dataclass(frozen=True)
class _AfterMerge:
    """A mart once a batch is merged into it by key: its rows, the batch's, and the table's
    figures for the check (the table itself unevaluated: read only for what the batch cannot
    tell, gold `counts` conditions)."""

    rows: int
    merged: int
    frame: DataFrame
    inserted: int  # of the merged rows, those replacing none
    rewritten: int  # the rows of the files holding a replaced row: the MERGE rewrites them
    dates: list[str | None] | None = None  # _after_merge's `dates`: ISO, sorted (a null first)

    @property
    def written(self) -> int:
        return self.inserted + self.rewritten

    def figures(self) -> TableAfter:
        return TableAfter(self.rows, None, self.frame)


def _after_merge(
    current: DataFrame, batch: DataFrame, keys: tuple[str, ...], dates: str | None = None
) -> tuple[_AfterMerge | None, str | None]:
    """`current` once `batch` (cached) is merged into it by `keys` (a matched row replaced, an
    unmatched one inserted), or why not to merge: a key twice in the batch (MERGE refuses it, or
    would insert it twice). `dates`: a date column whose distinct values among the rows replaced
    and the batch's are returned too. All in one query (each costs its planning and a read of the
    table's log, more than its work on an increment), `current` read once (`incremental.merge_work`:
    its rows, those replaced, and the rows of their files): the rows after are the table's rows
    now, less those the batch replaces, plus the batch's."""
    figures = batch.agg(F.count(F.lit(1)).alias("rows"), F.count_distinct(*keys).alias("keys")).crossJoin(
        I.merge_work(current, batch, keys, dates)
    )
    if dates:
        figures = figures.crossJoin(batch.agg(I.distinct_dates(dates).alias("written_dates")))
    counted = figures.first()
    if counted["rows"] != counted["keys"]:
        return None, f"{counted['rows'] - counted['keys']} repeated or null keys among the recomputed rows"
    found = None
    if dates:
        both = {d for (d,) in counted["dates"] + counted["written_dates"]}
        found = sorted((d.isoformat() if d is not None else None for d in both), key=lambda d: d or "")
    frame = current.join(batch.select(*keys), list(keys), "left_anti").unionByName(batch)
    rows = counted["held"] - counted["matched"] + counted["rows"]
    inserted = max(counted["rows"] - counted["matched"], 0)  # a mart holding a key twice: none new
    return _AfterMerge(rows, counted["rows"], frame, inserted, counted["rewritten"], found), None


def _unchanged(
    ctx: RunContext, spec: Mart, out_path: str, versions: dict, fingerprint: dict, why: str
) -> Unchanged:
    """Nothing written: the table (and the last check's verdict) stands."""
    result = StepResult(
        0,
        0,
        {
            "skipped": why,
            "table": out_path,
            "version": ctx.lake.version(out_path),
            "inputs": versions,
            "as_of": fingerprint["as_of"],
            NEWEST_KEY: recorded_newest(ctx.lake, out_path),
        },
    )
    return Unchanged(spec.name, "gold", result)


def _vacuumed_files(commits: list[Commit]) -> bool:
    """Whether a VACUUM among `commits` deleted files, or may have: one that deleted nothing
    (VACUUM END's numDeletedFiles 0; delta-spark logs every maintenance's) leaves every version
    readable, and gold incremental. A VACUUM START without its END (a vacuum cut short) may
    have deleted some."""
    starts = sum(c.operation == "VACUUM START" for c in commits)
    ends = [c for c in commits if c.operation == "VACUUM END"]
    return starts > len(ends) or any(c.metrics.get("numDeletedFiles", 1) > 0 for c in ends)


def _full_rebuild_reason(
    ctx: RunContext,
    spec: Mart,
    previous: dict[str, Any] | None,
    fingerprint: dict[str, Any],
    commits: dict[str, list[Commit]],
    rows_in: int,
    rebuild_below: int,
) -> str | None:
    """Why the mart cannot (or should not: `rows_in` main-input rows, below `rebuild_below`) be
    updated incrementally from its last build, or None when it can; `commits` gets the commits
    since of each changed input it looked through."""
    if getattr(ctx, "full_refresh", False):
        return "--full-refresh"
    if spec.update is None:
        return "no incremental rule"
    if previous is None:
        return "no previous build"
    changed = [k for k in ("mart", "definition", "options", "as_of") if previous.get(k) != fingerprint[k]]
    if changed:
        return f"{', '.join(changed)} changed"
    if rows_in < rebuild_below:
        return (
            f"{rows_in} input rows, below incremental.rebuild_below_rows {rebuild_below} of config/marts.yaml "
            "(a rebuild costs less than finding the changed rows)"
        )
    for key, now in fingerprint["inputs"].items():
        then = previous.get("inputs", {}).get(key)
        if then is None or now is None or then > now:
            return f"{key}: version {then} recorded, {now} now"
        if then == now:
            continue
        layer, name = key.split("/", 1)
        path = ctx.table_path(layer, name)
        # Exactly the commits then+1..now: newer ones may have landed since `now` was read, and
        # log cleanup may have dropped old ones (their recorded changes would be missed).
        found = [c for c in ctx.lake.history(path, ctx.lake.version(path) - then) if then < c.version <= now]
        if sorted(c.version for c in found) != list(range(then + 1, now + 1)):
            return f"{key}: the log no longer holds every commit since version {then}"
        commits[key] = found
        if key not in spec.metadata_only and _vacuumed_files(found):
            # The old version and the change feed the rule reads may be gone with the files.
            return f"{key} vacuumed since version {then}"
        for commit in commits[key]:
            if commit.metadata.get(WRITE_KEY) == "full":
                return f"{key} rebuilt in full since version {then}"
            if commit.operation == "DELETE" and key not in spec.metadata_only:
                # an erasure (or an operator's delete): the rules read rows added, never rows gone
                return f"{key}: rows deleted at version {commit.version}"
    return None
