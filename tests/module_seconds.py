"""Seconds each test module took in one full suite run (`make test`: 2 workers, 2 cores), kept in
tests/module_seconds.json for tests/conftest.py: the workers take modules whole
(`--dist loadfile`), so the heaviest go first and the run ends on small ones, with both workers
busy to the end (longest first). `make test` passes `--no-loadscope-reorder`: pytest-xdist would
otherwise hand modules out by their number of tests. A module missing from the file (new,
renamed) keeps its collection place after them; a stale figure only reorders, it never changes
what runs.

Refresh from a run's JUnit report:
    make test PYTEST_ARGS=--junitxml=/tmp/suite.xml
    .venv/bin/python tests/module_seconds.py /tmp/suite.xml
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

FILE = Path(__file__).with_suffix(".json")
LEAST_S = 20  # lighter modules keep their collection order: their order hardly moves the end


def module_seconds(junit_xml: Path) -> dict[str, int]:
    seconds: Counter[str] = Counter()
    for case in ET.parse(junit_xml).iter("testcase"):
        parts = case.get("classname", "").split(".")
        modules = [i for i, part in enumerate(parts) if part.startswith("test_")]
        if modules:
            seconds["/".join(parts[: modules[0] + 1]) + ".py"] += float(case.get("time", 0))
    return {module: round(s) for module, s in seconds.most_common() if s >= LEAST_S}


def load() -> dict[str, int]:
    return json.loads(FILE.read_text()) if FILE.exists() else {}


if __name__ == "__main__":
    FILE.write_text(json.dumps(module_seconds(Path(sys.argv[1])), indent=1) + "\n")
    print(f"{FILE}: {len(load())} modules")
