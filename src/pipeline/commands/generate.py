"""`lakehouse generate`: a deterministic sample landing zone under <lake>/landing."""

from __future__ import annotations

import argparse
import time
from datetime import date
from pathlib import Path

from pipeline.app.arguments import settings_from_args
from pipeline.app.process import configure_process
from pipeline.settings import ConfigError


def cmd_generate(args: argparse.Namespace) -> int:
    from pipeline.generate import generate

    configure_process(args.log_level)
    settings = settings_from_args(args)
    if "://" in settings.lake.root:
        raise ConfigError("generate writes a local landing zone; give a local --lake folder")
    g = settings.generator
    landing = Path(settings.lake.root) / "landing"
    started = time.monotonic()
    manifest = generate(
        landing,
        scale=args.scale if args.scale is not None else g.scale,
        seed=args.seed if args.seed is not None else g.seed,
        defect_rate=args.defect_rate if args.defect_rate is not None else g.defect_rate,
        days=args.days if args.days is not None else g.days,
        skew=args.skew,
        **({"end_date": date.fromisoformat(args.end_date)} if args.end_date else {}),
    )
    total = sum(d["records"] for d in manifest["datasets"].values())
    for name, d in sorted(manifest["datasets"].items()):
        print(f"  {name:<20} {d['records']:>10,} records in {d['files']:>4} files")
    print(f"generated {total:,} records in {time.monotonic() - started:.1f}s under {landing}")
    return 0
