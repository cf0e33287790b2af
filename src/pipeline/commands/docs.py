"""`lakehouse docs`: docs/schemas/ from the contracts, catalogue, DAG and gold marts."""

from __future__ import annotations

import argparse
import sys


def cmd_docs(args: argparse.Namespace) -> int:
    """Write docs/schemas/ from the contracts, catalogue, DAG and gold marts; no SparkSession.
    With --check: write nothing, list drifted pages, exit 1 when any."""
    from pipeline.docs import DocSources, check_docs, write_docs
    from pipeline.settings import default_config_dir

    sources = DocSources.from_config_dir(args.config_dir or default_config_dir())
    if args.check:
        drifted = check_docs(sources, args.out)
        for name in drifted:
            print(f"drifted: {args.out / name}")
        if drifted:
            print(f"{len(drifted)} page(s) differ from the sources; run `lakehouse docs`", file=sys.stderr)
            return 1
        print(f"{args.out}: up to date")
        return 0
    changed = write_docs(sources, args.out)
    for name in changed:
        print(f"wrote {args.out / name}")
    print(f"{args.out}: {len(changed)} page(s) changed")
    return 0
