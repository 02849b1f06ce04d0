"""Topology files: the shipped ones load, every broken one gets a one-line error saying where and what."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from swarm.errors import TopologyError
from swarm.topology import (
    AgentSpec,
    SelfAwarePolicySpec,
    ReplayBackendSpec,
    ResourcesSpec,
    Topology,
    load_agent_spec,
    load_topology,
    parse_topology,
    topology_json_schema,
)

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGIES = ROOT / "topologies"
BAD = Path(__file__).resolve().parent / "data" / "bad_topologies"
BAD_FILES = sorted(BAD.glob("*.yaml"))


def _header(path: Path) -> tuple[str, int | None]:
    """The `# expect: ...` substring and the optional `# line: N` of a corpus file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    expect = re.fullmatch(r"# expect: (.+)", lines[0])
    assert expect, f"{path.name}: the first line must be '# expect: <substring>'"
    line = re.fullmatch(r"# line: (\d+)", lines[1]) if len(lines) > 1 else None
    return expect.group(1), int(line.group(1)) if line else None


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "replay.jsonl"
    path.write_text('{"id": "q0", "query": "1+1?", "gold": "2", "agents": {}}\n', encoding="utf-8")
    return path


def test_corpus_is_big_enough() -> None:
    assert len(BAD_FILES) >= 14


