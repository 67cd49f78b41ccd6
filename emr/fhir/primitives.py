"""JSON types of FHIR primitives: a ``dateTime`` is a JSON string, never a number.

The R4B models coerce where FHIR JSON does not: ``"authoredOn": 0`` validates as
1970-01-01 and ``"active": "true"`` as True. A hub that stored such a resource would
serve JSON that other clients cannot read, so :func:`json_type_problems` walks the
resource beside its model and reports every primitive whose JSON type is wrong
(FHIR R4B §2.6.2: ``boolean`` is true/false; ``integer``, ``positiveInt``,
``unsignedInt`` and ``decimal`` are numbers; every other primitive is a string).
"""

from __future__ import annotations

import types
import typing
from datetime import date, datetime, time
from decimal import Decimal
from functools import cache

from emr.errors import Problem

_MAX_DEPTH = 64


def json_type_problems(resource: dict, model: type) -> list[Problem]:
    """Every primitive of ``resource`` (already accepted by ``model``) held in the wrong JSON type."""
    problems: list[Problem] = []
    _walk(resource, model, resource["resourceType"], problems, depth=0)
    return problems


def _walk(node: dict, model: type, path: str, problems: list[Problem], *, depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    fields = _fields(model)
    for key, value in node.items():
        found = fields.get(key)
        if found is None or value is None:
            continue
        kind, inner = found
        many = isinstance(value, list)
        for index, item in enumerate(value if many else (value,)):
            if kind is not None:
                if not _FITS[kind](item):
                    where = f"{path}.{key}" + (f"[{index}]" if many else "")
                    problems.append(Problem(f"must be a JSON {_NAMES[kind]}, not {_json_name(item)}", where, "structure"))
            elif isinstance(item, dict):
                where = f"{path}.{key}" + (f"[{index}]" if many else "")
                nested = (_resource_model(item) or inner) if "resourceType" in item else inner
                _walk(item, nested, where, problems, depth=depth + 1)


_NAMES = {"bool": "boolean (true or false)", "int": "whole number", "number": "number", "str": "string"}


_FITS = {  # whether a value is of the primitive's JSON kind (bool is a subclass of int)
    "bool": lambda value: isinstance(value, bool),
    "int": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "number": lambda value: isinstance(value, int | float) and not isinstance(value, bool),
    "str": lambda value: isinstance(value, str),
}


def _json_name(value: object) -> str:
    for python_type, name in ((bool, "a boolean"), (int, "a number"), (float, "a number"), (str, "a string"),
                              (list, "an array"), (dict, "an object")):
        if isinstance(value, python_type):
            return name
    return "null"


@cache
def _fields(model: type) -> dict[str, tuple[str | None, type | None]]:
    """JSON name → (primitive kind, or None and the nested model) for each field of ``model``."""
    out = {}
    for name, info in getattr(model, "model_fields", {}).items():
        if name == "fhir_comments":
            continue
        out[info.alias or name] = _classify(info.annotation)
    return out


def _classify(annotation: object) -> tuple[str | None, type | None]:
    base = _unwrap(annotation)
    if base is bool:
        return "bool", None
    if base is int:
        return "int", None
    if base in (Decimal, float):
        return "number", None
    if base in (str, date, datetime, time, bytes):
        return "str", None
    klass = getattr(base, "get_model_klass", None)
    return None, klass() if callable(klass) else None


def _unwrap(annotation: object) -> object:
    """``Optional[List[Annotated[date, Date()]]]`` → ``date``."""
    while True:
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin in (typing.Union, types.UnionType, list, typing.Annotated) and args:
            annotation = args[0]
        else:
            return annotation


def _resource_model(node: dict) -> type | None:
    """A contained or entry resource is read with the model of its own type."""
    from emr.fhir.structure import model_class

    return model_class(node.get("resourceType")) if "resourceType" in node else None
