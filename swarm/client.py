"""What a client sends into the swarm and what it gets back, shared by every front end."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field

from swarm.errors import QUERY_ERRORS, QueryError, QueryTooLarge
from swarm.protocol import Hop, Query, Result


@dataclass(frozen=True)
class Answer:
    """One answered query: the text, who answered, and the whole path it took."""

    query_id: str
    text: str
    agent: str
    cost: float  # the answering agent's normalised cost
    trace: list[Hop] = field(default_factory=list)
    latency_s: float = 0.0
    entry: str = ""

    @property
    def hops(self) -> int:
        """Forwards between agents: 0 when the entry agent answered."""
        return max(0, len(self.path) - 1)

    @property
    def path(self) -> list[str]:
        """The agents that held the query, in order, each once (unreachable and refusing peers excluded;
        an agent that rejected and was later forced to answer appears once)."""
        return list(dict.fromkeys(h.agent for h in self.trace if h.decision not in ("unreachable", "refused")))

    @property
    def model_seconds(self) -> float:
        """Measured cost: time spent in models by every agent visited, rejections included."""
        return sum(h.seconds for h in self.trace)

    @property
    def tokens(self) -> int:
        return sum(h.tokens_in + h.tokens_out for h in self.trace)


def new_query(text: str, alpha: float, deadline_s: float, max_hops: int, max_chars: int, query_id: str | None = None,
              target_latency_s: float | None = None) -> Query:
    """A query; `deadline_s` is the hard limit (it fails past it), `target_latency_s` a soft one: agents
    choose next hops to meet it where they can (swarm.latency), but never fail a query for it."""
    if not isinstance(text, str):
        raise TypeError(f"a query must be a string, got {type(text).__name__}")
    if len(text) > max_chars:
        raise QueryTooLarge(f"query of {len(text):,} characters exceeds this swarm's limit of {max_chars:,} (defaults.max_query_chars)")
    if not deadline_s > 0 or not math.isfinite(deadline_s):
        raise ValueError(f"deadline_s must be a positive number of seconds, got {deadline_s}")
    if target_latency_s is not None and (not target_latency_s > 0 or not math.isfinite(target_latency_s)):
        raise ValueError(f"target_latency_s must be a positive number of seconds, got {target_latency_s}")
    return Query(query_id=query_id or uuid.uuid4().hex, text=text, alpha=alpha, budget_s=deadline_s, max_hops=max_hops,
                 target_s=target_latency_s)


def to_answer(result: Result, latency_s: float, entry: str) -> Answer:
    """An answer, or the QueryError that the result's code names."""
    if result.ok:
        return Answer(result.query_id, result.text, result.agent, result.cost, result.trace, latency_s, entry)
    cls = QUERY_ERRORS.get(result.error_code, QueryError)
    raise cls(f"query {result.query_id}: {result.error} ({result.error_code})", result.query_id, result.trace)
