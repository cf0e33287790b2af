"""Data-quality gates: GX suites generated from the contracts, row-level counts from the silver
step's single pass and per-dataset rules from config/dq.yaml, run after each silver and gold
write; results in `<lake>/_ops/dq_results` and GX Data Docs under `<lake>/_ops/data_docs/`."""

from pipeline.dq.config import DqConfig, load_dq_config
from pipeline.dq.gate import DqGateFailed, DqResult, dq_enabled, run_gate

__all__ = ["DqConfig", "DqGateFailed", "DqResult", "dq_enabled", "load_dq_config", "run_gate"]
