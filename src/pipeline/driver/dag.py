"""The DAG file (`config/pipeline.yaml`): steps, their job kind, dataset and dependencies, and
the retry policy (top-level `retry:`; defaults when absent)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.driver.retry import RetryPolicy
from pipeline.settings import ConfigError, load_yaml, parse_typed

TOP_LEVEL_KEYS = ("steps", "retry")


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
    retry: RetryPolicy = field(default_factory=RetryPolicy)

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

    def upstream(self, name: str) -> set[str]:
        """Every step `name` depends on, directly or not (not `name` itself)."""
        found: set[str] = set()
        todo = list(self.steps[name].depends_on)
        while todo:
            current = todo.pop()
            if current not in found:
                found.add(current)
                todo.extend(self.steps[current].depends_on)
        return found

    def downstream(self, name: str) -> set[str]:
        """Every step depending on `name`, directly or not (not `name` itself)."""
        return {s for s in self.steps if name in self.upstream(s)}

    def select(
        self,
        only: list[str] | None = None,
        *,
        from_step: str | None = None,
        until_step: str | None = None,
    ) -> list[str]:
        """The steps to run, in order. Each given filter narrows the selection (they combine as
        an intersection): `only` these steps; `from_step` and everything downstream of it;
        `until_step` and everything upstream of it."""
        order = self.order()
        chosen = set(order)
        if only:
            self._check_known(only, "--only")
            chosen &= set(only)
        if from_step:
            self._check_known([from_step], "--from")
            chosen &= {from_step} | self.downstream(from_step)
        if until_step:
            self._check_known([until_step], "--until")
            chosen &= {until_step} | self.upstream(until_step)
        if not chosen:
            flags = [
                f"{flag} {value if isinstance(value, str) else ','.join(value)}"
                for flag, value in (("--only", only), ("--from", from_step), ("--until", until_step))
                if value
            ]
            raise ConfigError(f"{' and '.join(flags)} select no steps together")
        return [s for s in order if s in chosen]

    def _check_known(self, names: list[str], flag: str) -> None:
        unknown = sorted(set(names) - set(self.steps))
        if unknown:
            raise ConfigError(
                f"{flag}: unknown step(s) {', '.join(unknown)}; the DAG has: {', '.join(self.order())}"
            )


def load_dag(path: Path, known_jobs: set[str]) -> Dag:
    try:
        raw = load_yaml(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the pipeline DAG: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level with 'steps'")
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key(s) {', '.join(unknown)}; allowed: {', '.join(TOP_LEVEL_KEYS)}"
        )
    retry_block = {} if raw.get("retry") is None else raw["retry"]
    retry = parse_typed(RetryPolicy, retry_block, str(path), "retry")
    entries = raw.get("steps")
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
    dag = Dag(steps, retry)
    dag.order()  # fail on cycles at load time
    return dag
