"""Self-assessment policies: how an agent decides, with its own backend, to answer or reject.

- self_aware: a model trained to say the reject phrase; its first tokens are the decision
  (or, with decide=logprobs, one decoding step scores the reject phrase's first token).
- confidence: the untrained cascade baseline; answer when the model's token probabilities
  clear a per-scenario threshold.
- verbalized: ask the model whether it can answer, then answer (for untrainable remote models).
- always_answer: the terminal agent.

Streaming: `Ask.on_text` wants the answer's text as it is generated. A policy hands it to the
backend only for a generation whose text is final once generated (the agent must answer; the
verbalized check said yes; a self-aware reply past the point where it could still be the reject
phrase; a probe's decision on the prefill when nothing judges the reply after it: confirm none,
unfamiliar not token_confidence, no required template), so a client never sees a piece of a reply
the agent then rejects. Policies that judge a reply after generating it (confidence, probe with
confirm) stream only when the agent must answer; otherwise their answer reaches the client in one
piece at the end.

Speculation (`swarm.speculation`): a policy that holds a calibrated P before it generates (self_aware
with decide: logprobs, probe) and whose `speculate` band is set calls `Ask.on_uncertain` when it is
about to generate although P does not clear its answer rule's bar by the band: the agent may then
pass the query on while it generates, and keep whichever result its decision picks.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from swarm.backends.base import Backend, Generation, GenerationRequest
from swarm.errors import BackendError, SwarmError
from swarm.prompts import (
    ANSWER_RE,
    REJECT_PHRASE,
    SCENARIOS,
    build_messages,
    default_thresholds,
    fold,
    is_rejection,
    reject_reward,
    says_yes,
    self_check_messages,
)


@dataclass(frozen=True)
class Response:
    rejected: bool
    text: str
    tokens_in: int
    tokens_out: int
    seconds: float
    flag: str = ""  # why an answer the agent had to give is not a real one (e.g. "empty reply"); shown in its trace hop


@dataclass(frozen=True)
class Ask:
    """What a policy is asked: one query at this agent; `must_answer` removes the choice to reject."""

    query_id: str
    text: str
    alpha: float
    must_answer: bool = False
    cost: float = 0.0  # this agent's
    pass_curve: tuple[float, ...] | None = None  # the value curve of the agent a rejected query goes to (None: unknown)
    on_text: Callable[[str], None] | None = None  # streaming: each new piece of a final answer (see the module's note)
    on_uncertain: Callable[[], None] | None = None  # speculation: P is in the uncertain band (any thread; see the module's note)
    on_committed: Callable[[], None] | None = None  # the prefill decided to answer and nothing judges the reply: the decision is over (any thread)
    quick: bool = False  # no time to judge a reply: a policy that can (probe) decides on its prefill alone

    def generation(self, allow_reject: bool, reject_phrase: str = REJECT_PHRASE, messages: list[dict[str, str]] | None = None,
                   **options: Any) -> GenerationRequest:
        """The request to the backend: the scenario prompt (`build_messages`) unless `messages` are given."""
        if messages is None:
            messages = build_messages(self.text, self.alpha, allow_reject, reject_phrase)
        return GenerationRequest(self.query_id, self.text, self.alpha, allow_reject, messages, reject_phrase, **options)


class Policy(abc.ABC):
    """Decides, with the agent's own backend, whether to answer a query."""

    def check(self, backend: Backend) -> None:  # noqa: B027 - optional hook
        """Raise BackendError at launch when this policy cannot work with `backend`."""

    def curve(self, cost: float, successor: tuple[float, ...] | None) -> tuple[float, ...] | None:
        """The value curve this agent advertises (`swarm.assess.curves`), given the next agent's
        (None: nobody after it); None when the policy cannot value its decisions (no validation data)."""
        return None

    def region_curves_under(self, cost: float, successor: list[list[float]] | None, regions) -> list[tuple[float, ...]] | None:
        """The value curve this agent advertises in each region of the map `regions` (a
        `swarm.assess.regions.RegionMap`), given the next agent's per region (None: nobody after it);
        None when the policy cannot value its decisions per region of that map."""
        return None

    @abc.abstractmethod
    async def respond(self, ask: Ask, backend: Backend) -> Response: ...


