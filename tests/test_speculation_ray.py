"""Speculative forwarding on a real local Ray swarm of real models: the testbed's tb-xs (probe policy)
in front of tb-l, launched twice, with and without speculation. With a band of 1 tb-xs passes every
query it generates for on to tb-l at once; each result is still the one routing without speculation
returns, and each copy it does not keep is cancelled at tb-l unless tb-l already finished it (a running
copy's backend then stops generating:
the transformers backend's own test, test_a_cancelled_streaming_row_generates_no_more_than_a_token_after_the_cancel,
shows a cancelled row generates at most one token after the cancel)."""

from __future__ import annotations

import time

import pytest

import swarm
from swarm.eval.data import held_out_items
from swarm.topology import parse_topology

pytestmark = pytest.mark.ray

AGENTS = """\
agents:
  - name: tb-xs
    cost: 0.1
    backend: {{kind: transformers, model: "testbed:quick/tb-xs", max_new_tokens: 48, threads: 1}}
    policy: {{kind: probe, path: "testbed:quick/tb-xs", require_template: true, speculate: {band}}}
  - name: tb-l
    cost: 0.9
    backend: {{kind: transformers, model: "testbed:quick/tb-l", max_new_tokens: 48, threads: 1}}
    policy: {{kind: probe, path: "testbed:quick/tb-l", require_template: true}}
"""


def topology(name: str, band: float):
    return parse_topology(f"name: {name}\ndefaults: {{deadline_s: 120, drain_timeout_s: 5}}\n" + AGENTS.format(band=band))


def test_speculation_keeps_every_result_and_cancels_the_copies_it_does_not_keep(ray_cluster, quick_ladder):
    queries = [item.prompt for item in held_out_items(1)[::2]]  # 8 in-domain queries, every family and difficulty
    results = {}
    for band in (0.0, 1.0):
        s = swarm.launch(topology(f"speculation-{int(band)}", band), agent_output=False)
        try:
            results[band] = [s.ask(q, alpha=0.5) for q in queries]
            time.sleep(1.0)  # the last Cancel lands
            results[f"status-{band}"] = s.statuses()
        finally:
            s.shutdown()

    def routed(a):
        return a.agent, a.text, [(h.agent, h.decision) for h in a.trace if "speculative copy" not in h.detail]

    assert [routed(a) for a in results[1.0]] == [routed(a) for a in results[0.0]]
    kept = [a for a in results[1.0] if a.agent == "tb-xs"]
    used = [a for a in results[1.0] if a.trace[0].detail.startswith("speculated:")]
    wasted = [h for a in kept for h in a.trace if "speculative copy" in h.detail]
    assert kept and len(wasted) == len(kept)  # tb-xs generated for (and kept) these: each one's copy was cancelled
    assert all(h.agent == "tb-l" and h.decision == "refused" and h.seconds > 0 for h in wasted)
    # Each copy not kept was cancelled at tb-l, or tb-l had already answered it (wasted work, and no more):
    # tb-l answered what it answers without speculation plus the copies it finished before their Cancel came.
    on, off = results["status-1.0"]["tb-l"], results["status-0.0"]["tb-l"]
    assert off.cancelled == 0 and on.cancelled <= len(kept) and on.answered == off.answered + len(kept) - on.cancelled
    assert used and all(a.agent == "tb-l" for a in used)  # a copy used: tb-xs generated, then rejected its reply
