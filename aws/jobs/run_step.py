"""spark-submit entry point of the EMR executors: one DAG step by name, as a member of a run a
driver elsewhere owns (`--step NAME --run-id ID --env ENV --member`, the arguments
pipeline.deploy.submit.job_submission gives every job run). It runs under the driver's lease on
the lake: refused unless run ID holds it (pipeline.lease)."""

import sys

from pipeline.entry import main

if __name__ == "__main__":
    sys.exit(main())
