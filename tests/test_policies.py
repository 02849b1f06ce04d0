"""Policies' decisions on crafted outputs and log-probabilities (no model needed)."""

from __future__ import annotations

import asyncio
import math

import pytest

from swarm.backends.base import Backend, Generation, GenerationRequest
from swarm.build import build_parts
from swarm.errors import BackendError
from swarm.policies import AlwaysAnswer, Ask, Confidence, SelfAware, Verbalized, build_policy, reject_log_odds
from swarm.prompts import REJECT_PHRASE, SCENARIOS, build_messages, render_plain, scenario_alpha, says_yes
from swarm.specs import ConfidencePolicySpec, SelfAwarePolicySpec, VerbalizedPolicySpec
from swarm.testing import ScriptedBackend
from swarm.topology import parse_topology


class Recorder(Backend):
    """Replies from a list, records every request; optionally scores the reject phrase's first token."""

    def __init__(self, replies: list[str], logprobs: tuple[float, ...] = (), reject_logp: float | None = None) -> None:
        self.replies, self.logprobs, self.requests = list(replies), logprobs, []
        self.reject_logp = reject_logp
        self.scores_first_token = reject_logp is not None

    async def generate(self, request: GenerationRequest) -> Generation:
        self.requests.append(request)
        text = self.replies.pop(0)
        return Generation(text, 10, len(text.split()), 0.5, self.logprobs if request.logprobs else ())

    async def reject_logprob(self, request: GenerationRequest) -> tuple[float, int]:
        self.requests.append(request)
        return self.reject_logp, 10


def respond(policy, backend, alpha=0.5, must=False, text="q"):
    return asyncio.run(policy.respond(Ask("id", text, alpha, must), backend))


@pytest.mark.parametrize("reply, rejected", [
    ("I don't know!", True), ("  i DON'T know! because", True), ("I don\u2019t know!", True),
    ("I don't think so. The answer is: 3", False), ("The answer is: 42", False), ("", True), (" \n", True),  # empty: never an answer
])
def test_self_aware_reads_the_first_words(reply, rejected):
    backend = Recorder([reply])
    r = respond(SelfAware(), backend)
    assert r.rejected is rejected and r.text == reply
    req = backend.requests[0]
    assert req.allow_reject and req.stop_at_reject and req.reject_phrase == REJECT_PHRASE
    assert req.messages == build_messages("q", 0.5, True)  # the shared prompt, scenario included
    assert "alpha = 0.50" in req.messages[0]["content"] and REJECT_PHRASE in req.messages[0]["content"]


def test_must_answer_removes_the_choice():
    backend = Recorder(["I don't know!"])
    r = respond(SelfAware(), backend, must=True)
    assert not r.rejected and not backend.requests[0].allow_reject
    assert REJECT_PHRASE not in backend.requests[0].messages[0]["content"]
    assert not respond(AlwaysAnswer(), Recorder(["I don't know!"])).rejected


@pytest.mark.parametrize("p_reject, margin, rejected, generated", [(0.9, 0.0, True, False), (0.3, 0.0, False, True), (0.6, 1.0, False, True)])
def test_self_aware_logprob_decision_costs_one_step(p_reject, margin, rejected, generated):
    backend = Recorder(["The answer is: 7"], reject_logp=math.log(p_reject))
    r = respond(SelfAware(decide="logprobs", margin=margin), backend)
    assert r.rejected is rejected
    assert (len(backend.requests) == 2) is generated  # a rejection never generates a full answer
    if rejected:
        assert r.text == REJECT_PHRASE and r.tokens_out == 1


def test_logprob_decision_needs_a_backend_that_scores():
    with pytest.raises(BackendError, match="decide: logprobs"):
        SelfAware(decide="logprobs").check(ScriptedBackend())
    SelfAware(decide="logprobs").check(Recorder([], reject_logp=-1.0))


def test_reject_log_odds_is_stable_at_the_ends():
    assert reject_log_odds(math.log(0.5)) == pytest.approx(0.0, abs=1e-9)
    assert reject_log_odds(math.log(0.9)) == pytest.approx(math.log(9))
    assert math.isfinite(reject_log_odds(0.0)) and reject_log_odds(0.0) > 20
    assert reject_log_odds(-50.0) == pytest.approx(-50.0, abs=1e-6)


