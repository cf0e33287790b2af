"""The options every command shares, for both shells (`lakehouse`, pipeline.cli; the spark-submit
entry points, pipeline.entry), and the settings they select."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pipeline.run_id import run_id_argument
from pipeline.settings import Settings, load_settings


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """--env, --lake, --config-dir, --log-level: what every command needs to find its settings."""
    parser.add_argument("--env", help="config environment: local (default), dev, prod; or LAKEHOUSE_ENV")
    parser.add_argument(
        "--lake", help="lake root (folder or s3:// URI); wins over LAKEHOUSE_LAKE_ROOT and config"
    )
    parser.add_argument("--config-dir", type=Path, help="folder holding <env>.yaml (default ./config)")
    parser.add_argument("--log-level", default=os.environ.get("LAKEHOUSE_LOG_LEVEL", "WARNING"))


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)
    parser.add_argument(
        "--run-id",
        type=run_id_argument,
        help="run id to use (default: a new one; letters, digits, '.', '_', '-'); an existing run "
        "id continues that run: the selected steps are rerun and recorded in its state",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    return load_settings(args.env, lake_root=args.lake, config_dir=args.config_dir)
