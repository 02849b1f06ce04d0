"""Reading a user's YAML file (a topology, an agent, a recipe) with errors that point into it.

`read_text`, `parse_yaml` and `validate` raise the `FileError` subclass they are given
("file:line: path: problem", one line); a validation failure also keeps pydantic's complaints
(the first MAX_KEPT_ERRORS), as (path, problem) pairs, in the error's `errors` attribute. A model
validator reports cross-field problems by raising `Problems`.

Hostile files cost bounded work before their error: at most `MAX_YAML_BYTES` are read, and one
pass over the parser's events (no recursion, nothing built) refuses nesting deeper than
`MAX_YAML_DEPTH`, aliases that would expand the document past `MAX_YAML_NODES` values (a
billion-laughs bomb), recursive aliases and lone surrogates before anything is composed or
constructed; numbers longer than `MAX_NUMBER_CHARS` are refused when constructed. Messages show
values through `short`, which never builds the full repr of a big structure.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from swarm.errors import FileError
from swarm.quoting import short
from swarm.specs import BACKEND_KINDS, POLICY_KINDS

Parts = tuple[str | int, ...]

MAX_YAML_BYTES = 1 << 20  # a topology of a thousand agents is about 200 KiB
MAX_YAML_DEPTH = 64  # collections inside collections; our files need about 6
MAX_YAML_NODES = 100_000  # values in the document once every alias is expanded
MAX_NUMBER_CHARS = 100  # an int or float scalar, written out
MAX_PROBLEM_CHARS = 500  # the problem part of an error message
MAX_PATH_CHARS = 120  # the path part (agents[2].backend.kind) of an error message
MAX_KEPT_ERRORS = 50  # an error's `errors`: the first of pydantic's complaints

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present (same line marks)
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class _BoundedLoader(_Loader):  # type: ignore[misc, valid-type]
    """The safe loader whose numbers are bounded and whose value errors point at their node."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError, TypeError) as e:  # e.g. a date 2024-13-45: say where, in YAML's terms
            what = short(node.value) if isinstance(node, yaml.ScalarNode) else "this value"
            raise yaml.constructor.ConstructorError(None, None, f"cannot read {what}: {e}", node.start_mark) from None

    def construct_bounded_number(self, node: yaml.ScalarNode) -> Any:
        if len(node.value) > MAX_NUMBER_CHARS:
            raise yaml.constructor.ConstructorError(
                None, None, f"a number of {len(node.value)} characters (at most {MAX_NUMBER_CHARS})", node.start_mark)
        safe = yaml.constructor.SafeConstructor
        return (safe.construct_yaml_int if node.tag.endswith(":int") else safe.construct_yaml_float)(self, node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_bounded_number)
_BoundedLoader.add_constructor("tag:yaml.org,2002:float", _BoundedLoader.construct_bounded_number)


