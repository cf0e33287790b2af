"""The lake's Delta tables for Terraform, generated from config/.

`python -m pipeline.deploy.terraform_tables --write` writes
`aws/terraform/modules/lakehouse/delta_tables.tf`: a `locals` block naming the Delta tables of
each prefix (bronze = config/datasets.yaml, silver and quarantine = config/contracts/*.yaml,
gold = the gold steps of config/pipeline.yaml, as the dashboards count them). Each table gets a
`_delta_log/.tmp/` expiry rule; the gold ones are also registered in Glue. Adding a source is
rerunning this; `--check` exits 1 when the committed file differs from a fresh rendering (a test
does the same). The file is plain HCL, so `terraform validate` and `fmt` read it as any other.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.observability.dashboards import CONFIG_DIR, layer_datasets
from pipeline.settings import PROJECT_ROOT

OUT = PROJECT_ROOT / "aws" / "terraform" / "modules" / "lakehouse" / "delta_tables.tf"
REGENERATE = "python -m pipeline.deploy.terraform_tables --write"
# The operational Delta tables under <lake>/_ops (DQ results, bronze's ledger of ingested and of
# rejected files, erasures' audit): Delta tables like the others, so the same expiry rule.
OPS_TABLES = ["dq_results", "erasures", "ingested_files", "rejected_files"]


def delta_tables(config_dir: Path = CONFIG_DIR) -> dict[str, list[str]]:
    """Prefix -> the Delta tables under it, sorted."""
    layers = layer_datasets(config_dir)
    return {
        "bronze": layers["bronze"],
        "silver": layers["silver"],
        "quarantine": layers["silver"],  # one quarantine table per silver contract
        "gold": layers["gold"],
        "_ops": OPS_TABLES,
    }


def render(config_dir: Path = CONFIG_DIR) -> str:
    """The locals file, laid out as `terraform fmt` lays it out (keys aligned on `=`); names are
    identifiers, so a JSON string is an HCL string."""
    tables = delta_tables(config_dir)
    width = max(map(len, tables))
    lines = [f"    {prefix.ljust(width)} = {json.dumps(names)}" for prefix, names in tables.items()]
    return "\n".join(
        [
            f"# Generated from config/ by `{REGENERATE}`: do not edit.",
            "# The Delta tables of the lake by prefix; gold's are also registered in Glue.",
            "locals {",
            "  delta_tables = {",
            *lines,
            "  }",
            "}",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write the generated file")
    mode.add_argument("--check", action="store_true", help="exit 1 when the committed file drifts")
    parser.add_argument(
        "--out", type=Path, default=OUT, help=f"the file (default {OUT.relative_to(PROJECT_ROOT)})"
    )
    parser.add_argument("--config-dir", type=Path, default=CONFIG_DIR)
    args = parser.parse_args(argv)
    text = render(args.config_dir)
    if args.write:
        args.out.write_text(text)
        print(f"wrote {args.out}")
        return 0
    if not args.out.exists() or args.out.read_text() != text:
        print(f"out of date: {args.out}\nregenerate with: {REGENERATE}", file=sys.stderr)
        return 1
    print(f"{args.out} matches config/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
