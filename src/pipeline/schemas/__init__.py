"""JSON Schemas of the configuration files, for editors and for a check before a run.

Generated from the pydantic models of `pipeline.schemas.models` (themselves derived from the
loaders' dataclasses) into `schemas/<name>.schema.json`, with `.vscode/settings.json` mapping
each config file to its schema (the YAML extension then completes keys, shows the comments of
the code as hover help and marks a typo'd key or a wrong type as you write). Regenerate after
changing a loader's dataclass; a test fails when the published files drift:

    python -m pipeline.schemas --write      # regenerate schemas/ and .vscode/settings.json
    python -m pipeline.schemas --check      # exit 1 when they differ from the models
    python -m pipeline.schemas --validate [CONFIG_DIR]   # every config file against its schema
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema.exceptions import ValidationError, best_match
from pydantic import BaseModel

from pipeline.schemas.models import (
    ContractFile,
    DatasetsFile,
    DqFile,
    ErasureFile,
    MaintenanceFile,
    MartsFile,
    MetricsFile,
    PipelineFile,
    SettingsFile,
)
from pipeline.settings import ENVIRONMENTS, PROJECT_ROOT, load_yaml

SCHEMA_DIR = PROJECT_ROOT / "schemas"
VSCODE_SETTINGS = PROJECT_ROOT / ".vscode" / "settings.json"
REGENERATE = "python -m pipeline.schemas --write"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
# schema name -> (model, the files it describes, relative to the config folder)
SCHEMAS: dict[str, tuple[type[BaseModel], tuple[str, ...]]] = {
    "settings": (SettingsFile, tuple(f"{env}.yaml" for env in ENVIRONMENTS)),
    "datasets": (DatasetsFile, ("datasets.yaml",)),
    "contract": (ContractFile, ("contracts/*.yaml",)),
    "dq": (DqFile, ("dq.yaml",)),
    "marts": (MartsFile, ("marts.yaml",)),
    "maintenance": (MaintenanceFile, ("maintenance.yaml",)),
    "metrics": (MetricsFile, ("metrics.yaml",)),
    "pipeline": (PipelineFile, ("pipeline.yaml",)),
    "erasure": (ErasureFile, ("erasure.yaml",)),
}


def json_schema(name: str) -> dict[str, Any]:
    model, _ = SCHEMAS[name]
    return {"$schema": DRAFT, **model.model_json_schema()}


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def generated(root: Path = PROJECT_ROOT) -> dict[Path, str]:
    """Every published file (path -> text): one schema per name and the editor mapping."""
    files = {root / "schemas" / f"{name}.schema.json": _dump(json_schema(name)) for name in SCHEMAS}
    mapping = {
        f"./schemas/{name}.schema.json": [f"config/{p}" for p in globs]
        for name, (_, globs) in SCHEMAS.items()
    }
    files[root / ".vscode" / "settings.json"] = _dump({"yaml.schemas": mapping})
    return files


def write(root: Path = PROJECT_ROOT) -> list[Path]:
    written = []
    for path, text in generated(root).items():
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)
    return written


def drift(root: Path = PROJECT_ROOT) -> list[str]:
    """The published files that are missing or differ from what the models generate."""
    return [
        f"{path.relative_to(root)}: {'missing' if not path.exists() else 'out of date'}; run {REGENERATE}"
        for path, text in generated(root).items()
        if not path.exists() or path.read_text() != text
    ]


def schema_name(path: Path, config_dir: Path) -> str | None:
    """The schema of a file under the config folder, or None (reference lists have none)."""
    relative = Path(path).resolve().relative_to(Path(config_dir).resolve()).as_posix()
    return next(
        (name for name, (_, globs) in SCHEMAS.items() if any(fnmatch.fnmatch(relative, g) for g in globs)),
        None,
    )


def config_files(config_dir: Path) -> list[Path]:
    """The YAML files a schema could describe: the config folder's own and the contracts."""
    config_dir = Path(config_dir)
    return sorted([*config_dir.glob("*.yaml"), *(config_dir / "contracts").glob("*.yaml")])


def _key(path: Any) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "<top level>"


def _messages(error: ValidationError, file: str) -> list[str]:
    if error.context:  # anyOf (an optional value): the branch that came closest says most
        error = best_match(error.context)
    key = _key(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(error.schema.get("properties", {}))
        unknown = sorted(str(k) for k in error.instance if k not in allowed)
        prefix = "" if key == "<top level>" else f"{key}."
        return [f"{file}: {prefix}{k}: unknown key; allowed: {', '.join(allowed)}" for k in unknown]
    return [f"{file}: {key}: {error.message}"]


def validate_file(path: Path, config_dir: Path, schema_dir: Path = SCHEMA_DIR) -> list[str]:
    """Problems of one config file against its published schema, each naming the file and the
    dotted key; empty when it is valid (or has no schema)."""
    name = schema_name(path, config_dir)
    if name is None:
        return []
    schema = json.loads((Path(schema_dir) / f"{name}.schema.json").read_text())
    try:
        data = load_yaml(Path(path).read_text())
    except yaml.YAMLError as exc:
        return [f"{path}: not valid YAML: {exc}"]
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors({} if data is None else data), key=lambda e: list(map(str, e.path)))
    return [message for error in errors for message in _messages(error, str(path))]
