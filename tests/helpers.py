"""Building run contexts for tests on a temporary lake, sharing the suite's SparkSession."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.catalog import load_catalog
from pipeline.context import RunContext
from pipeline.lake import open_lake
from pipeline.settings import load_settings

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def session_conf(spark, key: str, value: str) -> Iterator[None]:
    """`key` set to `value` in the shared session for the block, then back to what it was
    (unset where it was unset): the next test module gets the session as it was."""
    before = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)


def make_ctx(
    spark,
    lake_root: Path | str,
    run_id: str = "test-run",
    engine: str = "delta-rs",
    config_dir: Path = REPO / "config",
    **settings_changes,
) -> RunContext:
    """A context on `lake_root` (a folder or an s3a:// URI) with the given lake engine, reading
    its configuration from `config_dir` (the repo's config/ unless a test brings its own)."""
    settings = load_settings("local", lake_root=str(lake_root), config_dir=config_dir)
    settings = dataclasses.replace(settings, **settings_changes)
    catalog = load_catalog(settings.config_path(settings.datasets_file))
    return RunContext(
        settings, spark, open_lake(engine, spark, settings.lake.storage_options), catalog, run_id
    )


OPENLINEAGE_SCHEMA = REPO.parent / "shared" / "specs" / "openlineage" / "OpenLineage.json"


def openlineage_validator():
    """A validator for the OpenLineage core schema (the project's shared/ folder beside the repo).
    The core schema has only internal `#/definitions/...` references (facets are open `BaseFacet`
    objects there), so it is validated as is with a Draft 2020-12 validator and format checking;
    in case a future copy references external facet schemas, the registry maps any unknown URI to
    a permissive `{}` so the core structure is still checked offline."""
    import json

    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    def permissive(uri: str) -> Resource:
        return Resource.from_contents({}, default_specification=DRAFT202012)

    schema = json.loads(OPENLINEAGE_SCHEMA.read_text())
    return jsonschema.Draft202012Validator(
        schema,
        registry=Registry(retrieve=permissive),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


def tail_of_logs(paths: list[Path], missing: str, lines: int = 40) -> str:
    """The last lines of each existing log (a test server's own log and its stdout), for errors
    that show why a server did not start."""
    chunks = []
    for path in paths:
        if path.exists():
            text = path.read_text(errors="replace").splitlines()[-lines:]
            chunks.append(f"--- {path} (last {len(text)} lines) ---\n" + "\n".join(text))
    return "\n".join(chunks) or missing


def land_csv(lake: Path, folder: str, name: str, header: str, lines: list[str]) -> None:
    """A CSV landing file `<lake>/landing/<folder>/<name>`: `header`, then `lines`."""
    target = lake / "landing" / folder
    target.mkdir(parents=True, exist_ok=True)
    (target / name).write_text("\n".join([header, *lines]) + "\n")


def run_ok(ctx, steps: list[str]) -> None:
    """`steps` of the committed DAG, one run, in this process; the run's log when one fails."""
    from pipeline.app import local_executor
    from pipeline.driver.runner import run_steps
    from tests.lake_compare import DAG

    out = io.StringIO()
    state = run_steps(ctx, DAG, steps, out, executor=local_executor())
    assert not state.failed, out.getvalue()