def _response(rejected: bool, *gens: Generation, must_answer: bool = False, require_template: bool = False) -> Response:
    """The policy's verdict over its backend calls. A reply that is not a usable answer (`usable`)
    is never an answer: it is a rejection, or, when the agent must answer, an answer flagged as such."""
    last = gens[-1]
    flag = "" if usable(last.text, require_template) else ("empty reply" if not last.text.strip() else "no answer template")
    if flag and not must_answer:
        rejected = True
    return Response(rejected, last.text, sum(g.tokens_in for g in gens), sum(g.tokens_out for g in gens), sum(g.seconds for g in gens),
                    flag if must_answer else "")


class SelfAware(Policy):
    def __init__(self, reject_phrase: str = REJECT_PHRASE, decide: str = "generate", margin: float = 0.0, speculate: float = 0.0) -> None:
        self.reject_phrase, self.decide, self.margin, self.speculate = reject_phrase, decide, margin, speculate

    def check(self, backend: Backend) -> None:
        if self.decide == "logprobs" and not backend.scores_first_token:
            raise BackendError(f"policy self_aware with decide: logprobs needs a backend that scores first tokens; {type(backend).__name__} does not")

    def is_rejection(self, text: str) -> bool:
        return is_rejection(text, self.reject_phrase)

    async def respond(self, ask: Ask, backend: Backend) -> Response:
        allow = not ask.must_answer
        streamed = ask.on_text if not allow or ask.on_text is None else _past_rejection(ask.on_text, self.reject_phrase)
        request = ask.generation(allow, self.reject_phrase, on_text=streamed)
        if allow and self.decide == "logprobs":
            logp, tokens_in = await backend.reject_logprob(request)
            if reject_log_odds(logp) > self.margin:
                return Response(True, self.reject_phrase, tokens_in, 1, 0.0)
            # P(an answer starts) = 1 - P(reject start); the rule's bar on it is 1 - sigmoid(margin)
            if ask.on_uncertain is not None and in_band(-math.expm1(logp), 1 - 1 / (1 + math.exp(-self.margin)), self.speculate):
                ask.on_uncertain()
        gen = await backend.generate(request)
        return _response(allow and self.is_rejection(gen.text), gen, must_answer=not allow)


class AlwaysAnswer(SelfAware):
    async def respond(self, ask: Ask, backend: Backend) -> Response:
        return await super().respond(replace(ask, must_answer=True), backend)


class Confidence(Policy):
    def __init__(self, signal: str = "mean_logprob", thresholds: dict[str, float] | None = None) -> None:
        self.signal = signal
        self.thresholds = thresholds or default_thresholds()

    def threshold(self, alpha: float) -> float:
        """Piecewise-linear in alpha through the named scenarios' thresholds, flat beyond them."""
        points = sorted((SCENARIOS[name], value) for name, value in self.thresholds.items())
        if alpha <= points[0][0]:
            return points[0][1]
        for (a0, t0), (a1, t1) in zip(points, points[1:]):
            if alpha <= a1:
                return t0 + (t1 - t0) * (alpha - a0) / (a1 - a0)
        return points[-1][1]

    def confidence(self, logprobs: tuple[float, ...]) -> float:
        if not logprobs:
            return 0.0
        if self.signal == "first_token":
            return math.exp(logprobs[0])
        if self.signal == "min_token":
            return math.exp(min(logprobs))
        return math.exp(sum(logprobs) / len(logprobs))

    async def respond(self, ask: Ask, backend: Backend) -> Response:
        gen = await backend.generate(ask.generation(False, logprobs=True, on_text=ask.on_text if ask.must_answer else None))
        if not ask.must_answer and not gen.token_logprobs:
            raise BackendError(f"policy confidence needs token log-probabilities, and {type(backend).__name__} returned none")
        return _response(not ask.must_answer and self.confidence(gen.token_logprobs) < self.threshold(ask.alpha), gen,
                         must_answer=ask.must_answer)


