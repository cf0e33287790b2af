"""spark-submit entry point: Redshift behaviour events (UNLOAD files or JDBC, per config) -> bronze (step bronze_redshift_behavior of config/pipeline.yaml)."""

import sys

from pipeline.entry import main

if __name__ == "__main__":
    sys.exit(main("bronze_redshift_behavior"))
