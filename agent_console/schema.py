"""A small JSON Schema subset: one schema both validates request input and documents it in OpenAPI.

Supported keywords: ``type`` (object, array, string, integer, number, boolean, null, or a list
of them), ``properties``, ``required``, ``additionalProperties: false``, ``items``, ``enum``,
``minLength``/``maxLength``, ``minimum``/``maximum``, ``minItems``/``maxItems``. The first
violation raises `InvalidInput` naming the field, e.g. ``status: must be one of new, open``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent_console.errors import InvalidInput

Schema = Mapping[str, Any]

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _is(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[kind])


def validate(schema: Schema, value: Any, path: str = "") -> None:
    """Raise `InvalidInput` at the first place `value` breaks `schema`."""
    where = path or "body"
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_is(value, k) for k in kinds):
            raise InvalidInput(f"{where}: expected {' or '.join(kinds)}", field=path)
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(str(v) for v in schema["enum"])
        raise InvalidInput(f"{where}: must be one of {allowed}", field=path)
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise InvalidInput(f"{where}: at least {schema['minLength']} characters", field=path)
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise InvalidInput(f"{where}: at most {schema['maxLength']} characters", field=path)
    if _is(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            raise InvalidInput(f"{where}: at least {schema['minimum']}", field=path)
        if "maximum" in schema and value > schema["maximum"]:
            raise InvalidInput(f"{where}: at most {schema['maximum']}", field=path)
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise InvalidInput(f"{where}: at least {schema['minItems']} items", field=path)
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise InvalidInput(f"{where}: at most {schema['maxItems']} items", field=path)
        if "items" in schema:
            for index, item in enumerate(value):
                validate(schema["items"], item, f"{path}[{index}]")
    if isinstance(value, dict):
        properties: Mapping[str, Schema] = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                raise InvalidInput(f"{_join(path, name)}: required", field=_join(path, name))
        if schema.get("additionalProperties") is False:
            extra = sorted(set(value) - set(properties))
            if extra:
                raise InvalidInput(
                    f"{_join(path, extra[0])}: unknown field", field=_join(path, extra[0])
                )
        for name, sub in properties.items():
            if name in value:
                validate(sub, value[name], _join(path, name))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def string(max_length: int, *, min_length: int = 0, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "minLength": min_length, "maxLength": max_length, **extra}


def enum(values: Any) -> dict[str, Any]:
    return {"type": "string", "enum": [str(v) for v in values]}


def obj(
    properties: Mapping[str, Schema], *, required: tuple[str, ...] = (), **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "object",
        "properties": dict(properties),
        "additionalProperties": False,
        **extra,
    }
    if required:
        out["required"] = list(required)
    return out
