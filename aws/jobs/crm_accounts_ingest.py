"""spark-submit entry point: CRM accounts CSV exports -> bronze (step bronze_crm_accounts of config/pipeline.yaml)."""

import sys

from pipeline.entry import main

if __name__ == "__main__":
    sys.exit(main("bronze_crm_accounts"))
