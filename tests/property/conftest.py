"""Hypothesis profiles for the property tests.

`ci` (chosen by `make test` and so by `.ci/run`, when the CI environment variable is set, as
GitHub Actions sets it, or with HYPOTHESIS_PROFILE=ci): derandomized, so a CI run tries the same examples every time and a red
build reproduces locally with the same profile. `dev` (the default): a fresh random search per
run, printing the `@reproduce_failure` blob of any failure. `smoke`: five examples a test.
None keeps an example database, so no `.hypothesis/` folder appears in the checkout. The
Spark-backed properties try 25 small examples each in `dev` and 4 in `ci`, besides their
`@example`s of the known edge cases: each example pays Spark jobs per silver run (seconds on 2
cores: 6 examples made the two SCD2 run properties 113 s of the suite's 20 minutes), and `ci`'s
derandomized examples are the same on every build, so more of them there repeat one search at
every build's cost while `dev` runs search afresh. `deadline=None` because
Spark's timing under load is not a property of the code.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "database": None,
    "deadline": None,
    "max_examples": 25,  # the Spark-backed tests' count; the pure-Python ones ask for more
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow],
}
settings.register_profile("ci", derandomize=True, **{**_COMMON, "max_examples": 4})
settings.register_profile("dev", **_COMMON)
settings.register_profile("smoke", **{**_COMMON, "max_examples": 5})  # a quick look on a busy machine
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))
