"""Schema documentation generated from the contracts, the catalogue, the DAG and the gold marts.

`lakehouse docs` writes `docs/schemas/`; `tests/unit/test_schema_docs.py` fails when the
committed pages differ from what the generator renders (run `lakehouse docs` to refresh them).
"""

from pipeline.docs.schemas import DocSources, check_docs, render_docs, write_docs

__all__ = ["DocSources", "check_docs", "render_docs", "write_docs"]
