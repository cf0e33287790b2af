"""The layering a reader of src/pipeline relies on, read from its import statements (`ast`: those at
module level and those inside functions or under TYPE_CHECKING alike):

- the driver runs any step: it imports no job, no shell, no composition root, no DQ;
- a job (bronze, silver, gold) stages its publish and knows neither the shells nor the gate that
  judges it; its one DQ import is the Kafka stream's micro-batch gate;
- the job registry (pipeline.jobs) knows no shell;
- only the `lakehouse` shell itself (and `python -m pipeline`) imports pipeline.cli;
- the parts of pipeline (pipeline.<first part>) import each other without a cycle.

A failure names the file, the line and the import."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tests.helpers import REPO

SRC = REPO / "src"

SHELLS = ("pipeline.cli", "pipeline.commands", "pipeline.app")
JOB_LAYERS = ("pipeline.bronze", "pipeline.silver", "pipeline.gold")

# A stream has no publish to stage for the driver's edge to check: each micro-batch is judged
# inside the query, so the Kafka job calls the stream gate itself.
JOB_DQ_ALLOWED = {("pipeline.bronze.kafka", "pipeline.dq.stream")}

# Edges between parts (importer part, imported part) that close a cycle we know of, each with why
# it is still there; the cycle test ignores them and fails on any other cycle.
KNOWN_CYCLE_EDGES: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    importer: str  # pipeline.a.b
    target: str  # the module imported: pipeline.x.y (a module's name where `from p import m` names one)
    file: str  # src/pipeline/a/b.py
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.importer} imports {self.target}"


def modules(src: Path) -> dict[str, Path]:
    """Every module of the pipeline package under `src`, by dotted name (a package by its folder's)."""
    found = {}
    for path in sorted((src / "pipeline").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(src: Path) -> list[Import]:
    """Every import of a pipeline module by a pipeline module, wherever in the file it stands."""
    known = modules(src)
    found = []
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                # `from pipeline import cli` imports the module pipeline.cli
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            else:
                continue
            file = path.relative_to(src.parent).as_posix()
            found += [Import(name, t, file, node.lineno) for t in targets if _within(t, ("pipeline",))]
    return found


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def layer_violations(found: list[Import]) -> dict[str, list[Import]]:
    """Each layering rule, with the imports that break it."""
    return {
        "the driver imports no job, shell, job registry or DQ": [
            i
            for i in found
            if _within(i.importer, ("pipeline.driver",))
            and _within(i.target, ("pipeline.jobs", *SHELLS, "pipeline.dq", *JOB_LAYERS))
        ],
        "a job imports no shell, job registry or DQ (but the stream gate)": [
            i
            for i in found
            if _within(i.importer, JOB_LAYERS)
            and _within(i.target, (*SHELLS, "pipeline.jobs", "pipeline.dq"))
            and (i.importer, i.target) not in JOB_DQ_ALLOWED
        ],
        "the job registry imports no shell": [
            i for i in found if _within(i.importer, ("pipeline.jobs",)) and _within(i.target, SHELLS)
        ],
        "only the lakehouse shell imports pipeline.cli": [
            i
            for i in found
            if _within(i.target, ("pipeline.cli",))
            and not _within(i.importer, ("pipeline.cli",))
            and i.importer != "pipeline.__main__"
        ],
    }


def part_cycles(found: list[Import], ignore: set[tuple[str, str]]) -> list[list[str]]:
    """The import cycles between parts (pipeline.<first part>), each as the parts on it in order,
    found by a depth-first search over the part graph less the `ignore` edges."""
    graph: dict[str, set[str]] = {}
    for i in found:
        a, b = _part(i.importer), _part(i.target)
        if a and b and a != b and (a, b) not in ignore:
            graph.setdefault(a, set()).add(b)
    cycles, done = [], set()

    def visit(part: str, trail: list[str]) -> None:
        if part in trail:
            cycles.append([*trail[trail.index(part) :], part])
            return
        if part in done:
            return
        for nxt in sorted(graph.get(part, ())):
            visit(nxt, [*trail, part])
        done.add(part)

    for part in sorted(graph):
        visit(part, [])
    return cycles


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


@cache
def _pipeline_imports() -> tuple[Import, ...]:
    return tuple(imports(SRC))


def _explain(bad: list[Import]) -> str:
    return "\n".join(str(i) for i in bad)


# ---------------------------------------------------------------- the source tree


def test_the_scan_reads_module_and_function_level_imports_of_the_tree():
    found = _pipeline_imports()
    assert {"pipeline.cli", "pipeline.jobs", "pipeline.driver.runner", "pipeline.app.run"} <= set(
        modules(SRC)
    )
    edges = {(i.importer, i.target) for i in found}
    assert ("pipeline.cli", "pipeline.commands.run") in edges  # module level
    assert ("pipeline.app", "pipeline.jobs") in edges  # inside local_executor()
    assert ("pipeline.__main__", "pipeline.cli") in edges


def test_each_layer_imports_only_what_it_may():
    broken = {rule: bad for rule, bad in layer_violations(list(_pipeline_imports())).items() if bad}
    assert not broken, "\n".join(f"{rule}:\n{_explain(bad)}" for rule, bad in broken.items())


def test_the_streaming_job_still_imports_its_gate():
    # The allowance is for an import that exists: drop it from JOB_DQ_ALLOWED when the job no
    # longer imports the stream gate.
    edges = {(i.importer, i.target) for i in _pipeline_imports()}
    assert edges >= JOB_DQ_ALLOWED


def test_no_import_cycle_between_the_parts_of_pipeline():
    found = list(_pipeline_imports())
    cycles = part_cycles(found, set(KNOWN_CYCLE_EDGES))
    assert not cycles, "import cycles between parts of pipeline:\n" + "\n".join(
        " -> ".join(c) + "\n" + _explain([i for i in found if _on(i, c)]) for c in cycles
    )
    # Each known exception still closes a cycle: once it does not, it is to be removed from the list.
    for edge, why in KNOWN_CYCLE_EDGES.items():
        assert part_cycles(found, set(KNOWN_CYCLE_EDGES) - {edge}), f"{edge} closes no cycle now ({why})"


def _on(i: Import, cycle: list[str]) -> bool:
    pairs = set(zip(cycle, cycle[1:], strict=False))
    return (_part(i.importer), _part(i.target)) in pairs


# ---------------------------------------------------------------- the rules on a made-up tree


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "src"


GOOD = {
    "pipeline/__init__.py": "",
    "pipeline/__main__.py": "from pipeline.cli import main\n",
    "pipeline/cli.py": "from pipeline.commands import run\n",
    "pipeline/commands/__init__.py": "",
    "pipeline/commands/run.py": "from pipeline.app.run import run_pipeline\n",
    "pipeline/app/__init__.py": "def local_executor():\n    from pipeline.jobs import JOBS\n",
    "pipeline/app/run.py": "from pipeline.driver.runner import run_steps\n",
    "pipeline/jobs.py": "from pipeline.bronze.kafka import ingest_kafka\n",
    "pipeline/driver/__init__.py": "",
    "pipeline/driver/runner.py": "from . import state\n",
    "pipeline/driver/state.py": "",
    "pipeline/bronze/__init__.py": "",
    "pipeline/bronze/kafka.py": "from pipeline.dq.stream import gate\nfrom pipeline.driver import state\n",
    "pipeline/dq/__init__.py": "",
    "pipeline/dq/stream.py": "",
    "pipeline/dq/gate.py": "",
}


def test_a_tree_that_keeps_the_layers_passes(tmp_path):
    found = imports(_tree(tmp_path, GOOD))
    assert ("pipeline.driver.runner", "pipeline.driver.state") in {(i.importer, i.target) for i in found}
    assert not any(layer_violations(found).values())
    assert part_cycles(found, set()) == []


def test_each_bad_import_is_named_by_its_rule(tmp_path):
    bad = {
        # function level, relative: the driver reaching for the job registry
        "pipeline/driver/runner.py": "def run():\n    from .. import jobs\n",
        "pipeline/bronze/kafka.py": "from pipeline.dq.gate import check\n",  # a job judging itself
        "pipeline/jobs.py": "from pipeline.app import local_executor\n",
        "pipeline/commands/run.py": "import pipeline.cli\n",
    }
    found = imports(_tree(tmp_path, {**GOOD, **bad}))
    named = {rule: {(i.importer, i.target, i.line) for i in v} for rule, v in layer_violations(found).items()}
    assert named == {
        "the driver imports no job, shell, job registry or DQ": {
            ("pipeline.driver.runner", "pipeline.jobs", 2)
        },
        "a job imports no shell, job registry or DQ (but the stream gate)": {
            ("pipeline.bronze.kafka", "pipeline.dq.gate", 1)
        },
        "the job registry imports no shell": {("pipeline.jobs", "pipeline.app", 1)},
        "only the lakehouse shell imports pipeline.cli": {("pipeline.commands.run", "pipeline.cli", 1)},
    }
    assert str(next(i for i in found if i.importer == "pipeline.driver.runner")) == (
        "src/pipeline/driver/runner.py:2: pipeline.driver.runner imports pipeline.jobs"
    )


def test_a_cycle_between_parts_is_found_and_a_known_edge_excuses_it(tmp_path):
    # the stream gate reaching back into the job that calls it: bronze -> dq -> bronze
    found = imports(_tree(tmp_path, {**GOOD, "pipeline/dq/stream.py": "import pipeline.bronze.kafka\n"}))
    assert part_cycles(found, set()) == [["bronze", "dq", "bronze"]]
    assert part_cycles(found, {("dq", "bronze")}) == []