@pytest.mark.parametrize("bad", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_bad_topology_gives_one_line_error(bad: Path, tmp_path: Path, table: Path) -> None:
    # The corpus files name a table `replay.jsonl` next to them: copy each beside the fixture's one.
    expect, line = _header(bad)
    path = tmp_path / bad.name
    shutil.copy(bad, path)
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    message = str(info.value)
    assert expect in message
    assert message.startswith(str(path))
    assert "\n" not in message
    assert info.value.errors and all(isinstance(p, str) and isinstance(m, str) for p, m in info.value.errors)
    if line is not None:
        assert info.value.line == line
        assert message.startswith(f"{path}:{line}: ")


def test_shipped_cascade() -> None:
    topo = load_topology(TOPOLOGIES / "cascade-replay.yaml")
    assert topo.routing == "cascade"
    assert [a.name for a in topo.ordered_agents()] == ["m1", "m2", "m3", "m4", "m5"]
    assert [a.cost for a in topo.ordered_agents()] == [0.1, 0.3, 0.5, 0.7, 0.9]
    assert topo.policy_for("m5").kind == "always_answer"
    assert all(topo.policy_for(a).kind == "self_aware" for a in topo.agents[:4])
    assert topo.neighbours() == {}
    backend = topo.agent("m1").backend
    assert isinstance(backend, ReplayBackendSpec)
    assert backend.table == (TOPOLOGIES / "data" / "arith-replay.jsonl").resolve()
    assert backend.model is None


def test_shipped_mesh() -> None:
    topo = load_topology(TOPOLOGIES / "mesh-replay.yaml")
    assert topo.routing == "graph"
    order = topo.ordered_agents()
    assert [a.backend.model for a in order] == ["m1", "m2", "m3", "m4", "m5"]
    assert topo.policy_for(order[-1]).kind == "always_answer"
    adj = topo.neighbours()
    assert set(adj) == {a.name for a in topo.agents}
    for a, peers in adj.items():  # undirected, no self loops, everyone reachable
        assert a not in peers
        assert all(a in adj[b] for b in peers)
    edges = sum(len(p) for p in adj.values()) // 2
    assert edges >= len(adj)  # at least as many edges as nodes: the graph has a cycle
    assert set(topo.seeds) <= set(adj)


def test_shipped_replay_quickstart() -> None:
    topo = load_topology(TOPOLOGIES / "quickstart-replay.yaml")
    order = topo.ordered_agents()
    assert [a.cost for a in order] == [0.1, 0.5, 0.9]
    assert [a.backend.model for a in order] == ["m1", "m3", "m5"]
    assert topo.policy_for(order[-1]).kind == "always_answer"
    assert topo.defaults.deadline_s <= 30


def test_shipped_quickstart_runs_the_testbed_ladder() -> None:
    # its costs are the ladder report's (log FLOPs per token), recomputed here from the rungs
    from swarm.testbed.ladder import QUICK_RUNGS, ModelReport, _config, _flops, _set_costs
    from swarm.testbed.tokenizer import build_tokenizer

    topo = load_topology(TOPOLOGIES / "quickstart.yaml")
    order = topo.ordered_agents()
    assert [a.backend.model for a in order] == [f"testbed:quick/{r.name}" for r in QUICK_RUNGS]
    tok = build_tokenizer()
    reports = [ModelReport(r.name, "", 0, _flops(_config(r, tok)), 0.0, 0.0, r.steps) for r in QUICK_RUNGS]
    _set_costs(reports)
    assert [a.cost for a in order] == [m.cost for m in reports]
    assert topo.policy_for(order[-1]).kind == "always_answer"
    assert {topo.policy_for(a).kind for a in order[:-1]} == {"confidence"}


def test_defaults_and_lookups(table: Path) -> None:
    topo = parse_topology(
        f"""
name: small
agents:
  - name: b
    cost: 0.5
    backend: {{kind: replay, table: {table.name}}}
    resources: {{num_cpus: 2, custom: {{accel: 1}}}}
  - name: a
    cost: 0.5
    backend: {{kind: replay, table: {table}, latency_ms: 5}}
    policy: {{kind: always_answer, reject_phrase: "Pass."}}
""",
        base_dir=table.parent,
    )
    assert [a.name for a in topo.ordered_agents()] == ["a", "b"]  # equal costs: by name
    assert topo.policy_for("b") == SelfAwarePolicySpec() == topo.defaults.policy
    assert topo.policy_for("a").reject_phrase == "Pass."
    assert topo.resources_for("a") == ResourcesSpec()
    assert topo.resources_for(topo.agent("b")).custom == {"accel": 1.0}
    assert topo.agent("b").backend.table == table.resolve()
    assert topo.defaults.max_hops == 8 and topo.agent("a").max_concurrency == 256
    with pytest.raises(KeyError):
        topo.agent("zz")


def test_the_next_hop_is_a_swarm_wide_default(table: Path) -> None:
    from swarm.build import node_config

    text = f"name: x\ndefaults:\n  next_hop: {{hop}}\nagents:\n  - name: m1\n    cost: 0.1\n    backend: {{{{kind: replay, table: {table.name}}}}}\n"
    assert node_config(parse_topology(text.format(hop="best"), base_dir=table.parent)).next_hop == "best"
    assert node_config(load_topology(TOPOLOGIES / "quickstart-replay.yaml")).next_hop == "next"  # the paper's cascade unless asked
    with pytest.raises(TopologyError, match=r"inline.yaml:3: defaults.next_hop: unknown next_hop 'sideways' \(expected one of: next, best\)"):
        parse_topology(text.format(hop="sideways"), source="inline.yaml", base_dir=table.parent)


def test_models_are_frozen() -> None:
    topo = load_topology(TOPOLOGIES / "quickstart-replay.yaml")
    with pytest.raises(ValidationError):
        topo.name = "other"  # type: ignore[misc]


def test_several_errors_are_all_kept(table: Path) -> None:
    text = (
        "name: x\nagents:\n  - name: m1\n    cost: -1\n"
        "    backend: {kind: replay, table: replay.jsonl}\n    shade: red\n"
    )
    with pytest.raises(TopologyError) as info:
        parse_topology(text, source="inline.yaml", base_dir=table.parent)
    assert str(info.value) == "inline.yaml:4: agents[0].cost: input should be greater than or equal to 0 (got -1)"
    assert [p for p, _ in info.value.errors] == ["agents[0].cost", "agents[0].shade"]


def test_missing_table_names_the_resolved_path(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("name: x\nagents:\n  - name: m1\n    cost: 0.1\n    backend: {kind: replay, table: nope.jsonl}\n")
    expected = r"t\.yaml:5: agents\[0\]\.backend\.table: replay table '.*nope\.jsonl' does not exist$"
    with pytest.raises(TopologyError, match=expected):
        load_topology(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="no such file") as info:
        load_topology(tmp_path / "absent.yaml")
    assert str(info.value) == f"{tmp_path / 'absent.yaml'}: no such file"


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="is a directory") as info:
        load_topology(tmp_path)
    assert str(info.value).startswith(str(tmp_path))


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: x\n# caf\xe9\n")
    with pytest.raises(TopologyError, match=r"latin1.yaml:2: not UTF-8"):
        load_topology(path)


def test_no_arbitrary_objects() -> None:
    with pytest.raises(TopologyError, match="invalid YAML"):
        parse_topology("name: !!python/object/apply:os.system ['true']\n")


def test_load_agent_spec_from_dict(table: Path) -> None:
    spec = load_agent_spec({"name": "m6", "cost": 0.95, "backend": {"kind": "replay", "table": table.name}},
                           base_dir=table.parent)
    assert isinstance(spec, AgentSpec)
    assert spec.backend.table == table.resolve()
    with pytest.raises(TopologyError, match=r"^<agent>: cost: required key is missing$"):
        load_agent_spec({"name": "m6", "backend": {"kind": "replay", "table": str(table)}})
    with pytest.raises(TopologyError, match=r"^<agent>: backend\.kind: unknown backend kind 'gpt'"):
        load_agent_spec({"name": "m6", "cost": 1, "backend": {"kind": "gpt"}})


def test_load_agent_spec_from_file(tmp_path: Path, table: Path) -> None:
    path = tmp_path / "m6.yaml"
    path.write_text(f"name: m6\ncost: 0.95\nbackend:\n  kind: replay\n  table: {table.name}\n  model: m5\n")
    spec = load_agent_spec(path)
    assert (spec.name, spec.cost, spec.backend.model, spec.backend.table) == ("m6", 0.95, "m5", table.resolve())
    path.write_text("name: m6\ncost: 0.95\nbackend: {kind: replay, table: replay.jsonl}\npolicy: {kind: maybe}\n")
    with pytest.raises(TopologyError, match=r"m6.yaml:4: policy\.kind: unknown policy kind 'maybe'"):
        load_agent_spec(str(path))


def test_model_construction_in_python_does_not_touch_files() -> None:
    backend = ReplayBackendSpec(kind="replay", table=Path("x"))
    topo = Topology(name="py", agents=[AgentSpec(name="m1", cost=0.1, backend=backend)])
    assert topo.agent("m1").backend.table == Path("x")


def test_schema_file_is_fresh() -> None:
    shipped = (TOPOLOGIES / "topology.schema.json").read_text(encoding="utf-8")
    expected = json.dumps(topology_json_schema(), indent=2, sort_keys=True) + "\n"
    assert shipped == expected, (
        "topologies/topology.schema.json is stale; regenerate it with "
        "`swarm schema > topologies/topology.schema.json`"
    )


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parent.parent / "topologies").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_topology_loads(path):
    topo = load_topology(path)
    assert topo.name == path.stem and len(topo.agents) >= 2
    # the strongest never passes a query on: it always answers, or it is a probe agent, which must answer when
    # nobody is after it (and passes on to a stronger agent that joins later)
    assert topo.policy_for(topo.ordered_agents()[-1]).kind in ("always_answer", "probe")


