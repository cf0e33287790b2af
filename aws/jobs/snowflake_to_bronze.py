"""spark-submit entry point: Snowflake order unloads -> bronze (step bronze_snowflake_orders of config/pipeline.yaml)."""

import sys

from pipeline.entry import main

if __name__ == "__main__":
    sys.exit(main("bronze_snowflake_orders"))
