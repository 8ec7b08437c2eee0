"""Load a runbook from YAML with errors a person can act on at 3 a.m.

Every problem is reported as `FILE:LINE:COL: field.path: expected X, got Y`, all of them at
once, and the only exception that ever leaves `load_runbook` is `RunbookError`.
"""

from __future__ import annotations

import difflib
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from drpilot.domain.runbook import Runbook

Loc = tuple[str | int, ...]

# Deeper than any runbook or rules file needs (a warm-up body is the deepest: a few levels);
# deeper nesting is refused with its place instead of exhausting Python's recursion limit.
MAX_DEPTH = 64
# More values than any runbook or rules file holds (a few hundred). YAML aliases repeat what
# an anchor names, so a few lines can stand for millions of values ("billion laughs"):
# beyond this the document is refused instead of being expanded for minutes.
MAX_VALUES = 100_000


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        text = f"{self.file}:{self.line}:{self.column}: {where}{self.message}"
        # One problem, one line: a key or value holding a line break or a control character
        # (YAML allows them quoted) is shown escaped, as Python writes it.
        return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class DocumentError(Exception):
    """A YAML document that cannot be used; `problems` says every reason, each with its place."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class RunbookError(DocumentError):
    """A runbook that cannot be used."""


M = typing.TypeVar("M", bound=BaseModel)


def read_document(path: Path, error: type[DocumentError]) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise error([Problem(str(path), 1, 1, "", f"cannot read the file: {reason}")]) from None


def parse_document(
    text: str, filename: str, model: type[M], *, error: type[DocumentError], top: str, context: Any = None
) -> M:
    """YAML text -> `model`, every problem as FILE:LINE:COL raised as `error`. `top` names
    the mapping's fields for an empty or non-mapping document; `context` reaches the
    model's validators (e.g. the directory relative paths start from)."""
    document = _Document(filename)
    data = document.parse(text)
    if document.problems:
        raise error(document.problems)
    if not isinstance(data, dict):
        found = "an empty document" if data is None else _describe(data)
        raise error([Problem(filename, 1, 1, "", f"expected a mapping ({top}), got {found}")])
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise error(sorted(_problems(exc, document, model), key=lambda p: (p.line, p.column))) from None


def load_runbook(path: str | Path) -> Runbook:
    path = Path(path)
    return parse_runbook(read_document(path, RunbookError), str(path), base=path.parent)


def parse_runbook(text: str, filename: str = "<runbook>", *, base: Path | None = None) -> Runbook:
    """`base`: the directory a block's `template` is relative to (the runbook file's); without
    it templates are not read (a runbook arriving in a run already carries each as `job`)."""
    context = {"base": base} if base is not None else None
    return parse_document(
        text, filename, Runbook, error=RunbookError, top="apiVersion, kind, metadata, spec", context=context
    )


# ---------------------------------------------------------------------------------------
# YAML with positions: plain PyYAML node composition, then our own construction so each
# value remembers where it was written and duplicate keys are caught.