def test_shipped_quickstart_probe_is_the_quickstart_deciding_with_probes() -> None:
    """The demo's topology (the recommended configuration): the quickstart's agents, costs and
    backends, each under a probe of its own rung (fitted into the cache on first use)."""
    base, probe = load_topology(TOPOLOGIES / "quickstart.yaml"), load_topology(TOPOLOGIES / "quickstart-probe.yaml")
    assert [(a.name, a.cost, a.backend) for a in probe.ordered_agents()] == [(a.name, a.cost, a.backend) for a in base.ordered_agents()]
    for a in probe.agents:
        policy = probe.policy_for(a)
        assert (policy.kind, policy.path, policy.bar, policy.confirm) == ("probe", a.backend.model, "curve", "token_confidence")


def test_shipped_quickstart_probe_regions_is_the_recommended_swarm_under_a_region_map() -> None:
    probe, regions = load_topology(TOPOLOGIES / "quickstart-probe.yaml"), load_topology(TOPOLOGIES / "quickstart-probe-regions.yaml")
    under_map = regions.model_copy(update={"defaults": regions.defaults.model_copy(update={"next_hop": "next"})})
    assert under_map.model_dump(exclude={"name", "regions"}) == probe.model_dump(exclude={"name", "regions"})
    assert (probe.defaults.next_hop, regions.defaults.next_hop) == ("next", "best")
    assert probe.regions is None and regions.regions == TOPOLOGIES / "data" / "testbed-regions.npz"
    assert regions.region_map().k == 4


def test_a_topology_naming_a_broken_region_map_fails_with_its_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "map.npz").write_text("not a map")
    path = tmp_path / "t.yaml"
    path.write_text("name: t\nregions: map.npz\nagents:\n  - {name: a, cost: 0.1, backend: {kind: replay, table: x.jsonl}}\n")
    (tmp_path / "x.jsonl").write_text('{"id": "1", "query": "q", "agents": {"a": {"answer": "1", "correct": true, "p": 1}}}\n')
    with pytest.raises(TopologyError, match=r"t.yaml:2: regions: .*region map .*map.npz' cannot be read as a .npz file"):
        load_topology(path)
    path.write_text(path.read_text().replace("map.npz", "nowhere.npz"))
    with pytest.raises(TopologyError, match=r"regions: region map .*nowhere.npz' does not exist"):
        load_topology(path)
