"""The Backend seam: one async method that turns a request into text, plus start and close."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GenerationRequest:
    query_id: str
    query: str  # the user's text, unchanged
    alpha: float  # the scenario's cost weight
    allow_reject: bool  # False when the agent must answer (terminal agent, nobody left)
    messages: list[dict[str, str]] = field(default_factory=list)  # the chat prompt the policy built
    reject_phrase: str = "I don't know!"  # a backend may stop generating as soon as it sees this
    max_tokens: int = 256


@dataclass(frozen=True)
class Generation:
    text: str
    tokens_in: int
    tokens_out: int
    seconds: float


class Backend(abc.ABC):
    """Produces text for an agent. `start` loads and warms the model; the agent announces itself
    to the swarm only after it returns."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load and warm up. Default: nothing to load."""

    @abc.abstractmethod
    async def generate(self, request: GenerationRequest) -> Generation: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model. Default: nothing to release."""