class _Document:
    def __init__(self, filename: str):
        self.filename = filename
        self.values: dict[Loc, tuple[int, int]] = {}
        self.keys: dict[Loc, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self._loader: yaml.SafeLoader | None = None
        self._built = 0

    def parse(self, text: str) -> Any:
        try:
            self._loader = yaml.SafeLoader(text)
            node = self._loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            reason = exc.problem or exc.context or "invalid YAML"
            self.problems.append(Problem(self.filename, line, col, "", f"YAML syntax error: {reason}"))
            return None
        except yaml.reader.ReaderError as exc:
            line, col = _line_col(text, exc.position)
            code = exc.character if isinstance(exc.character, int) else ord(exc.character)
            self.problems.append(
                Problem(self.filename, line, col, "", f"YAML cannot contain the control character #x{code:04x}; remove it")
            )
            return None
        except yaml.YAMLError as exc:  # e.g. a document with several "---" parts
            self.problems.append(Problem(self.filename, 1, 1, "", f"YAML error: {exc}"))
            return None
        except RecursionError:
            # PyYAML composes nested collections recursively: where it gave up is the place.
            mark = self._loader.get_mark() if self._loader is not None else None
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            self.problems.append(Problem(self.filename, line, col, "", _too_deep()))
            return None
        finally:
            if self._loader is not None:
                self._loader.dispose()
        if node is None:
            return None
        return self._build(node, ())

    def _build(self, node: yaml.Node, loc: Loc) -> Any:
        self._built += 1
        if self._built > MAX_VALUES:
            if self._built == MAX_VALUES + 1:
                self._problem(
                    (node.start_mark.line + 1, node.start_mark.column + 1), loc,
                    f"the document holds more than {MAX_VALUES} values (YAML aliases, *name, repeat "
                    "what &name anchors); write the values out, or fewer",
                )
            return None
        self.values[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if len(loc) >= MAX_DEPTH and isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            self.problems.append(Problem(self.filename, *self.values[loc], _short_loc(loc), _too_deep()))
            return None
        if isinstance(node, yaml.MappingNode):
            try:
                self._loader.flatten_mapping(node)  # resolve "<<" merge keys
            except yaml.MarkedYAMLError as exc:  # "<<: 1": only mappings can be merged
                mark = exc.problem_mark or node.start_mark
                self._problem(
                    (mark.line + 1, mark.column + 1), loc,
                    f"invalid merge key (<<): {exc.problem}; merge a mapping or a list of mappings (<<: *anchor)",
                )
                return None
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self._scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
                if isinstance(key, bool) and key_node.style is None:
                    # YAML 1.1 reads a plain `on:` (yes, no, off...) as a boolean; a key is a
                    # field's name, so it keeps its text (spec.blocks[].on).
                    key = key_node.value
                here = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if not isinstance(key, str):
                    shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else "a collection"
                    self._problem(here, loc, f"expected a text key, got {shown!r} (quote it in YAML)")
                    continue
                if key in result:
                    first = self.keys[(*loc, key)]
                    self._problem(here, (*loc, key), f"duplicate key {key!r} (first given at line {first[0]})")
                    continue
                self.keys[(*loc, key)] = here
                result[key] = self._build(value_node, (*loc, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self._build(item, (*loc, i)) for i, item in enumerate(node.value)]
        return self._scalar(node, loc)

    def _scalar(self, node: yaml.Node, loc: Loc = ()) -> Any:
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self._problem((node.start_mark.line + 1, node.start_mark.column + 1), (), f"invalid value: {exc}")
            return None
        except (ValueError, OverflowError) as exc:  # an integer over 4300 digits, a date of month 13
            if node.tag == "tag:yaml.org,2002:int":
                message = f"expected a number Python can read (at most 4300 digits), got one of {len(str(node.value))} characters"
            else:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                message = f"invalid value {_describe(node.value)} ({reason}); quote it if it is text"
            self._problem((node.start_mark.line + 1, node.start_mark.column + 1), loc, message)
            return None

    def _problem(self, where: tuple[int, int], loc: Loc, message: str) -> None:
        self.problems.append(Problem(self.filename, where[0], where[1], format_loc(loc), message))

    def position(self, loc: Loc, *, key: bool = False) -> tuple[int, int]:
        """Where loc was written; for something missing, where its nearest parent was."""
        if key and loc in self.keys:
            return self.keys[loc]
        while loc:
            if loc in self.values:
                return self.values[loc]
            loc = loc[:-1]
        return self.values.get((), (1, 1))


def _too_deep() -> str:
    return f"nested more than {MAX_DEPTH} levels deep; no field needs that many: remove the extra nesting"


def _short_loc(loc: Loc) -> str:
    """A field path, its middle left out when it is long (a deeply nested value)."""
    return format_loc(loc) if len(loc) <= 8 else f"{format_loc(loc[:4])}...{format_loc(loc[-2:])}"


def _line_col(text: str, position: int) -> tuple[int, int]:
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


# ---------------------------------------------------------------------------------------
# pydantic errors -> problems in the runbook author's words.

_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "timedelta_type": "a duration such as 90s, 5m or 1h30m",
}


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    try:
        text = json.dumps(value, default=str)
    except ValueError:  # an int of more than 4300 digits (e.g. written in hex) does not print
        return f"a number of about {int(value.bit_length() * 0.30103)} digits" if isinstance(value, int) else "a value"
    return text if len(text) <= 60 else text[:57] + "..."


def _clean(loc: tuple[Any, ...]) -> Loc:
    # pydantic adds "[key]" for dict-key errors and validator names for some unions.
    return tuple(p for p in loc if not (isinstance(p, str) and (p == "[key]" or "[" in p and p.endswith("]"))))


def _problems(exc: ValidationError, doc: _Document, model: type[BaseModel]):
    for error in exc.errors():
        loc = _clean(error["loc"])
        kind = error["type"]
        if kind == "runbook_rules":
            for rule_loc, message in error["ctx"]["problems"]:
                line, col = doc.position(tuple(rule_loc), key=True)
                yield Problem(doc.filename, line, col, format_loc(tuple(rule_loc)), message)
            continue
        if kind == "missing":
            line, col = doc.position(loc[:-1])
            yield Problem(doc.filename, line, col, format_loc(loc), "required field is missing")
            continue
        if kind == "extra_forbidden":
            line, col = doc.position(loc, key=True)
            field = str(loc[-1])
            allowed = _fields_at(model, loc[:-1])
            hint = difflib.get_close_matches(field, allowed, n=1, cutoff=0.6)
            suffix = f' (did you mean "{hint[0]}"?)' if hint else f" (known fields: {', '.join(allowed)})"
            yield Problem(doc.filename, line, col, format_loc(loc), f'unknown field "{field}"{suffix}')
            continue
        line, col = doc.position(loc)
        yield Problem(doc.filename, line, col, format_loc(loc), _message(error))


def _message(error: Any) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    found = _describe(error["input"])
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {found}"
    if kind in ("literal_error", "enum"):
        return f"expected one of {ctx.get('expected')}, got {found}"
    if kind == "too_short":
        return f"expected at least {ctx.get('min_length')} item(s), got {ctx.get('actual_length')}"
    msg = error["msg"]
    if msg.startswith("expected") and ", got " not in msg:
        return f"{msg}, got {found}"
    return msg[:1].lower() + msg[1:]


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The field names a mapping at `loc` may have, for "did you mean" hints."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return []
            annotation = field.annotation
        else:
            args = typing.get_args(annotation)
            annotation = args[-1] if args else Any
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [field.alias or name for name, field in annotation.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """Optional[X] -> X; Annotated[X, ...] -> X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0] if len(args) == 1 else annotation
            if len(args) != 1:
                return annotation
        else:
            return annotation
