"""Self-assessment policies (how an agent decides to answer or reject) and the scenario prompt.

The scenario prompt lives here so that inference and training write it identically.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from swarm.backends.base import Backend, GenerationRequest

SCENARIOS: dict[str, float] = {"performance_first": 0.2, "balance": 0.5, "cost_first": 0.8}
REJECT_PHRASE = "I don't know!"


def scenario_alpha(scenario: str | float | None = None, alpha: float | None = None) -> float:
    """Resolve a scenario name or an alpha into alpha in [0, 1]; default Balance."""
    if alpha is None and isinstance(scenario, (int, float)):
        alpha = float(scenario)
    elif alpha is None and scenario is not None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r} (expected one of: {', '.join(SCENARIOS)}, or alpha=<0..1>)")
        alpha = SCENARIOS[scenario]
    alpha = 0.5 if alpha is None else float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    return alpha


def scenario_instruction(alpha: float, allow_reject: bool = True, reject_phrase: str = REJECT_PHRASE) -> str:
    if not allow_reject:
        return "Answer the question. Give your reasoning, then the final answer as 'The answer is: <answer>'."
    return (
        f"Cost weight alpha = {alpha:.2f} (0 means only accuracy matters, 1 means cost matters most). "
        f"If you are not confident that you can answer correctly, reply exactly '{reject_phrase}' and nothing else. "
        "Otherwise give your reasoning, then the final answer as 'The answer is: <answer>'."
    )


def build_messages(query: str, alpha: float, allow_reject: bool, reject_phrase: str = REJECT_PHRASE) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": scenario_instruction(alpha, allow_reject, reject_phrase)},
        {"role": "user", "content": query},
    ]


@dataclass(frozen=True)
class Response:
    rejected: bool
    text: str
    tokens_in: int
    tokens_out: int
    seconds: float


class Policy(abc.ABC):
    """Decides, with the agent's own backend, whether to answer a query; `must_answer` removes the choice."""

    @abc.abstractmethod
    async def respond(self, query_id: str, text: str, alpha: float, backend: Backend, must_answer: bool) -> Response: ...


class SelfAware(Policy):
    """A model trained to say the reject phrase: its first generated tokens are the decision."""

    def __init__(self, reject_phrase: str = REJECT_PHRASE) -> None:
        self.reject_phrase = reject_phrase
        self._key = _fold(reject_phrase)

    def is_rejection(self, text: str) -> bool:
        return _fold(text).startswith(self._key)

    async def respond(self, query_id: str, text: str, alpha: float, backend: Backend, must_answer: bool) -> Response:
        allow = not must_answer
        gen = await backend.generate(
            GenerationRequest(query_id, text, alpha, allow, build_messages(text, alpha, allow, self.reject_phrase), self.reject_phrase)
        )
        rejected = allow and self.is_rejection(gen.text)
        return Response(rejected, gen.text, gen.tokens_in, gen.tokens_out, gen.seconds)


class AlwaysAnswer(SelfAware):
    """The terminal agent: never rejects."""

    async def respond(self, query_id: str, text: str, alpha: float, backend: Backend, must_answer: bool) -> Response:
        return await super().respond(query_id, text, alpha, backend, must_answer=True)


def _fold(text: str) -> str:
    return text.strip().replace("\u2019", "'").casefold()


def build_policy(spec) -> Policy:
    if spec.kind == "self_aware":
        return SelfAware(spec.reject_phrase)
    if spec.kind == "always_answer":
        return AlwaysAnswer(spec.reject_phrase)
    raise ValueError(f"unknown policy kind {spec.kind!r}")