class Verbalized(Policy):
    def __init__(self, reject_phrase: str = REJECT_PHRASE) -> None:
        self.reject_phrase = reject_phrase

    async def respond(self, ask: Ask, backend: Backend) -> Response:
        gens = []
        if not ask.must_answer:
            check = await backend.generate(ask.generation(False, messages=self_check_messages(ask.text), max_tokens=3))
            gens.append(check)
            if not says_yes(check.text):
                return Response(True, self.reject_phrase, check.tokens_in, check.tokens_out, check.seconds)
        gens.append(await backend.generate(ask.generation(False, on_text=ask.on_text)))
        return _response(False, *gens, must_answer=ask.must_answer)


class ProbePolicy(Policy):
    """P(I know) from a probe on the prompt's hidden states (`swarm.assess`), in two stages:

    1. one prefill: the probe's P. When even the most confident reply could not make answering
       worth more than passing on, the agent passes on here, having generated no token.
    2. (confirm: token_confidence) otherwise it answers, continuing from that prefill, and fuses
       P with its reply's least likely token: a reply it turns out unsure of is passed on after all.

    With bar "curve" answering must beat P - alpha * cost >= the next agent's advertised value;
    when nothing it ever scored on its validation data could, it passes on without a prefill."""

    def __init__(self, path: str, bar: str = "curve", unfamiliar: str = "token_confidence", require_template: bool = False,
                 confirm: str = "token_confidence", speculate: float = 0.0) -> None:
        from swarm.assess.probe import Probe

        try:
            if path.startswith("testbed:"):  # fitted into the cache by `swarm.launch` before any agent starts
                from swarm.testbed.models import testbed_probe_path

                self.probe = Probe.load(testbed_probe_path(path))
            else:
                self.probe = Probe.load(path)
        except SwarmError as exc:
            raise BackendError(str(exc), fatal=True) from None
        self._configure(path, bar, unfamiliar, require_template, confirm)
        self.speculate = speculate

    @classmethod
    def from_probe(cls, probe, bar: str = "curve", unfamiliar: str = "prior", confirm: str = "none") -> ProbePolicy:
        """The policy over a probe already in memory (a replayed agent's, `swarm.eval.outcomes.selfassess`)."""
        self = cls.__new__(cls)
        self.probe = probe
        self._configure("", bar, unfamiliar, False, confirm)
        self.speculate = 0.0
        return self

    def _configure(self, path: str, bar: str, unfamiliar: str, require_template: bool, confirm: str) -> None:
        self.probe_path, self.bar, self.unfamiliar, self.require_template = path, bar, unfamiliar, require_template
        self.confirm = confirm == "token_confidence"
        if (self.confirm or unfamiliar == "token_confidence") and (not self.probe.meta.fusion or self.probe.val_min_logprob is None):
            raise BackendError(f"probe in {path!r} has no token-confidence fusion: fit it again with `swarm probe`, or set "
                               "confirm: none", fatal=True)
        val = self.val_p()
        self.p_max = float(val.max()) if len(val) else 1.0
        self.accuracy = self.probe.accuracy

    @property
    def decides_quicker(self) -> bool:
        """Whether `Ask.quick` changes anything: it judges replies, and can decide on the prefill alone instead
        (on P, an unfamiliar query on its prior), as a probe with confirm none and unfamiliar prior does."""
        return self.confirm or self.unfamiliar == "token_confidence"

    def _confirms(self, quick: bool) -> bool:
        return self.confirm and not quick

    def _on_reply_confidence(self, quick: bool) -> bool:
        """An unfamiliar query is decided on the reply's token confidence (not when quick: then on the prior)."""
        return self.unfamiliar == "token_confidence" and not quick

    def _prefill_decides(self, quick: bool) -> bool:
        """Whether the prefill's decision is final: nothing judges the reply once it is generated (when quick,
        not even its template: there is no time to pass the query on after generating)."""
        return not self._confirms(quick) and not self._on_reply_confidence(quick) and (quick or not self.require_template)

    def val_p(self):
        """The P the agent decides on, on its validation data."""
        return self.probe.val_fused if self.confirm else self.probe.val_p

    def check(self, backend: Backend) -> None:
        if not backend.reads_states:
            raise BackendError(f"policy probe needs a backend that exposes hidden states; {type(backend).__name__} does not "
                               "(use policy confidence or self_aware with it)")

    def curve(self, cost: float, successor: tuple[float, ...] | None) -> tuple[float, ...] | None:
        from swarm.assess.curves import value_curve

        return tuple(value_curve(self.val_p(), self.probe.val_correct, cost, list(successor) if successor else None))

    def region_curves(self, cost: float, successor: list[list[float]] | None, regions, k: int) -> list[tuple[float, ...]]:
        """The value curve per region (`swarm.assess.curves.region_curves`), given the region of each
        of this agent's validation queries."""
        from swarm.assess.curves import region_curves

        return [tuple(c) for c in region_curves(self.val_p(), self.probe.val_correct, cost, successor, regions, k)]

    def region_curves_under(self, cost: float, successor: list[list[float]] | None, regions) -> list[tuple[float, ...]] | None:
        """Per region, from the regions of its validation queries the probe recorded under that map (`swarm probe
        --regions`); None when it recorded none under it."""
        if self.probe.val_region is None or self.probe.meta.regions != regions.digest:
            return None
        return self.region_curves(cost, successor, self.probe.val_region, regions.k)

    def answers(self, p_know: float, ask: Ask) -> bool:
        from swarm.assess.curves import answers

        successor = ask.pass_curve if self.bar == "curve" else None
        return answers(p_know, ask.alpha, ask.cost, list(successor) if successor else None, reject_reward(ask.alpha))

    def uncertain(self, p_know: float, familiar: bool, ask: Ask) -> bool:
        """About to generate, is the outcome still open? Yes when P (the probe's, before the reply's
        confidence is known) does not clear the answer rule's bar by `speculate`, or when the probe
        cannot judge the query and the reply's confidence alone will decide."""
        from swarm.assess.curves import answer_bar

        if not familiar:
            return self._on_reply_confidence(ask.quick)
        if not self._confirms(ask.quick):  # the prompt alone decides: nothing is left open once it generates
            return False
        successor = ask.pass_curve if self.bar == "curve" else None
        return in_band(p_know, answer_bar(ask.alpha, ask.cost, list(successor) if successor else None, reject_reward(ask.alpha)),
                       self.speculate)

    def judge(self, ask: Ask, seen: dict) -> Callable[[Any], bool]:
        """Stage 1, on the prefill's states: is answering worth generating?"""
        def decide(states) -> bool:
            try:
                p = float(self.probe.p_know(states[None])[0])
            except SwarmError as exc:  # a probe fitted on another model: it will never fit this one
                raise BackendError(str(exc), fatal=True) from None
            familiar = self.unfamiliar == "trust" or bool(self.probe.familiar(states[None])[0])
            seen.update(p_know=p, familiar=familiar)
            worth = self.worth_generating(p, familiar, ask)
            if worth and ask.on_uncertain is not None and self.speculate > 0 and self.uncertain(p, familiar, ask):
                ask.on_uncertain()
            if worth and ask.on_committed is not None and self._prefill_decides(ask.quick):
                ask.on_committed()
            return worth
        return decide

    def worth_generating(self, p: float, familiar: bool, ask: Ask) -> bool:
        """Stage 1's decision from the probe's P and whether the query is familiar (with confirm
        none, the decision to answer)."""
        if not familiar:  # the probe cannot judge it: pass it on, or decide on the reply's own confidence or on the prior
            if self.unfamiliar == "prior" or (ask.quick and self.unfamiliar == "token_confidence"):
                return self.answers(self.accuracy, ask)
            return self.unfamiliar == "token_confidence" and self.answers(self.probe.best_token_p(), ask)
        return self.answers(float(self.probe.best_fused(p)) if self._confirms(ask.quick) else p, ask)

    async def respond(self, ask: Ask, backend: Backend) -> Response:
        if ask.must_answer:
            gen = await backend.generate(ask.generation(False, on_text=ask.on_text))
            return _response(False, gen, must_answer=True, require_template=self.require_template)
        if not self.answers(self.p_max, ask):  # passing on is worth more than our best case: no prefill at all
            return Response(True, "", 0, 0, 0.0)
        seen: dict = {}
        gen = await backend.assess(ask.generation(False, logprobs=self._confirms(ask.quick) or self._on_reply_confidence(ask.quick),
                                                  on_text=ask.on_text if self._prefill_decides(ask.quick) else None), self.judge(ask, seen))
        if gen.finish_reason == "reject":
            return Response(True, "", gen.tokens_in, 0, gen.seconds)
        if ask.quick:  # decided on the prefill, committed and streamed: a reply out of template is flagged, not passed on
            return _response(False, gen, must_answer=True, require_template=self.require_template)
        if not usable(gen.text, self.require_template):
            return _response(True, gen)
        low = min(gen.token_logprobs) if gen.token_logprobs else -20.0
        if seen["familiar"] and self._confirms(ask.quick):  # stage 2: the reply's own confidence
            p = float(self.probe.fused(seen["p_know"], low))
        elif not seen["familiar"] and self._on_reply_confidence(ask.quick):
            p = float(self.probe.token_p(low))
        else:
            return _response(False, gen, require_template=self.require_template)
        return _response(not self.answers(p, ask), gen, require_template=self.require_template)