def test_confidence_thresholds_follow_the_scenario():
    policy = Confidence()
    assert policy.threshold(SCENARIOS["performance_first"]) == pytest.approx(0.894)
    assert policy.threshold(0.35) == pytest.approx((0.894 + 0.707) / 2)
    assert policy.threshold(0.0) == pytest.approx(0.894) and policy.threshold(1.0) == pytest.approx(0.447)
    sure = (math.log(0.8),) * 4  # confidence 0.8
    assert respond(policy, Recorder(["The answer is: 1"], sure), alpha=0.2).rejected  # 0.8 < 0.894
    assert not respond(policy, Recorder(["The answer is: 1"], sure), alpha=0.5).rejected  # 0.8 >= 0.707
    assert not respond(policy, Recorder(["The answer is: 1"], sure), alpha=0.2, must=True).rejected


def test_confidence_signals_differ():
    logprobs = (math.log(0.99), math.log(0.1))
    first, mean = Confidence("first_token"), Confidence("mean_logprob")
    assert first.confidence(logprobs) == pytest.approx(0.99)
    assert mean.confidence(logprobs) == pytest.approx(math.sqrt(0.99 * 0.1))
    # a long worked answer whose one weak step the mean hides and the minimum finds
    worked = (math.log(0.999),) * 30 + (math.log(0.3),)
    assert mean.confidence(worked) > 0.95 and Confidence("min_token").confidence(worked) == pytest.approx(0.3)
    backend = Recorder(["x", "x"], logprobs)
    assert not respond(first, backend, alpha=0.5).rejected and respond(mean, backend, alpha=0.5).rejected
    assert backend.requests[0].logprobs and not backend.requests[0].allow_reject


def test_confidence_without_logprobs_is_a_backend_error():
    with pytest.raises(BackendError, match="needs token log-probabilities"):
        respond(Confidence(), Recorder(["x"], ()))


@pytest.mark.parametrize("check, rejected, calls", [("Yes.", False, 2), ("yes, I can", False, 2), ("No", True, 1), ("Maybe", True, 1)])
def test_verbalized_asks_first(check, rejected, calls):
    backend = Recorder([check, "The answer is: 5"])
    r = respond(Verbalized(), backend)
    assert r.rejected is rejected and len(backend.requests) == calls
    assert "yes" in backend.requests[0].messages[0]["content"] and backend.requests[0].max_tokens == 3
    if not rejected:
        assert r.text == "The answer is: 5" and r.tokens_in == 20  # both calls are paid for
    assert not respond(Verbalized(), Recorder(["The answer is: 5"]), must=True).rejected


def test_build_policy_from_specs_and_topology_check(tmp_path):
    assert isinstance(build_policy(ConfidencePolicySpec(kind="confidence")), Confidence)
    assert isinstance(build_policy(VerbalizedPolicySpec(kind="verbalized")), Verbalized)
    assert build_policy(SelfAwarePolicySpec(decide="logprobs", margin=0.5)).margin == 0.5
    (tmp_path / "t.jsonl").write_text('{"query": "q", "agents": {}}\n')
    topo = parse_topology(
        "name: t\nagents:\n  - {name: a, cost: 0.1, backend: {kind: replay, table: t.jsonl}, policy: {kind: self_aware, decide: logprobs}}\n",
        base_dir=tmp_path,
    )
    with pytest.raises(BackendError, match="ReplayBackend does not"):
        build_parts(topo.agents[0], topo)


def test_prompt_helpers():
    assert scenario_alpha("cost_first") == 0.8 and scenario_alpha(alpha=0.3) == 0.3 and scenario_alpha() == 0.5
    with pytest.raises(ValueError, match="unknown scenario"):
        scenario_alpha("cheap")
    with pytest.raises(ValueError, match="alpha must lie in"):
        scenario_alpha(alpha=1.5)
    assert says_yes("Yes") and says_yes(" yes!") and not says_yes("no") and not says_yes("yesterday")
    plain = render_plain(build_messages("What?", 0.5, True))
    assert plain.startswith("System: Cost weight") and plain.endswith("User: What?\n\nAssistant:")


@pytest.mark.parametrize("policy", [SelfAware(), Confidence(), Verbalized()], ids=["self_aware", "confidence", "verbalized"])
def test_an_empty_reply_is_never_an_answer_and_is_flagged_when_it_must_be_given(policy):
    r = respond(policy, Recorder(["yes", ""] if isinstance(policy, Verbalized) else [""], logprobs=(-0.01,)))
    assert r.rejected and r.flag == ""
    forced = respond(policy, Recorder([""], logprobs=(-0.01,)), must=True)
    assert not forced.rejected and forced.text == "" and forced.flag == "empty reply"
