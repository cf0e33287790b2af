"""The Terraform of aws/terraform read in Python (python-hcl2): modules, a small evaluator for the
literal parts (variables, locals, string templates, concat) and a check against the AWS
provider schema. This is what checks the configuration where `terraform` is absent."""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import hcl2

REPO = Path(__file__).resolve().parents[2]
TF_ROOT = REPO / "aws" / "terraform"
ENVS = ("dev", "prod")
SCHEMA_FILE = REPO.parent / "shared" / "specs" / "terraform" / "aws-provider-5.100.0.schema.json.gz"
PROVIDER = "registry.terraform.io/hashicorp/aws"
# Arguments Terraform itself defines on every resource / data source.
META_ARGUMENTS = {"count", "for_each", "provider", "depends_on", "lifecycle"}
BLOCK = "__is_block__"


def unquote(name: str) -> str:
    return name[1:-1] if len(name) >= 2 and name[0] == name[-1] == '"' else name


def is_block(value: Any) -> bool:
    return (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v.get(BLOCK) for v in value)
    )


@dataclass
class Module:
    path: Path
    variables: dict[str, dict] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    resources: dict[tuple[str, str], dict] = field(default_factory=dict)
    data: dict[tuple[str, str], dict] = field(default_factory=dict)
    modules: dict[str, dict] = field(default_factory=dict)
    outputs: dict[str, dict] = field(default_factory=dict)
    providers: dict[str, dict] = field(default_factory=dict)  # by name (no aliases here)

    def files(self) -> list[Path]:
        return sorted(self.path.glob("*.tf"))


def _labelled(blocks: list[dict], depth: int) -> list[tuple[tuple[str, ...], dict]]:
    out = []
    for block in blocks:
        for label, body in block.items():
            if label == BLOCK:
                continue
            if depth == 1:
                out.append(((unquote(label),), body))
            else:
                out += [((unquote(label), *k), b) for k, b in _labelled([body], depth - 1)]
    return out


@cache
def load_module(path: Path) -> Module:
    module = Module(path)
    for tf in module.files():
        with tf.open() as fh:
            doc = hcl2.load(fh)
        for (name,), body in _labelled(doc.get("variable", []), 1):
            module.variables[name] = body
        for block in doc.get("locals", []):
            module.locals.update({k: v for k, v in block.items() if k != BLOCK})
        for key, body in _labelled(doc.get("resource", []), 2):
            module.resources[key] = body
        for key, body in _labelled(doc.get("data", []), 2):
            module.data[key] = body
        for (name,), body in _labelled(doc.get("module", []), 1):
            module.modules[name] = body
        for (name,), body in _labelled(doc.get("output", []), 1):
            module.outputs[name] = body
        for (name,), body in _labelled(doc.get("provider", []), 1):
            module.providers[name] = body
    return module


def label(path: Path) -> str:
    return str(path.relative_to(TF_ROOT)) if path.is_relative_to(TF_ROOT) else str(path)


def all_module_dirs() -> list[Path]:
    return sorted({tf.parent for tf in TF_ROOT.rglob("*.tf") if ".terraform" not in tf.parts})


def module_source(module: Module, call: dict) -> Path:
    return (module.path / unquote(call["source"])).resolve()


# --- evaluation of the literal parts ---------------------------------------------------------


class Unresolved(Exception):
    """An expression this evaluator does not compute (a resource attribute, a for expression...)."""


def _segments(template: str) -> list[tuple[bool, str]]:
    """Split a template into (is_expression, text) parts, matching braces inside ${...}."""
    out, i, text = [], 0, ""
    while i < len(template):
        if template.startswith("$${", i):
            text += "${"
            i += 3
        elif template.startswith("${", i):
            depth, j, quoted = 1, i + 2, False
            while depth:
                c = template[j]
                if c == '"' and template[j - 1] != "\\":
                    quoted = not quoted
                elif not quoted and c == "{":
                    depth += 1
                elif not quoted and c == "}":
                    depth -= 1
                j += 1
            if text:
                out.append((False, text))
                text = ""
            out.append((True, template[i + 2 : j - 1]))
            i = j
        else:
            text += template[i]
            i += 1
    if text:
        out.append((False, text))
    return out


