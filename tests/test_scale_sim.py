"""benchmarks/scale_sim.py, small: gossip converges in O(log n) rounds (and the compact model plays the
same rounds as the real Membership class), and AgentNodes on the virtual clock lose no query under churn."""

from __future__ import annotations

import asyncio
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/ is a package at the repository root

from benchmarks.scale_sim import (  # noqa: E402
    ChurnParams,
    CompactSwarm,
    MembershipParams,
    RealSwarm,
    churn_part,
    gossip_event,
    membership_part,
    run_clocked,
)


def test_membership_gossip_converges_in_log_n_rounds_and_the_compact_model_matches_the_real_class() -> None:
    n = 200
    m = membership_part(MembershipParams(sizes=(n,), cost_sample=n))
    assert {(r["event"], r["mode"]) for r in m["membership"]} == {(e, g) for e in ("join", "dead") for g in ("sync", "async")}
    for r in m["membership"]:
        assert r["converged"], r
        assert r["rounds"] <= 3 * math.log2(n) + 5, r
        assert r["real_views"] == "copied"  # 200 full views fit: the real class ran on views built by merge
        assert r["same_as_real"], r  # same agents knowing after every round
        assert r["knowing_per_round"][-1] == n + (r["event"] == "join") - (r["event"] == "dead")
    assert m["full_views_fit"] is True
    assert 100 < m["bytes_per_entry"] < 5000  # a Member copy and its dict slot
    assert m["shared_bytes_per_entry"] < m["bytes_per_entry"] / 5


def test_the_shared_bootstrap_views_play_the_same_rounds_as_copied_ones() -> None:
    for event in ("join", "dead"):
        runs = [gossip_event(swarm, event, seed=3, fanout=16, max_rounds=60)
                for swarm in (RealSwarm(150, 3, share=False), RealSwarm(150, 3, share=True), CompactSwarm(150, 3))]
        assert runs[0]["knowing_per_round"] == runs[1]["knowing_per_round"] == runs[2]["knowing_per_round"]


def test_the_virtual_clock_jumps_to_the_next_timer() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        t0, m0 = loop.time(), time.monotonic()
        await asyncio.sleep(3600)
        async with asyncio.timeout(5):
            await asyncio.sleep(1)
        return loop.time() - t0, time.monotonic() - m0

    real, began = time.monotonic, time.perf_counter()
    assert run_clocked(main, "virtual") == (3601.0, 3601.0)
    assert time.perf_counter() - began < 5
    assert time.monotonic is real  # patched for the run only


def test_agent_nodes_under_churn_lose_no_query_and_agree_on_membership() -> None:
    p = ChurnParams(nodes=30, churn_s=6.0, churn_every=0.5, in_flight=40, settle_s=60.0)
    c = churn_part(p)
    assert c["clock"] == "virtual"
    assert c["events"] == 12 and c["joins"] + c["leaves"] + c["crashes"] + c["failed_joins"] == 12
    assert c["queries"] > 300 and c["answered"] == c["queries"]
    assert c["lost"] == 0 and c["errors"] == 0
    assert c["duplicates_other"] == 0, c["duplicate_examples"]  # only an answer a crashed agent never sent out is redone
    assert c["agreed"] and c["agreed_view_correct"]
    assert c["converged_s"] < 30
    assert c["simulated_s"] < p.churn_s + 30  # the askers finished with the churn: none waited out a deadline
