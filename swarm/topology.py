"""Topology files: the pydantic schema of a swarm's YAML description, and loading it with clear errors.

Every failure raises `TopologyError` ("file:line: path: problem"); a validation failure also keeps
all of pydantic's complaints, as (path, problem) pairs, in the error's `errors` attribute.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from swarm.errors import TopologyError
from swarm.specs import (
    BACKEND_KINDS, POLICY_KINDS, AlwaysAnswerPolicySpec, BackendSpec, ConfidencePolicySpec, OpenAIBackendSpec,
    PolicySpec, ReplayBackendSpec, SelfAwarePolicySpec, TransformersBackendSpec, VerbalizedPolicySpec, VLLMBackendSpec,
)

__all__ = [
    "BACKEND_KINDS", "POLICY_KINDS", "AgentSpec", "AlwaysAnswerPolicySpec", "BackendSpec", "ConfidencePolicySpec",
    "DefaultsSpec", "OpenAIBackendSpec", "PolicySpec", "ReplayBackendSpec", "ResourcesSpec", "SelfAwarePolicySpec",
    "Topology", "TransformersBackendSpec", "VerbalizedPolicySpec", "load_agent_spec", "load_topology",
    "parse_topology", "topology_json_schema", "VLLMBackendSpec",
]

_STRICT = ConfigDict(extra="forbid", frozen=True)
_Parts = tuple[str | int, ...]


class _Problems(ValueError):
    """Raised by validators: problems as (path parts, message); pydantic carries it out in `ctx`."""

    def __init__(self, problems: list[tuple[_Parts, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(msg for _, msg in problems))


class ResourcesSpec(BaseModel):
    """Ray resources of one agent's actor."""

    model_config = _STRICT
    num_cpus: float = Field(0, ge=0)
    num_gpus: float = Field(0, ge=0)
    memory_mb: int | None = Field(None, ge=0)
    custom: dict[str, float] = Field(default_factory=dict)


class AgentSpec(BaseModel):
    """One agent: a model behind a backend, its normalised cost and its policy."""

    model_config = _STRICT
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    cost: float = Field(ge=0, le=1000, description="normalised cost (the paper uses 0.1..0.9)")
    backend: BackendSpec
    policy: PolicySpec | None = None
    resources: ResourcesSpec | None = None
    links: list[str] = Field(default_factory=list, description="graph routing: undirected edges, by name")
    max_concurrency: int = Field(256, ge=1)


class DefaultsSpec(BaseModel):
    """Swarm-wide settings, and the policy and resources of agents that name none."""

    model_config = _STRICT
    max_hops: int = Field(8, ge=1)
    deadline_s: float = Field(60, gt=0)
    gamma: float = Field(0.5, ge=0, le=5)
    max_query_chars: int = Field(32768, ge=1)
    gossip_interval_s: float = Field(0.5, gt=0)
    ping_interval_s: float = Field(1.0, gt=0)
    ping_timeout_s: float = Field(2.0, gt=0)
    suspect_timeout_s: float = Field(3.0, gt=0)
    drain_timeout_s: float = Field(30, gt=0)
    start: Literal["parallel", "sequential"] = Field(
        "parallel", description="sequential: agents start one at a time in file order, each after the previous one is "
                                "ready (GPU engines sharing a device then measure free memory one after another)")
    policy: PolicySpec = SelfAwarePolicySpec()
    resources: ResourcesSpec = ResourcesSpec()


