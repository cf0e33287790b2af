"""spark-submit entry point of the EMR executors: one DAG step by name, as a member of a run a
driver elsewhere owns (`--step NAME --run-id ID --env ENV --member`, the arguments
pipeline.deploy.submit.job_submission gives every job run)."""

import sys

from pipeline.jobs import main

if __name__ == "__main__":
    sys.exit(main())
