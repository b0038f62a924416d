"""The docs tables of the project's YAML files, rendered from their schemas (schema.py): one row per key
(type, default, bounds, help), written between ``<!-- schema: NAME -->`` and ``<!-- /schema -->`` markers
in docs/*.md. ``python -m khaos_controller.schema`` rewrites them; a test keeps them in step."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from .schema import inner_model


def _type_name(t: Any) -> str:
    origin = typing.get_origin(t)
    if origin is typing.Annotated:
        base, *meta = typing.get_args(t)
        bounds = ", ".join(b for m in meta if (b := _bounds(m)))
        return _type_name(base) + (f" ({bounds})" if bounds else "")
    if origin in (typing.Union, types.UnionType):
        parts = [_type_name(a) for a in typing.get_args(t) if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in typing.get_args(t) else "")
    if origin is typing.Literal:
        return " / ".join(str(a) for a in typing.get_args(t))
    if origin in (list, tuple):
        args = [a for a in typing.get_args(t) if a is not Ellipsis]
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    names = {float: "number", int: "integer", str: "string", bool: "true/false", dict: "mapping"}
    return names.get(t, getattr(t, "__name__", str(t)))


def _bounds(info) -> str:
    out = []
    for m in getattr(info, "metadata", None) or [info]:
        for attr, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("min_length", "len >=")):
            v = getattr(m, attr, None)
            if v is not None:
                out.append(f"{sym} {v:g}" if isinstance(v, float) else f"{sym} {v}")
    return ", ".join(out)


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    d = info.get_default(call_default_factory=True)
    if isinstance(d, BaseModel):
        return "(section)"
    if d is None or d is PydanticUndefined:
        return "-"
    if isinstance(d, float) and d.is_integer():
        d = int(d)
    return f"`{d}`"


def rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str, str]]:
    """(key, type, default, bounds, help) for every leaf field, sections flattened as ``a.b``."""
    out = []
    for name, info in model.model_fields.items():
        key = prefix + (info.alias or name)
        sub = inner_model(info.annotation)
        if isinstance(sub, type) and issubclass(sub, BaseModel) and typing.get_origin(info.annotation) is not list:
            if info.description:
                out.append((key, "mapping", _default(info), "", info.description))
            out += rows(sub, key + ".")
        else:
            out.append((key, _type_name(info.annotation), _default(info), _bounds(info), info.description or ""))
    return out


def docs_table(model: type[BaseModel]) -> str:
    """The markdown table of every key of a file type (what docs/*.md carry between markers)."""
    lines = ["| key | type | default | bounds | meaning |", "|---|---|---|---|---|"]
    for key, typ, default, bounds, text in rows(model):
        lines.append(f"| `{key}` | {typ} | {default} | {bounds} | {text.replace('|', '/')} |")
    return "\n".join(lines)


# The docs that carry a file type's table between <!-- schema: NAME --> and <!-- /schema --> markers.
DOC_TABLES = {
    "daemon": ("docs/daemon.md", "khaos_controller.control.config", "DaemonFile"),
    "experiment": ("docs/profiling.md", "khaos_controller.profile.experiment", "ExperimentFile"),
    "evaluation": ("docs/evaluation.md", "khaos_controller.evaluate.config", "EvaluationFile"),
}


def sync_docs(root: Path, write: bool = False) -> list[str]:
    """The docs whose table differs from its schema (rewritten in place with ``write``)."""
    import importlib
    import re

    stale = []
    for name, (doc, module, cls) in DOC_TABLES.items():
        path = Path(root) / doc
        text = path.read_text()
        table = docs_table(getattr(importlib.import_module(module), cls))
        begin, end = f"<!-- schema: {name} -->", "<!-- /schema -->"
        pattern = re.compile(re.escape(begin) + r"\n.*?\n" + re.escape(end), re.S)
        if not pattern.search(text):
            stale.append(f"{doc}: no {begin} ... {end} markers")
            continue
        block = f"{begin}\n{table}\n{end}"
        new = pattern.sub(lambda _m, block=block: block, text)
        if new != text:
            stale.append(doc)
            if write:
                path.write_text(new)
    return stale