class Topology(BaseModel):
    """A whole swarm: its agents, how queries travel among them, and the defaults."""

    model_config = _STRICT
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,40}$", description="becomes the Ray namespace")
    routing: Literal["cascade", "graph"] = "cascade"
    cascade: list[str] | None = Field(None, description="explicit cascade order; default: by cost")
    agents: list[AgentSpec] = Field(min_length=1)
    links: list[tuple[str, str]] = Field(default_factory=list, description="graph routing: undirected edges")
    seeds: list[str] = Field(default_factory=list, description="agents a joiner contacts; default: all")
    defaults: DefaultsSpec = DefaultsSpec()

    @model_validator(mode="after")
    def _check(self) -> Topology:
        """Cross-field rules: unique names, a sound cascade, links and seeds naming real agents."""
        problems = self._name_problems() + self._cascade_problems() + self._link_problems()
        problems += [(("seeds", i), f"unknown agent {s!r}") for i, s in enumerate(self.seeds) if s not in self._index()]
        if problems:
            raise _Problems(problems)
        return self

    def _index(self) -> dict[str, int]:
        return {a.name: i for i, a in reversed(list(enumerate(self.agents)))}

    def _name_problems(self) -> list[tuple[_Parts, str]]:
        index = self._index()
        return [(("agents", i, "name"), f"duplicate agent name {a.name!r} (also agents[{index[a.name]}])")
                for i, a in enumerate(self.agents) if index[a.name] != i]

    def _cascade_problems(self) -> list[tuple[_Parts, str]]:
        if self.cascade is None:
            return []
        if self.routing != "cascade":
            return [(("cascade",), "a cascade order is only used with routing: cascade")]
        index, seen, out = self._index(), set(), []
        for i, name in enumerate(self.cascade):
            if name not in index:
                out.append((("cascade", i), f"unknown agent {name!r}"))
            elif name in seen:
                out.append((("cascade",), f"{name!r} appears twice: a cascade cannot contain a cycle"))
            seen.add(name)
        out += [(("cascade",), f"agent {a.name!r} is missing from the cascade order")
                for a in self.agents if a.name not in seen]
        known = [(i, self.agents[index[n]]) for i, n in enumerate(self.cascade) if n in index]
        out += [(("cascade", i), f"costs must rise along the cascade: {b.name!r} (cost {b.cost:g}) "
                 f"comes after {a.name!r} (cost {a.cost:g})")
                for (_, a), (i, b) in zip(known, known[1:]) if a.name != b.name and b.cost <= a.cost]
        return out

    def _link_problems(self) -> list[tuple[_Parts, str]]:
        out: list[tuple[_Parts, str]] = []
        if self.routing != "graph":
            out += [(("links",), "links are only used with routing: graph")] if self.links else []
            return out + [(("agents", i, "links"), "links are only used with routing: graph")
                          for i, a in enumerate(self.agents) if a.links]
        index = self._index()
        edges = [(("links", i), pair) for i, pair in enumerate(self.links)]
        edges += [(("agents", i, "links", j), (a.name, b))
                  for i, a in enumerate(self.agents) for j, b in enumerate(a.links)]
        for parts, (a, b) in edges:
            bad = [n for n in (a, b) if n not in index]
            if bad:
                out.append((parts, f"unknown agent {bad[0]!r}"))
            elif a == b:
                out.append((parts, f"agent {a!r} cannot link to itself"))
        return out

    def agent(self, name: str) -> AgentSpec:
        """The agent called `name` (KeyError if none)."""
        for a in self.agents:
            if a.name == name:
                return a
        raise KeyError(f"no agent named {name!r} in topology {self.name!r}")

    def policy_for(self, agent: AgentSpec | str) -> PolicySpec:
        """The agent's own policy, else the defaults' one."""
        agent = self.agent(agent) if isinstance(agent, str) else agent
        return agent.policy or self.defaults.policy

    def resources_for(self, agent: AgentSpec | str) -> ResourcesSpec:
        """The agent's own resources, else the defaults' ones."""
        agent = self.agent(agent) if isinstance(agent, str) else agent
        return agent.resources or self.defaults.resources

    def ordered_agents(self) -> list[AgentSpec]:
        """Agents in cascade order: the explicit `cascade` if given, else by (cost, name)."""
        if self.cascade is not None:
            return [self.agent(n) for n in self.cascade]
        return sorted(self.agents, key=lambda a: (a.cost, a.name))

    def neighbours(self) -> dict[str, set[str]]:
        """Graph routing: undirected adjacency from both `links` and agents' own links; {} for a cascade."""
        if self.routing != "graph":
            return {}
        adj: dict[str, set[str]] = {a.name: set() for a in self.agents}
        for a, b in [*self.links, *((a.name, b) for a in self.agents for b in a.links)]:
            adj[a].add(b)
            adj[b].add(a)
        return adj


# ---------------------------------------------------------------- loading


def topology_json_schema() -> dict[str, Any]:
    """The JSON Schema of topology files, for editors (shipped as topologies/topology.schema.json)."""
    return Topology.model_json_schema()


def load_topology(path: str | os.PathLike[str]) -> Topology:
    """Read and validate a topology YAML file; relative table paths resolve against its directory."""
    path = Path(path)
    return parse_topology(_read_text(path), source=str(path), base_dir=path.resolve().parent)


def parse_topology(text: str, source: str = "<string>", base_dir: Path | None = None) -> Topology:
    """Validate topology YAML text; relative paths resolve against `base_dir` (default: the cwd)."""
    data, root = _parse_yaml(text, source)
    return _validate(Topology, data, source, root, base_dir)


