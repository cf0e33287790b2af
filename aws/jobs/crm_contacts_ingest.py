"""spark-submit entry point: CRM contacts CSV exports -> bronze (step bronze_crm_contacts of config/pipeline.yaml)."""

import sys

from pipeline.entry import main

if __name__ == "__main__":
    sys.exit(main("bronze_crm_contacts"))
