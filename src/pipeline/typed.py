"""Strict pydantic models derived from the loaders' dataclasses: the one validator of the
configuration files (`pipeline.settings.parse_typed`) and the source of their JSON Schemas
(`pipeline.schemas`), so a field added to a dataclass is validated and published at once.

What a model accepts: the dataclass's keys (any other is refused, naming the allowed ones), its
required fields, its types strictly (no "3" for 3, no true for 1; an int where a float is
expected), its literals and lists. A mapping of strings (spark.conf, storage_options) reads each
value as str(value). YAML 1.1 reads a bare `on:` key as the boolean true: a dataclass with an
`on` field takes it as `on`. A nested dataclass is built as soon as its model is valid, so its
`__post_init__` rules run and their ConfigError (a ValueError) is reported at its key. The
comments on a dataclass's fields become its schema's descriptions (read only when a schema is
generated).

Imports no loader: every loader imports this through `pipeline.settings`.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import reprlib
import types
import typing
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    create_model,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

Scalar = str | int | float | bool
STRICT = ConfigDict(extra="forbid", strict=True)
_COMMENT = re.compile(r"^\s*#\s?(.*)$")
_FIELD = re.compile(r"^\s+(\w+)\s*:[^#]*?(?:#\s*(.*))?$")
# pydantic's strict type errors, as the type a user should have written
_EXPECTED = {
    "int_type": "int",
    "float_type": "float",
    "string_type": "str",
    "bool_type": "bool",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}
_SHORT = reprlib.Repr()  # a value as found, cut short: a whole mapping where a list belongs
_SHORT.maxstring = _SHORT.maxother = 60


def _field_comments(dc: type) -> dict[str, str]:
    """The comments beside or just above each field of a dataclass: the schema's descriptions
    (what an editor shows on hover)."""
    comments: dict[str, str] = {}
    above: list[str] = []
    for line in inspect.getsource(dc).splitlines()[1:]:
        if match := _COMMENT.match(line):
            above.append(match.group(1).strip())
        elif (match := _FIELD.match(line)) and not line.strip().startswith(("def ", "@", '"')):
            text = " ".join([*above, match.group(2) or ""]).strip()
            if text:
                comments[match.group(1)] = text
            above = []
        else:
            above = []
    return comments


def _describer(dc: type) -> Any:
    def describe(schema: dict[str, Any], model: type[BaseModel]) -> None:
        # Read when a schema is written, not each time a process validates its files: finding a
        # class's source parses its whole module.
        for name, text in _field_comments(dc).items():
            if name in schema["properties"]:
                schema["properties"][name]["description"] = text

    return describe


def _str_of_scalar(value: Any, handler: ValidatorFunctionWrapHandler) -> str:
    try:
        return str(handler(value))
    except ValidationError:
        raise PydanticCustomError(
            "scalar_type", "expected a string, number or boolean, got {got}", {"got": _SHORT.repr(value)}
        ) from None


def _one_of(allowed: tuple[Any, ...]) -> WrapValidator:
    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError(
                "literal_error",
                "expected one of {allowed}, got {got}",
                {"allowed": "|".join(map(str, allowed)), "got": _SHORT.repr(value)},
            ) from None

    return WrapValidator(check)


def _annotation(tp: Any) -> Any:
    """The pydantic annotation of a loader's field type; a dataclass validates to an instance."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        translated = tuple(_annotation(a) for a in args)
        return typing.Union[translated]  # noqa: UP007 (a tuple of members, built at run time)
    if origin is Literal:
        return Annotated[tp, _one_of(args)]
    if origin is list:
        return list[_annotation(args[0])]
    if origin is dict:
        if args[1] is str:  # a mapping of strings: options passed on as text
            return dict[str, Annotated[Scalar, WrapValidator(_str_of_scalar)]]
        return dict[str, _annotation(args[1])]
    if dataclasses.is_dataclass(tp):
        return Annotated[model_of(tp), AfterValidator(_builder(tp))]
    return tp


def _builder(dc: type) -> Any:
    def build(model: BaseModel) -> Any:
        # Only the keys the file gives: the dataclass's own defaults fill the rest.
        return dc(**{name: getattr(model, name) for name in model.model_fields_set})

    return build


def _json_default(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return all(_json_default(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_default(v) for k, v in value.items())
    return value is None or isinstance(value, str | int | float | bool)


def _known_keys(cls: type[BaseModel], value: Any) -> Any:
    if not isinstance(value, dict):
        return value  # the model refuses it as "expected a mapping"
    if True in value and "on" in cls.model_fields and "on" not in value:
        # YAML 1.1 reads a bare `on:` key as the boolean true (alerts.on).
        value = {("on" if k is True else k): v for k, v in value.items()}
    unknown = sorted(str(k) for k in value if k not in cls.model_fields)
    if unknown:
        raise PydanticCustomError(
            "unknown_keys",
            "unknown key(s) {unknown}; allowed: {allowed}",
            {"unknown": ", ".join(unknown), "allowed": ", ".join(cls.model_fields)},
        )
    return value


@cache
def model_of(dc: type, drop: frozenset[str] = frozenset(), **overrides: Any) -> type[BaseModel]:
    """The strict model of dataclass `dc` without the fields in `drop`; `overrides` replace a
    field's annotation where a file spells that field differently (the schemas' business)."""
    hints = typing.get_type_hints(dc)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(dc):
        if f.name in drop:
            continue
        info: dict[str, Any] = {}
        if f.default is not dataclasses.MISSING:
            info["default"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            made = f.default_factory()
            if _json_default(made):  # a default an editor can show (a list of names)
                info["default"] = made
            else:  # nested settings: the schema says only that the key is optional
                info["default_factory"] = f.default_factory
        fields[f.name] = (overrides.get(f.name) or _annotation(hints[f.name]), Field(**info))
    doc = inspect.getdoc(dc)
    generated = dc.__doc__ and dc.__doc__.startswith(f"{dc.__name__}(")  # dataclass's own repr-like doc
    return create_model(
        dc.__name__,
        __config__=ConfigDict(**STRICT, json_schema_extra=_describer(dc)),
        __doc__=None if generated else doc,
        __validators__={"known_keys": model_validator(mode="before")(_known_keys)},
        **fields,
    )


@cache
def adapter(tp: Any) -> TypeAdapter:
    """The validator of a loader's type, built once per type."""
    return TypeAdapter(_annotation(tp))


def key_of(base: str, loc: tuple[int | str, ...]) -> str:
    """`base` and a pydantic error location as a dotted key with list indexes: a.b[0].c."""
    key = base
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else str(part)
    return key or "<top level>"


def message(error: ErrorDetails) -> str:
    """What was expected and what was found, in the words of the configuration files."""
    kind = error["type"]
    if kind == "missing":
        return "required value missing"
    if kind == "value_error":  # a dataclass's own rule (__post_init__) refused the values
        return str(error["ctx"]["error"])
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_SHORT.repr(error['input'])}"
    return error["msg"]
