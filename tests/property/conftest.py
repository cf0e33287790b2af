"""Hypothesis profiles for the property tests.

`ci` (chosen when the CI environment variable is set, as GitHub Actions sets it, or with
HYPOTHESIS_PROFILE=ci): derandomized, so a CI run tries the same examples every time and a red
build reproduces locally with the same profile. `dev` (the default): a fresh random search per
run, printing the `@reproduce_failure` blob of any failure. Neither keeps an example database, so
no `.hypothesis/` folder appears in the checkout. Example counts are per test (Spark-backed
properties try few, small examples); `deadline=None` because Spark's timing under load is not a
property of the code.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {"database": None, "deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("ci", derandomize=True, print_blob=True, **_COMMON)
settings.register_profile("dev", print_blob=True, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))