def _past_rejection(on_text: Callable[[str], None], reject_phrase: str) -> Callable[[str], None]:
    """`on_text`, held back while the reply so far could still be (or is) the reject phrase."""
    key = fold(reject_phrase).rstrip()
    held: list[str] = []
    released = False

    def gate(piece: str) -> None:
        nonlocal released
        if released:
            on_text(piece)
            return
        held.append(piece)
        so_far = "".join(held)
        if not key.startswith(fold(so_far)) and not is_rejection(so_far, reject_phrase):
            released = True
            on_text(so_far)

    return gate


def in_band(p: float, bar: float, band: float) -> bool:
    """Speculation's uncertain band: the agent generates, yet P does not clear the answer rule's bar by `band` (> 0)."""
    return band > 0 and p < bar + band


def usable(text: str, require_template: bool = False) -> bool:
    """Can a reply stand as an answer? Never when empty; with `require_template`, only in the answer template."""
    if not text.strip():
        return False
    return not require_template or bool(ANSWER_RE.search(text))


def reject_log_odds(logp: float) -> float:
    """log P / (1 - P) for P = exp(logp), numerically safe at both ends."""
    logp = min(logp, -1e-12)
    return logp - math.log(-math.expm1(logp))


# A topology's policy kind -> how its block becomes a policy (the kinds of swarm.specs.POLICY_KINDS).
POLICIES: dict[str, Callable[[Any], Policy]] = {
    "self_aware": lambda spec: SelfAware(spec.reject_phrase, spec.decide, spec.margin, spec.speculate),
    "always_answer": lambda spec: AlwaysAnswer(spec.reject_phrase),
    "confidence": lambda spec: Confidence(spec.signal, dict(spec.thresholds)),
    "verbalized": lambda spec: Verbalized(spec.reject_phrase),
    "probe": lambda spec: ProbePolicy(spec.path, spec.bar, spec.unfamiliar, spec.require_template, spec.confirm, spec.speculate),
}


def build_policy(spec) -> Policy:
    make = POLICIES.get(spec.kind)
    if make is None:
        raise ValueError(f"unknown policy kind {spec.kind!r} (expected one of: {', '.join(POLICIES)})")
    return make(spec)
