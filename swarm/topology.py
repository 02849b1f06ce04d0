"""Topology files: the pydantic schema of a swarm's YAML description, and loading it with clear errors.

Every failure raises `TopologyError` ("file:line: path: problem"), through `swarm.yamlfile`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from swarm.errors import TopologyError
from swarm.protocol import MAX_MESSAGE_BYTES
from swarm.specs import (
    BACKEND_KINDS, POLICY_KINDS, AlwaysAnswerPolicySpec, BackendSpec, ConfidencePolicySpec, OpenAIBackendSpec,
    PolicySpec, ReplayBackendSpec, SelfAwarePolicySpec, TransformersBackendSpec, VerbalizedPolicySpec, VLLMBackendSpec, resolve_path,
)

from swarm.quoting import short
from swarm.yamlfile import Parts, Problems, parse_yaml, read_text, validate

__all__ = [
    "BACKEND_KINDS", "POLICY_KINDS", "AgentSpec", "AlwaysAnswerPolicySpec", "BackendSpec", "ConfidencePolicySpec",
    "DefaultsSpec", "OpenAIBackendSpec", "PolicySpec", "ReplayBackendSpec", "ResourcesSpec", "SelfAwarePolicySpec",
    "Topology", "TransformersBackendSpec", "VerbalizedPolicySpec", "load_agent_spec", "load_topology",
    "parse_topology", "topology_json_schema", "VLLMBackendSpec",
]

_STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # a duration or cost of .inf or .nan is a mistake


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
    max_hops: int = Field(8, ge=1, le=64, description="the most agents a query may visit, its entry included (so at most max_hops - 1 forwards; an Answer's `hops` counts forwards)")
    deadline_s: float = Field(60, gt=0, description="a query's deadline when its client names none")
    max_deadline_s: float = Field(600, gt=0, description="the longest time a query may ask for: agents cut a longer budget (from a client or "
                                                         "any sender on the wire) to this")
    gamma: float = Field(0.5, ge=0, le=5)
    max_query_chars: int = Field(32768, ge=1, le=MAX_MESSAGE_BYTES // 8,
                                 description="the longest query accepted; at most an eighth of a wire message, so that a query "
                                             "with its trace always fits one (a character is up to 4 bytes)")
    gossip_interval_s: float = Field(0.5, gt=0)
    ping_interval_s: float = Field(1.0, gt=0)
    ping_timeout_s: float = Field(2.0, gt=0)
    suspect_timeout_s: float = Field(3.0, gt=0)
    drain_timeout_s: float = Field(30, gt=0)
    forget_after_s: float = Field(600, gt=0, description="how long a dead or left agent stays in the membership map (dead ones are "
                                                          "probed again meanwhile, so a healed partition rejoins) before it is forgotten")
    generation_share: float = Field(0.5, gt=0, le=1, description="the most of a query's remaining time an agent that could still pass "
                                                                  "it on spends deciding and generating, so a slow or hung model leaves time to forward")
    next_hop: Literal["next", "best"] = Field(
        "next", description="where an agent passes a query it rejects: next, the next agent of the cascade (the paper's); "
                            "best, of the stronger agents, the one whose advertised value curve is worth most for the query's "
                            "region and alpha (agents it outranks are skipped), and each agent advertises its curve given the "
                            "best of theirs")
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
    regions: Path | None = Field(None, description="a region map (`swarm regions fit`), relative to the topology file: agents "
                                 "whose probes were fitted under it advertise a value curve per region, and judge each query "
                                 "against its region's; default: one curve for every query")

    @field_validator("regions")
    @classmethod
    def _regions_file(cls, regions: Path | None, info: ValidationInfo) -> Path | None:
        if regions is None:
            return None
        regions = resolve_path(regions, info, "region map")
        if (info.context or {}).get("base_dir") is not None:
            from swarm.assess.regions import RegionMap
            from swarm.errors import SwarmError

            try:
                RegionMap.load(regions)  # a broken map fails here, naming the topology's field, not in an agent's process
            except SwarmError as exc:
                raise ValueError(str(exc)) from None
        return regions

    def region_map(self):
        """The region map the topology names (a `swarm.assess.regions.RegionMap`), or None."""
        if self.regions is None:
            return None
        from swarm.assess.regions import RegionMap

        return RegionMap.load(self.regions)

    @model_validator(mode="after")
    def _check(self) -> Topology:
        """Cross-field rules: unique names, a sound cascade, links and seeds naming real agents."""
        problems = self._name_problems() + self._cascade_problems() + self._link_problems()
        problems += [(("seeds", i), f"unknown agent {short(s)}") for i, s in enumerate(self.seeds) if s not in self._index()]
        if self.defaults.deadline_s > self.defaults.max_deadline_s:
            problems.append((("defaults", "deadline_s"), f"{self.defaults.deadline_s:g} s is longer than max_deadline_s "
                                                          f"({self.defaults.max_deadline_s:g} s), which agents would cut it to"))
        if problems:
            raise Problems(problems)
        return self

    def _index(self) -> dict[str, int]:
        return {a.name: i for i, a in reversed(list(enumerate(self.agents)))}

    def _name_problems(self) -> list[tuple[Parts, str]]:
        index = self._index()
        return [(("agents", i, "name"), f"duplicate agent name {a.name!r} (also agents[{index[a.name]}])")
                for i, a in enumerate(self.agents) if index[a.name] != i]

    def _cascade_problems(self) -> list[tuple[Parts, str]]:
        if self.cascade is None:
            return []
        if self.routing != "cascade":
            return [(("cascade",), "a cascade order is only used with routing: cascade")]
        index, seen, out = self._index(), set(), []
        for i, name in enumerate(self.cascade):
            if name not in index:
                out.append((("cascade", i), f"unknown agent {short(name)}"))
            elif name in seen:
                out.append((("cascade",), f"{short(name)} appears twice: a cascade cannot contain a cycle"))
            seen.add(name)
        out += [(("cascade",), f"agent {a.name!r} is missing from the cascade order")
                for a in self.agents if a.name not in seen]
        known = [(i, self.agents[index[n]]) for i, n in enumerate(self.cascade) if n in index]
        out += [(("cascade", i), f"costs must rise along the cascade: {b.name!r} (cost {b.cost:g}) "
                 f"comes after {a.name!r} (cost {a.cost:g})")
                for (_, a), (i, b) in zip(known, known[1:]) if a.name != b.name and b.cost <= a.cost]
        return out

    def _link_problems(self) -> list[tuple[Parts, str]]:
        out: list[tuple[Parts, str]] = []
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
                out.append((parts, f"unknown agent {short(bad[0])}"))
            elif a == b:
                out.append((parts, f"agent {short(a)} cannot link to itself"))
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
    return parse_topology(read_text(path, TopologyError), source=str(path), base_dir=path.resolve().parent)


def parse_topology(text: str, source: str = "<string>", base_dir: Path | None = None) -> Topology:
    """Validate topology YAML text; relative paths resolve against `base_dir` (default: the cwd)."""
    data, root = parse_yaml(text, source, TopologyError)
    return validate(Topology, data, source, root, base_dir, TopologyError)


def load_agent_spec(
    path_or_mapping: str | os.PathLike[str] | Mapping[str, Any], base_dir: Path | None = None
) -> AgentSpec:
    """One agent, to add at runtime: a dict, or a YAML file holding one agent mapping."""
    if isinstance(path_or_mapping, Mapping):
        return validate(AgentSpec, dict(path_or_mapping), "<agent>", None, base_dir, TopologyError)
    path = Path(path_or_mapping)
    return parse_agent_spec(read_text(path, TopologyError), str(path), base_dir or path.resolve().parent)


def parse_agent_spec(text: str, source: str = "<agent>", base_dir: Path | None = None) -> AgentSpec:
    """One agent from YAML text (a file's, or a snippet pasted into the dashboard), checked as a file is;
    relative paths resolve against `base_dir` (default: the cwd)."""
    data, root = parse_yaml(text, source, TopologyError)
    return validate(AgentSpec, data, source, root, base_dir, TopologyError)


if __name__ == "__main__":
    print(json.dumps(topology_json_schema(), indent=2, sort_keys=True))
