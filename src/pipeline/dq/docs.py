"""GX Data Docs under `<lake>/_ops/data_docs/`, built once when a run ends.

Rendering every validation result into HTML takes a while (~0.3 s per gated table), so the gates
only validate and record; `DataDocsObserver` builds the site once per process at run end (before
the run report, which links to it). The GX context is ephemeral: the site shows the validations
of this process (the whole DAG locally; one step per spark-submit on EMR). The durable record of
every gate is `<lake>/_ops/dq_results`. Docs are built for local lakes only.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.dq.config import DqConfig
from pipeline.dq.gate import _Gx, docs_path, dq_config, dq_enabled

log = logging.getLogger(__name__)


class DataDocsObserver:
    """StepObserver: builds the Data Docs at run end when this process ran a GX validation."""

    def __init__(self) -> None:
        self.last_index: str | None = None

    def step_started(self, ctx: Any, step: Any, outcome: Any) -> None:
        pass

    def step_finished(self, ctx: Any, step: Any, outcome: Any) -> None:
        pass

    def run_finished(self, ctx: Any, state: Any) -> None:
        if dq_enabled(ctx):
            self.last_index = build_docs(ctx, dq_config(ctx))


def build_docs(ctx: Any, config: DqConfig) -> str | None:
    """Rebuild GX Data Docs under `<lake>/_ops/data_docs/` (local lakes); the index path."""
    if not config.data_docs or _Gx.context is None:
        return None
    base = docs_path(ctx)
    if "://" in base and not base.startswith("file://"):
        log.info("dq: Data Docs are built for local lakes only; skipping for %s", base)
        return None
    base = base.removeprefix("file://")
    with _Gx.lock:
        context = _Gx.get()
        site = _Gx.sites.get(base)
        if site is None:
            site = f"lake_{len(_Gx.sites)}"
            context.add_data_docs_site(
                site_name=site,
                site_config={
                    "class_name": "SiteBuilder",
                    "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": base},
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )
            _Gx.sites[base] = site
        try:
            return context.build_data_docs(site_names=[site]).get(site)
        except Exception:  # noqa: BLE001 - docs are a report; a rendering problem must not fail the step
            log.warning("dq: building Data Docs under %s failed", base, exc_info=True)
            return None