@dataclass
class Scope:
    """Evaluation context of one module instance: its input values and (for for_each) each."""

    module: Module
    inputs: dict[str, Any]
    each: tuple[Any, Any] | None = None
    # lenient: an expression not computable here stays as its text ("${var.x}/gold/*")
    lenient: bool = False

    def var(self, name: str) -> Any:
        if name in self.inputs:
            return self.inputs[name]
        spec = self.module.variables.get(name)
        if spec is None:
            raise Unresolved(f"var.{name} is not declared in {self.module.path}")
        if "default" not in spec:
            raise Unresolved(f"var.{name} has no value")
        return self.eval(spec["default"])

    def local(self, name: str) -> Any:
        if name not in self.module.locals:
            raise Unresolved(f"local.{name}")
        return self.eval(self.module.locals[name])

    def ref(self, expr: str) -> Any:
        try:
            return self._ref(expr.strip())
        except (Unresolved, KeyError, TypeError):
            if self.lenient:
                return "${" + expr.strip() + "}"
            raise

    def _ref(self, expr: str) -> Any:
        if m := re.fullmatch(r"(var|local)\.(\w+)", expr):
            return self.var(m[2]) if m[1] == "var" else self.local(m[2])
        if m := re.fullmatch(r'(var|local)\.(\w+)\["([^"]+)"\]', expr):
            value = self.var(m[2]) if m[1] == "var" else self.local(m[2])
            return value[m[3]]
        if expr in ("each.key", "each.value") and self.each is not None:
            return self.each[0] if expr == "each.key" else self.each[1]
        if m := re.fullmatch(r"concat\((.*)\)", expr, re.S):
            parts = [self.ref(p) for p in re.split(r",\s*", m[1].strip()) if p]
            if not all(isinstance(p, list) for p in parts):
                raise Unresolved(expr)
            return [item for p in parts for item in p]
        if m := re.fullmatch(r"toset\((.*)\)", expr, re.S):
            return sorted(set(self.ref(m[1])))
        if expr.startswith(("[", '"')):
            try:
                return json.loads(expr)
            except json.JSONDecodeError:
                raise Unresolved(expr) from None
        raise Unresolved(expr)

    def eval(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {unquote(k): self.eval(v) for k, v in value.items() if k != BLOCK}
        if isinstance(value, list):
            return [self.eval(v) for v in value]
        if not isinstance(value, str):
            return value
        if value.startswith('"') and value.endswith('"'):
            parts = _segments(value[1:-1])
            return "".join(str(self.ref(t)) if is_expr else t for is_expr, t in parts)
        if value.startswith("${") and value.endswith("}"):
            return self.ref(value[2:-1])
        return value

    def try_eval(self, value: Any) -> Any:
        """The value, or the expression text where it is not computable here."""
        try:
            return self.eval(value)
        except (Unresolved, KeyError, TypeError):
            if isinstance(value, dict):
                return {unquote(k): self.try_eval(v) for k, v in value.items() if k != BLOCK}
            if isinstance(value, list):
                return [self.try_eval(v) for v in value]
            return value

    def provider(self, name: str) -> dict:
        """The arguments of this module's provider block `name` (an env root's region...)."""
        return self.try_eval(self.module.providers[name])

    def child(self, name: str) -> Scope:
        call = self.module.modules[name]
        target = load_module(module_source(self.module, call))
        inputs = {}
        for arg, expr in call.items():
            if arg == "source" or arg.startswith("__") or arg in META_ARGUMENTS:
                continue  # "__...": python-hcl2's markers and comments
            try:
                value = self.eval(expr)
            except (Unresolved, KeyError, TypeError):
                continue
            if value is None and target.variables.get(arg, {}).get("nullable") is False:
                continue  # Terraform gives a non-nullable variable its default for null
            inputs[arg] = value
        return Scope(target, inputs, lenient=self.lenient)

    def instances(self, body: dict) -> list[Scope]:
        """One scope per instance of a resource: for_each over a known map or set, else one."""
        if "for_each" not in body:
            return [self]
        collection = self.eval(body["for_each"])
        items = collection.items() if isinstance(collection, dict) else ((v, v) for v in collection)
        return [Scope(self.module, self.inputs, (k, v), self.lenient) for k, v in items]


def env_scope(env: str, lenient: bool = False) -> Scope:
    return Scope(load_module((TF_ROOT / "envs" / env).resolve()), {}, lenient=lenient)


def walk_scopes(scope: Scope) -> list[Scope]:
    """The env's root and every module it calls, each with the inputs the caller gives it."""
    out = [scope]
    for name in scope.module.modules:
        out += walk_scopes(scope.child(name))
    return out


def resource_values(scope: Scope, rtype: str, attribute: str) -> set[str]:
    """Every value of `attribute` of every instance of `rtype` resources in these modules."""
    found = set()
    for s in walk_scopes(scope):
        for (t, _), body in s.module.resources.items():
            if t != rtype or attribute not in body:
                continue
            try:
                found |= {str(inst.eval(body[attribute])) for inst in s.instances(body)}
            except (Unresolved, KeyError, TypeError):
                continue
    return found


# --- the provider schema ---------------------------------------------------------------------


@cache
def provider_schema() -> dict:
    with gzip.open(SCHEMA_FILE, "rt") as fh:
        return json.load(fh)["provider_schemas"][PROVIDER]


def _check_block(where: str, body: dict, schema: dict, errors: list[str]) -> None:
    attributes = schema.get("attributes", {})
    block_types = schema.get("block_types", {})
    present_blocks: dict[str, int] = {}
    for key, value in body.items():
        if key.startswith("__"):  # python-hcl2's markers and comments
            continue
        if key == "dynamic":
            for (name,), dyn in _labelled(value, 1):
                if name not in block_types:
                    errors.append(f"{where}: dynamic block {name!r} is not a block of this type")
                    continue
                present_blocks[name] = max(present_blocks.get(name, 0), 1)
                for content in dyn.get("content", []):
                    _check_block(f"{where}.{name}", content, block_types[name]["block"], errors)
            continue
        if is_block(value):
            if key not in block_types:
                errors.append(f"{where}: {key!r} is not a block here (attribute or unknown)")
                continue
            present_blocks[key] = present_blocks.get(key, 0) + len(value)
            for item in value:
                _check_block(f"{where}.{key}", item, block_types[key]["block"], errors)
            continue
        spec = attributes.get(key)
        if spec is None:
            kind = "a block" if key in block_types else "unknown"
            errors.append(f"{where}: attribute {key!r} is {kind}")
        elif spec.get("computed") and not (spec.get("optional") or spec.get("required")):
            errors.append(f"{where}: {key!r} is computed only, it cannot be set")
    for name, spec in attributes.items():
        if spec.get("required") and name not in body:
            errors.append(f"{where}: required attribute {name!r} is missing")
    for name, spec in block_types.items():
        count = present_blocks.get(name, 0)
        if count < spec.get("min_items", 0):
            errors.append(f"{where}: block {name!r} needs at least {spec['min_items']}")
        if spec.get("max_items") and count > spec["max_items"] and name in present_blocks:
            errors.append(f"{where}: block {name!r} allows at most {spec['max_items']}")


def schema_errors(module: Module) -> list[str]:
    """Resource/data types, attributes and blocks of one module against the provider schema;
    module calls against the called module's variables."""
    schema = provider_schema()
    errors: list[str] = []
    for kind, items, schemas in (
        ("resource", module.resources, schema["resource_schemas"]),
        ("data", module.data, schema["data_source_schemas"]),
    ):
        for (rtype, name), body in items.items():
            where = f"{label(module.path)}: {kind} {rtype}.{name}"
            if rtype not in schemas:
                errors.append(f"{where}: no such {kind} type in the provider")
                continue
            _check_block(
                where,
                {k: v for k, v in body.items() if k not in META_ARGUMENTS},
                schemas[rtype]["block"],
                errors,
            )
    for name, call in module.modules.items():
        where = f"{label(module.path)}: module {name}"
        target = load_module(module_source(module, call))
        args = {k for k in call if k != "source" and not k.startswith("__") and k not in META_ARGUMENTS}
        errors += [
            f"{where}: {a!r} is not a variable of {target.path.name}" for a in args - set(target.variables)
        ]
        missing = {v for v, spec in target.variables.items() if "default" not in spec} - args
        errors += [f"{where}: variable {v!r} of {target.path.name} is not set" for v in sorted(missing)]
    return errors
