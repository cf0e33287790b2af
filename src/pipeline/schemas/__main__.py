"""`python -m pipeline.schemas --write | --check | --validate [CONFIG_DIR]` (pipeline.schemas)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.schemas import REGENERATE, SCHEMA_DIR, config_files, drift, validate_file, write
from pipeline.settings import default_config_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.schemas",
        description="JSON Schemas of the configuration files (schemas/*.schema.json and the editor "
        "mapping .vscode/settings.json), generated from the loaders' models.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="regenerate the published schemas")
    action.add_argument(
        "--check", action="store_true", help="exit 1 when the published schemas differ from the models"
    )
    action.add_argument(
        "--validate",
        nargs="?",
        const="",
        metavar="CONFIG_DIR",
        help="validate every config file against its schema (default: LAKEHOUSE_CONFIG_DIR or ./config)",
    )
    args = parser.parse_args(argv)
    if args.write:
        for path in write():
            print(f"wrote {path}")
        return 0
    if args.check:
        problems = drift()
        print("\n".join(problems) if problems else f"schemas are up to date ({REGENERATE} regenerates them)")
        return 1 if problems else 0
    config_dir = Path(args.validate) if args.validate else default_config_dir()
    problems = [p for f in config_files(config_dir) for p in validate_file(f, config_dir, SCHEMA_DIR)]
    print("\n".join(problems) if problems else f"{config_dir}: every file matches its schema")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
