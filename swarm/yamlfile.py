"""Reading a user's YAML file (a topology, an agent, a recipe) with errors that point into it.

`read_text`, `parse_yaml` and `validate` raise the `FileError` subclass they are given
("file:line: path: problem", one line); a validation failure also keeps all of pydantic's
complaints, as (path, problem) pairs, in the error's `errors` attribute. A model validator
reports cross-field problems by raising `Problems`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from swarm.errors import FileError
from swarm.specs import BACKEND_KINDS, POLICY_KINDS

Parts = tuple[str | int, ...]


class Problems(ValueError):
    """Raised by validators: problems as (path parts, message); pydantic carries it out in `ctx`."""

    def __init__(self, problems: list[tuple[Parts, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(msg for _, msg in problems))


def _fail(error: type[FileError], source: str, path: str, problem: str, line: int | None = None,
          errors: list[tuple[str, str]] | None = None) -> FileError:
    problem = " ".join(problem.split())  # always one line
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
        raw = path.read_bytes()
    except OSError as e:
        raise _fail(error, str(path), "", f"cannot read: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _fail(error, str(path), "", f"not UTF-8 text (byte {e.start})", raw[: e.start].count(b"\n") + 1) from None


def parse_yaml(text: str, source: str, error: type[FileError]) -> tuple[dict[str, Any], yaml.Node]:
    """Safe-load one YAML document that must be a mapping; also return its node tree, for line numbers."""
    loader = None
    try:
        loader = yaml.SafeLoader(text)
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
        found = [p for err in e.errors() for p in _problems(err, data)]
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
        return [(parts, f"unknown {what} {_short(value)} (expected one of: {expected})")]
    messages = {
        "missing": "required key is missing",
        "extra_forbidden": f"unknown key {last!r}",
        "string_pattern_mismatch": f"invalid name {_short(value)}: must match {ctx.get('pattern')}",
    }
    if kind in messages:
        return [(parts, messages[kind])]
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return [(parts, f"expected a mapping, got {_kind(value)}")]
    msg = err["msg"].removeprefix("Value error, ")
    msg = msg[:1].lower() + msg[1:]
    return [(parts, msg if kind == "value_error" else f"{msg} (got {_short(value)})")]


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


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