class Problems(ValueError):
    """Raised by validators: problems as (path parts, message); pydantic carries it out in `ctx`."""

    def __init__(self, problems: list[tuple[Parts, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(msg for _, msg in problems))


def _fail(error: type[FileError], source: str, path: str, problem: str, line: int | None = None,
          errors: list[tuple[str, str]] | None = None) -> FileError:
    problem = " ".join(problem.split())  # always one line
    if len(problem) > MAX_PROBLEM_CHARS:
        problem = problem[: MAX_PROBLEM_CHARS - 3] + "..."
    if len(path) > MAX_PATH_CHARS:  # a key of the file's own can be as long as the file
        path = " ".join(path[: MAX_PATH_CHARS - 3].split()) + "..."
    err = error(source, path, problem, line)
    err.errors = errors or [(path, problem)]
    return err


def read_text(path: Path, error: type[FileError]) -> str:
    """The file's text, or an `error` saying why it cannot be had."""
    if not path.exists():
        raise _fail(error, str(path), "", "no such file")
    if path.is_dir():
        raise _fail(error, str(path), "", "is a directory, not a YAML file")
    try:
        size = path.stat().st_size
        if size <= MAX_YAML_BYTES:  # a pipe or device says 0: the read below is bounded too
            with path.open("rb") as f:
                raw = f.read(MAX_YAML_BYTES + 1)
            size = max(size, len(raw))
    except OSError as e:
        raise _fail(error, str(path), "", f"cannot read: {e.strerror or e}") from None
    if size > MAX_YAML_BYTES:
        raise _fail(error, str(path), "", f"the file is larger than {MAX_YAML_BYTES >> 20} MiB; is it the right file?")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _fail(error, str(path), "", f"not UTF-8 text (byte {e.start})", raw[: e.start].count(b"\n") + 1) from None


def parse_yaml(text: str, source: str, error: type[FileError]) -> tuple[dict[str, Any], yaml.Node]:
    """Safe-load one YAML document that must be a mapping; also return its node tree, for line numbers."""
    if len(text) > MAX_YAML_BYTES:
        raise _fail(error, source, "", f"the text is longer than {MAX_YAML_BYTES >> 20} MiB")
    lone = _SURROGATE.search(text)
    if lone:
        raise _fail(error, source, "", "not UTF-8 text (a lone surrogate)", text.count("\n", 0, lone.start()) + 1)
    loader = None
    try:
        _check_events(text, source, error)
        loader = _BoundedLoader(text)
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        problem = getattr(e, "problem", None) or getattr(e, "reason", None) or str(e)
        raise _fail(error, source, "", f"invalid YAML: {problem}", mark.line + 1 if mark else None) from None
    finally:
        if loader is not None:
            loader.dispose()
    if root is None:
        raise _fail(error, source, "", "the file is empty (expected a mapping)")
    if not isinstance(data, dict):
        raise _fail(error, source, "", f"the top level must be a mapping, got {_kind(data)}", root.start_mark.line + 1)
    _check_duplicate_keys(root, (), source, error)
    return data, root


def _check_events(text: str, source: str, error: type[FileError]) -> None:
    """One pass over the parser's events, before anything is composed: refuse nesting deeper than
    MAX_YAML_DEPTH and a document of more than MAX_YAML_NODES values, counting what aliases repeat
    (so a billion-laughs bomb fails at its first big alias), aliases into a node that contains them,
    and lone surrogates (escapes such as "\\ud800"). Syntax errors are left to the loader that
    follows, which reports them the same way."""
    found: dict[str, tuple[int, int]] = {}  # anchor -> (values in its node, levels below it), aliases expanded
    open_: list[list[Any]] = [[None, 0, 0]]  # [anchor, values, levels below] of each open collection; a root holder

    def add(values: int, levels: int, event: yaml.Event) -> None:
        top = open_[-1]
        top[1], top[2] = top[1] + values, max(top[2], levels)
        if top[1] > MAX_YAML_NODES or values > MAX_YAML_NODES:
            why = " (aliases repeat what they name)" if found else ""
            refuse(f"the document {'expands to' if found else 'holds'} more than {MAX_YAML_NODES} values{why}", event)
        if len(open_) - 1 + levels > MAX_YAML_DEPTH:
            how = "aliases nest it" if isinstance(event, yaml.AliasEvent) else "nested"
            refuse(f"{how} more than {MAX_YAML_DEPTH} levels deep", event)

    def refuse(problem: str, event: yaml.Event) -> None:
        raise _fail(error, source, "", problem, event.start_mark.line + 1)

    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            if any(anchor == event.anchor for anchor, _, _ in open_):
                refuse(f"alias *{event.anchor[:40]} refers to a node that contains it", event)
            add(*found.get(event.anchor, (1, 0)), event)  # an undefined alias: the loader reports it
        elif isinstance(event, yaml.ScalarEvent):
            if _SURROGATE.search(event.value):
                refuse("a lone surrogate in a string (not UTF-8 text)", event)
            if event.anchor is not None:
                found[event.anchor] = (1, 0)
            add(1, 0, event)
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            add(0, 1, event)
            open_.append([event.anchor, 1, 0])
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            anchor, values, levels = open_.pop()
            if anchor is not None:
                found[anchor] = (values, levels + 1)
            add(values, levels + 1, event)
        elif isinstance(event, yaml.DocumentEndEvent):
            open_[0][1] = 0  # each document counts on its own; the loader refuses a second one


def _check_duplicate_keys(node: yaml.Node, parts: Parts, source: str, error: type[FileError], done: set[int] | None = None) -> None:
    """YAML lets a later key silently replace an earlier one; our files may not."""
    done = set() if done is None else done
    if id(node) in done:  # an alias: already checked (and may be recursive)
        return
    done.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, (*parts, i), source, error, done)
    elif isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                if key.value in seen:
                    raise _fail(error, source, _dotted((*parts, key.value)), "duplicate key", key.start_mark.line + 1)
                seen.add(key.value)
                _check_duplicate_keys(value, (*parts, key.value), source, error, done)


def validate(model: type[BaseModel], data: Any, source: str, root: yaml.Node | None, base_dir: Path | None,
             error: type[FileError]) -> Any:
    """model.model_validate (relative paths resolve against `base_dir`), turning a ValidationError
    into an `error` pointing into the YAML."""
    try:
        return model.model_validate(data, context={"base_dir": base_dir or Path.cwd()})
    except ValidationError as e:
        found = [p for err in e.errors()[:MAX_KEPT_ERRORS] for p in _problems(err, data)]
        errors = [(_dotted(parts), msg) for parts, msg in found]
        parts, msg = found[0]
        raise _fail(error, source, _dotted(parts), msg, _line_of(root, parts), errors) from None


def _problems(err: Any, data: Any) -> list[tuple[Parts, str]]:
    """One pydantic error as (path parts, plain message) pairs."""
    parts, kind, ctx, value = _clean_loc(err["loc"], data), err["type"], err.get("ctx") or {}, err.get("input")
    if isinstance(ctx.get("error"), Problems):
        return [((*parts, *sub), msg) for sub, msg in ctx["error"].problems]
    last = str(parts[-1]) if parts else "value"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        kinds = {"backend": BACKEND_KINDS, "policy": POLICY_KINDS}.get(last) or re.findall(r"'([^']*)'", ctx.get("expected_tags", ""))
        expected = ", ".join(kinds)
        tag = f"unknown {last} kind {ctx['tag']!r}" if "tag" in ctx else "missing key 'kind'"
        return [((*parts, "kind"), f"{tag} (expected one of: {expected})")]
    if kind == "literal_error":
        what = f"{parts[-2]} kind" if last == "kind" and len(parts) > 1 else last
        expected = ", ".join(re.findall(r"'([^']*)'", ctx.get("expected", "")))
        return [(parts, f"unknown {what} {short(value)} (expected one of: {expected})")]
    messages = {
        "missing": "required key is missing",
        "extra_forbidden": f"unknown key {last!r}",
        "string_pattern_mismatch": f"invalid name {short(value)}: must match {ctx.get('pattern')}",
    }
    if kind in messages:
        return [(parts, messages[kind])]
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return [(parts, f"expected a mapping, got {_kind(value)}")]
    msg = err["msg"].removeprefix("Value error, ")
    msg = msg[:1].lower() + msg[1:]
    return [(parts, msg if kind == "value_error" else f"{msg} (got {short(value)})")]


def _clean_loc(loc: tuple[Any, ...], data: Any) -> Parts:
    """Drop the discriminator tags pydantic adds to a union's loc (backend.replay.table -> backend.table)."""
    parts: list[str | int] = []
    for part in loc:
        if isinstance(data, dict) and part not in data and data.get("kind") == part:
            continue
        parts.append(part)
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        data = data[part] if in_list or isinstance(data, dict) and part in data else None
    return tuple(parts)


def _dotted(parts: Parts) -> str:
    """('agents', 2, 'backend', 'kind') -> 'agents[2].backend.kind'."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _line_of(node: yaml.Node | None, parts: Parts) -> int | None:
    """The 1-based line of a path in the YAML tree; that of the nearest existing parent if it is absent."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in parts:
        if isinstance(node, yaml.MappingNode):
            hit = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(part)), None)
            if hit is None:
                break
            line, node = hit[0].start_mark.line + 1, hit[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)
