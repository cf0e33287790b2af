"""The DAG file (`config/pipeline.yaml`): steps, their job kind, dataset and dependencies."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.settings import ConfigError, parse_typed


@dataclass(frozen=True)
class Step:
    job: str
    dataset: str
    depends_on: list[str] = field(default_factory=list)
    description: str = ""
    name: str = ""


@dataclass(frozen=True)
class Dag:
    steps: dict[str, Step]  # in file order

    def order(self) -> list[str]:
        """Topological order; among steps that are ready, file order (stable, readable)."""
        done: list[str] = []
        pending = list(self.steps)
        while pending:
            ready = [s for s in pending if all(d in done for d in self.steps[s].depends_on)]
            if not ready:
                raise ConfigError(f"pipeline DAG has a cycle among: {', '.join(pending)}")
            done.append(ready[0])
            pending.remove(ready[0])
        return done

    def select(self, only: list[str] | None = None) -> list[str]:
        order = self.order()
        if not only:
            return order
        unknown = sorted(set(only) - set(self.steps))
        if unknown:
            raise ConfigError(f"unknown step(s) {', '.join(unknown)}; the DAG has: {', '.join(order)}")
        return [s for s in order if s in only]


def load_dag(path: Path, known_jobs: set[str]) -> Dag:
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the pipeline DAG: {exc}") from exc
    entries = raw.get("steps") if isinstance(raw, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"{path}: expected a non-empty mapping under 'steps'")
    steps = {}
    for name, entry in entries.items():
        step = parse_typed(Step, {**(entry or {}), "name": name}, str(path), f"steps.{name}")
        if step.job not in known_jobs:
            raise ConfigError(
                f"{path}: steps.{name}.job: unknown job {step.job!r}; known: {', '.join(sorted(known_jobs))}"
            )
        steps[name] = step
    for name, step in steps.items():
        missing = [d for d in step.depends_on if d not in steps]
        if missing:
            raise ConfigError(f"{path}: steps.{name}.depends_on: no such step(s) {', '.join(missing)}")
    dag = Dag(steps)
    dag.order()  # fail on cycles at load time
    return dag
