"""spark-submit entry point: vendor FX rate files -> bronze (step bronze_fx_rates of config/pipeline.yaml)."""

import sys

from pipeline.entry import main

if __name__ == "__main__":
    sys.exit(main("bronze_fx_rates"))
