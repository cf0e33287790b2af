"""The operations docs tell the truth about the commands: every command in a fenced code block of
docs/deploy.md and docs/runbook.md exists as written, and every local link of README.md and
docs/ points at a file that exists. Fast (no Spark, no AWS, no subprocess).

Rules for a fenced command line (one command per line, starting with the program):

- `make T...`: every target is a rule of the Makefile;
- `aws/scripts/X.sh ENV ...`: the script exists and is executable, ENV is dev or prod, and for
  submit.sh (and maintain.sh, which adds `--only` of the maintain steps) the rest parses as
  `lakehouse run --env ENV --executor emr-serverless ...` (what it execs), DAG steps included;
- `lakehouse ...` / `.venv/bin/lakehouse ...`: parses with the real parser
  (`pipeline.cli.build_parser()`), `--env` is a config environment, and the steps named by
  `--only/--from/--until` are steps of config/pipeline.yaml;
- `python -m M ...` / `.venv/bin/python -m M ...`: module M imports;
- `terraform ...`, `aws ...`: external tools, allowed as they are;
- anything else (another program, a `$ ` prompt, a `VAR=value` prefix) fails.

Placeholders in angle brackets are replaced before parsing: `<env>` by dev, `<run-id>` by a run
id, `<step>` by a step of the DAG; any other placeholder in a checked command fails.
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
COMMAND_DOCS = [DOCS / "deploy.md", DOCS / "runbook.md"]
OPS_DOCS = ["deploy.md", "runbook.md", "design.md", "security.md", "cost.md"]
EXTERNAL = {"terraform", "aws"}
ENVS = {"dev", "prod"}
RUN_ID = "20261203T101500Z-1a2b3c"
PLACEHOLDERS = {"<env>": "dev", "<run-id>": RUN_ID, "<step>": "silver_orders"}

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
MAKE_RULE = re.compile(r"^([A-Za-z0-9_.-]+(?:\s+[A-Za-z0-9_.-]+)*)\s*:(?!=)", re.M)


def fenced_commands(path: Path) -> list[str]:
    """Every command line of the fenced blocks of `path` (continuations joined, comments off)."""
    commands = []
    for block in FENCE.findall(path.read_text()):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def _commands() -> list[tuple[str, str]]:
    return [(p.name, c) for p in COMMAND_DOCS if p.exists() for c in fenced_commands(p)]


def make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    targets: set[str] = set()
    for names in MAKE_RULE.findall(text):
        targets.update(n for n in names.split() if not n.startswith(("$", ".")))
    return targets


def dag_steps() -> set[str]:
    return set(yaml.safe_load((REPO / "config" / "pipeline.yaml").read_text())["steps"])


def substitute(command: str) -> str:
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    return command


def check_lakehouse(args: list[str]) -> None:
    from pipeline.cli import build_parser

    left = [a for a in args if re.fullmatch(r"<[^>]+>", a)]
    assert not left, f"unknown placeholder(s) {left}"
    try:
        ns = build_parser().parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"`lakehouse {shlex.join(args)}` does not parse (exit {exc.code})") from None
    env = getattr(ns, "env", None)
    assert env in (None, "local", "dev", "prod"), f"--env {env}: not a config environment"
    steps = dag_steps()
    named = [s for v in (getattr(ns, "only", None) or []) for s in v.split(",")]
    named += [v for v in (getattr(ns, "from_step", None), getattr(ns, "until_step", None)) if v]
    unknown = [s for s in named if s not in steps]
    assert not unknown, f"not steps of config/pipeline.yaml: {unknown}"


def check_command(command: str) -> None:
    words = shlex.split(substitute(command), comments=True)
    assert words, command
    program, args = words[0], words[1:]
    assert "=" not in program, "start the line with the program, not VAR=value (say it in prose)"
    if program == "make":
        targets = [a for a in args if not a.startswith("-") and "=" not in a]
        assert targets, "make without a target"
        missing = set(targets) - make_targets()
        assert not missing, f"no such make target(s): {sorted(missing)}"
    elif program.startswith("aws/scripts/"):
        script = REPO / program
        assert script.is_file(), f"{program} does not exist"
        assert os.access(script, os.X_OK), f"{program} is not executable"
        assert args and (args[0] in ENVS or args[0] in ("-h", "--help")), (
            f"{program}: first argument dev|prod"
        )
        if script.name == "submit.sh" and args[0] in ENVS:
            check_lakehouse(["run", "--env", args[0], "--executor", "emr-serverless", *args[1:]])
        elif script.name == "maintain.sh" and args[0] in ENVS:  # submit.sh --only the maintain steps
            only = ["--only", "maintain_bronze,maintain_silver,maintain_gold"]
            check_lakehouse(["run", "--env", args[0], "--executor", "emr-serverless", *only, *args[1:]])
        elif args[0] in ENVS:
            assert len(args) == 1, f"{program} takes only the environment, got {args[1:]}"
    elif program in ("lakehouse", ".venv/bin/lakehouse"):
        check_lakehouse(args)
    elif program in ("python", "python3", ".venv/bin/python"):
        assert args[:1] == ["-m"] and len(args) >= 2, "python lines must be `python -m MODULE ...`"
        importlib.import_module(args[1])
    elif program in EXTERNAL:
        pass
    else:
        raise AssertionError(
            f"{program}: not a command the docs may use (make, aws/scripts, lakehouse, python -m, terraform, aws)"
        )


def test_the_operations_docs_exist():
    missing = [d for d in OPS_DOCS if not (DOCS / d).is_file()]
    assert not missing, missing


@pytest.mark.parametrize(("doc", "command"), _commands())
def test_every_fenced_command_exists(doc, command):
    try:
        check_command(command)
    except AssertionError as exc:
        raise AssertionError(f"{doc}: `{command}`: {exc}") from None


def test_commands_were_found():
    counts = {p.name: len(fenced_commands(p)) for p in COMMAND_DOCS}
    assert all(n >= 5 for n in counts.values()), counts


def test_the_checker_refuses_what_does_not_exist():
    for bad in (
        "make no-such-target",
        "aws/scripts/nope.sh dev",
        "aws/scripts/deploy.sh staging",
        "lakehouse quarantine replay --env dev",
        "lakehouse run --env dev --only no_such_step",
        "aws/scripts/submit.sh dev --no-such-flag",
        "python -m pipeline.no_such_module",
        "$ make setup",
        "LAKEHOUSE_DQ=off lakehouse run",
        "lakehouse status <run_id>",
    ):
        with pytest.raises((AssertionError, ImportError)):
            check_command(bad)
    for good in (
        "make package",
        "lakehouse status --env <env> <run-id>",
        "aws/scripts/submit.sh prod --resume <run-id>",
    ):
        check_command(good)


def _local_links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text())
    links = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor in the same page
        links.append(target.split("#", 1)[0])
    return links


def test_every_local_link_of_readme_and_docs_exists():
    pages = [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]
    broken = [
        f"{page.relative_to(REPO)} -> {link}"
        for page in pages
        for link in _local_links(page)
        if not (page.parent / link).exists()
    ]
    assert not broken, broken


def test_readme_links_the_operations_docs():
    links = set(_local_links(REPO / "README.md"))
    missing = [d for d in OPS_DOCS if f"docs/{d}" not in links]
    assert not missing, f"README.md does not link {missing}"