def load_agent_spec(
    path_or_mapping: str | os.PathLike[str] | Mapping[str, Any], base_dir: Path | None = None
) -> AgentSpec:
    """One agent, to add at runtime: a dict, or a YAML file holding one agent mapping."""
    if isinstance(path_or_mapping, Mapping):
        return _validate(AgentSpec, dict(path_or_mapping), "<agent>", None, base_dir)
    path = Path(path_or_mapping)
    data, root = _parse_yaml(_read_text(path), str(path))
    return _validate(AgentSpec, data, str(path), root, base_dir or path.resolve().parent)


def _fail(source: str, path: str, problem: str, line: int | None = None,
          errors: list[tuple[str, str]] | None = None) -> TopologyError:
    problem = " ".join(problem.split())  # always one line
    err = TopologyError(source, path, problem, line)
    err.errors = errors or [(path, problem)]
    return err


def _read_text(path: Path) -> str:
    """The file's text, or a TopologyError saying why it cannot be had."""
    if not path.exists():
        raise _fail(str(path), "", "no such file")
    if path.is_dir():
        raise _fail(str(path), "", "is a directory, not a YAML file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise _fail(str(path), "", f"cannot read: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _fail(str(path), "", f"not UTF-8 text (byte {e.start})", raw[: e.start].count(b"\n") + 1) from None


def _parse_yaml(text: str, source: str) -> tuple[dict[str, Any], yaml.Node]:
    """Safe-load one YAML document that must be a mapping; also return its node tree, for line numbers."""
    loader = None
    try:
        loader = yaml.SafeLoader(text)
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        problem = getattr(e, "problem", None) or getattr(e, "reason", None) or str(e)
        raise _fail(source, "", f"invalid YAML: {problem}", mark.line + 1 if mark else None) from None
    finally:
        if loader is not None:
            loader.dispose()
    if root is None:
        raise _fail(source, "", "the file is empty (expected a mapping)")
    if not isinstance(data, dict):
        raise _fail(source, "", f"the top level must be a mapping, got {_kind(data)}", root.start_mark.line + 1)
    _check_duplicate_keys(root, (), source)
    return data, root


def _check_duplicate_keys(node: yaml.Node, parts: _Parts, source: str, done: set[int] | None = None) -> None:
    """YAML lets a later key silently replace an earlier one; a topology file may not."""
    done = set() if done is None else done
    if id(node) in done:  # an alias: already checked (and may be recursive)
        return
    done.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, (*parts, i), source, done)
    elif isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                if key.value in seen:
                    raise _fail(source, _dotted((*parts, key.value)), "duplicate key", key.start_mark.line + 1)
                seen.add(key.value)
                _check_duplicate_keys(value, (*parts, key.value), source, done)


def _validate(model: type[BaseModel], data: Any, source: str, root: yaml.Node | None,
              base_dir: Path | None) -> Any:
    """model.model_validate, turning a ValidationError into a TopologyError pointing into the YAML."""
    try:
        return model.model_validate(data, context={"base_dir": base_dir or Path.cwd()})
    except ValidationError as e:
        found = [p for err in e.errors() for p in _problems(err, data)]
        errors = [(_dotted(parts), msg) for parts, msg in found]
        parts, msg = found[0]
        raise _fail(source, _dotted(parts), msg, _line_of(root, parts), errors) from None


def _problems(err: Any, data: Any) -> list[tuple[_Parts, str]]:
    """One pydantic error as (path parts, plain message) pairs."""
    parts, kind, ctx, value = _clean_loc(err["loc"], data), err["type"], err.get("ctx") or {}, err.get("input")
    if isinstance(ctx.get("error"), _Problems):
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


def _clean_loc(loc: tuple[Any, ...], data: Any) -> _Parts:
    """Drop the discriminator tags pydantic adds to a union's loc (backend.replay.table -> backend.table)."""
    parts: list[str | int] = []
    for part in loc:
        if isinstance(data, dict) and part not in data and data.get("kind") == part:
            continue
        parts.append(part)
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        data = data[part] if in_list or isinstance(data, dict) and part in data else None
    return tuple(parts)


def _dotted(parts: _Parts) -> str:
    """('agents', 2, 'backend', 'kind') -> 'agents[2].backend.kind'."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _line_of(node: yaml.Node | None, parts: _Parts) -> int | None:
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


if __name__ == "__main__":
    print(json.dumps(topology_json_schema(), indent=2, sort_keys=True))
