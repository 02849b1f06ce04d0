"""The Backend seam: one async method that turns a request into text, plus start and close.

Streaming rides on the same method: a request whose `on_text` is set wants each new piece of the
reply as it is generated. A backend that can (transformers, OpenAI-HTTP, vLLM) calls it as tokens
arrive, from any thread, with text that is always a prefix of the final `Generation.text` grown
piece by piece; one that cannot simply ignores it, and the agent sends the whole text at the end.
A callback, not a second async-iterator method, because the policy still needs the `Generation`
(token counts, log-probabilities, finish reason) that the same call returns.

A backend whose call must clean up when cancelled (close an HTTP response, abort a vLLM request)
awaits that work through `cancel_once`: a query cancelled both by a cancel message and by Ray
cancelling the call that carried it gets two cancels, and the second would cut the first's cleanup
short (an endpoint left generating for a client long gone).
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from swarm.errors import BackendError
from swarm.prompts import REJECT_PHRASE


T = TypeVar("T")
_CLEANING_UP: set[asyncio.Task] = set()  # cancelled work still cleaning up (a reference until it is done)


async def cancel_once(work: Coroutine[Any, Any, T]) -> T:
    """Await `work` in a task of its own that the caller's cancellation cancels exactly once, however
    many cancels reach the caller, so its cleanup runs to the end (in the background: the caller does
    not wait for it)."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            task.cancel()
            _CLEANING_UP.add(task)
            task.add_done_callback(_cleaned_up)
        elif not task.cancelled():
            task.exception()  # it ended as we were cancelled: retrieved, so asyncio does not report it as lost
        raise


def _cleaned_up(task: asyncio.Task) -> None:
    _CLEANING_UP.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: nobody waits for it any more


@dataclass(frozen=True)
class GenerationRequest:
    query_id: str
    query: str  # the user's text, unchanged
    alpha: float  # the scenario's cost weight
    allow_reject: bool  # False when the agent must answer (terminal agent, nobody left)
    messages: list[dict[str, str]] = field(default_factory=list)  # the chat prompt the policy built
    reject_phrase: str = REJECT_PHRASE
    max_tokens: int | None = None  # None: the backend's own max_new_tokens
    stop_at_reject: bool = True  # stop generating as soon as the reply starts with reject_phrase
    logprobs: bool = False  # fill Generation.token_logprobs
    # Streaming: called with each new piece of the reply as it is generated (see the module's note); None: nobody listens.
    on_text: Callable[[str], None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Generation:
    text: str
    tokens_in: int
    tokens_out: int
    seconds: float  # model time charged to this request: its share of a batch (transformers), else its wall time
    token_logprobs: tuple[float, ...] = ()  # log P of each generated token, when asked for
    finish_reason: str = "stop"  # stop | length | reject (stopped at the reject phrase)


class Backend(abc.ABC):
    """Produces text for an agent. `start` loads and warms the model; the agent announces itself
    to the swarm only after it returns. Failures raise `swarm.errors.BackendError`."""

    #: True when `reject_logprob` is available (one decoding step, no full generation).
    scores_first_token: bool = False
    #: True when `assess` is available (a probe reads the prompt's hidden states).
    reads_states: bool = False

    @classmethod
    def from_spec(cls, spec: Any, agent_name: str, gamma: float) -> Backend:
        """The backend a topology's backend block describes (`swarm.backends.BACKENDS` names the class)."""
        return cls(spec, agent_name)

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load and warm up. Default: nothing to load."""

    @abc.abstractmethod
    async def generate(self, request: GenerationRequest) -> Generation: ...

    async def reject_logprob(self, request: GenerationRequest) -> tuple[float, int]:
        """log P(the first token of the reject phrase) at the first decoding step, and the prompt's
        token count. Only backends with `scores_first_token` implement it."""
        raise BackendError(f"{type(self).__name__} cannot score first tokens; use the policy's decide: generate")

    async def assess(self, request: GenerationRequest, judge: Callable[[Any], bool]) -> Generation:
        """One prefill of the request's prompt whose hidden states (`swarm.backends.hf_states`: an array
        [layers + 1, 2 * hidden]) `judge` turns into the decision: True, and generation continues from
        that prefill (no second one) and the answer is returned; False, and no token is generated
        (tokens_out 0, finish_reason "reject"). Only backends with `reads_states` implement it."""
        raise BackendError(f"{type(self).__name__} cannot expose hidden states to a probe; use another policy (confidence, "
                           "or self_aware)")

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model. Default: nothing to release."""
