"""What the dashboard shows, built from polls of every agent's Status (protocol 1.3).

Every time here is the dashboard's own clock: when it saw a state change, a membership event or a
query. Agents' clocks are not synchronised, so nothing is ordered across hosts by them; an agent's
`age_s` (a duration on its own clock) only orders what that one agent reports.

- agents: the newest entry for each name across all agents' views (SWIM's rule: a higher
  incarnation, else the worse state), with each agent's own load and latency;
- edges: forwards per (from, to) that got a reply, counted over the last minute as the difference
  of the cumulative counts polled a minute apart;
- timeline: membership changes the agents saw, each reported once, when first seen here;
- queries: the last queries with their path and every agent's decision, from their entry agents.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from swarm.membership import supersedes
from swarm.protocol import Member, Status

WINDOW_S = 60.0
TIMELINE = 100
QUERIES = 12


@dataclass
class _Edge:
    samples: deque[tuple[float, int]]  # (when polled, cumulative count); the first one is the window's baseline

    def add(self, now: float, count: int) -> None:
        if count < self.samples[-1][1]:  # a new agent under an old name: its count starts again
            self.samples.clear()
            self.samples.append((now, 0))
        self.samples.append((now, count))
        while len(self.samples) > 2 and self.samples[1][0] <= now - WINDOW_S:
            self.samples.popleft()

    @property
    def last_minute(self) -> int:
        return self.samples[-1][1] - self.samples[0][1]


class SwarmView:
    def __init__(self, swarm_name: str) -> None:
        self.swarm = swarm_name
        self.polls = 0
        self.polled_at = 0.0
        self.members: dict[str, Member] = {}
        self.since: dict[str, float] = {}  # name -> when the dashboard saw its state change
        self.own: dict[str, Status] = {}  # the last Status each agent gave of itself
        self.reporting: set[str] = set()  # the agents that answered the last poll
        self.backends: dict[str, tuple[str, str]] = {}  # name -> (backend kind, model)
        self.edges: dict[tuple[str, str], _Edge] = {}
        self.timeline: deque[dict[str, Any]] = deque(maxlen=TIMELINE)
        self.queries: deque[dict[str, Any]] = deque(maxlen=QUERIES)
        self._reported: set[tuple[str, str, int]] = set()  # (name, state, incarnation) already on the timeline
        self._queries_seen: deque[str] = deque(maxlen=1000)

    def observe(self, statuses: dict[str, Status | None], backends: dict[str, tuple[str, str]], now: float) -> None:
        """One poll: every agent's Status (None where it did not answer), taken at `now`."""
        first = self.polls == 0
        before = dict(self.members)
        answered = {name: s for name, s in statuses.items() if s is not None}
        self.reporting = set(answered)
        for s in answered.values():
            for m in s.members:
                if m.name not in self.members or supersedes(m, self.members[m.name]):
                    self.members[m.name] = m
            self.own[s.name] = s
        for name, m in self.members.items():
            if not first and (name not in before or before[name].state != m.state):
                self.since[name] = now
        self.backends.update(backends)
        for s in answered.values():
            self._events(s, before, now, first)
            self._edges(s, now, first)
            self._queries(s, now)
        if first:
            live = sum(m.state in ("alive", "suspect") for m in self.members.values())
            self.timeline.append({"t": now, "kind": "watching", "agent": "", "by": "", "text": f"dashboard started: {live} live agents"})
        self.polls += 1
        self.polled_at = now

    def _events(self, s: Status, before: dict[str, Member], now: float, first: bool) -> None:
        for c in s.changes:  # oldest first, by this agent's clock
            key = (c.name, c.state, c.incarnation)
            if key in self._reported:
                continue
            self._reported.add(key)
            known = before.get(c.name)
            refuted = c.state == "alive" and c.previous in ("suspect", "dead")
            if first or (known is not None and known.state == c.state and not refuted):
                continue  # older than the dashboard, or old news to it (a newcomer learning of the others)
            kind = {"left": "left", "dead": "death detected", "suspect": "suspected"}.get(c.state, "suspicion refuted" if refuted else "joined")
            self.timeline.append({"t": now, "kind": kind, "agent": c.name, "by": s.name, "incarnation": c.incarnation,
                                  "text": f"{c.name} {kind}" + ("" if c.name == s.name else f" (reported by {s.name})")})

    def _edges(self, s: Status, now: float, first: bool) -> None:
        for pc in s.forwards_to:
            edge = self.edges.get((s.name, pc.peer))
            if edge is None:  # counts before the dashboard's first poll are not the last minute's; a new edge's are
                edge = self.edges[(s.name, pc.peer)] = _Edge(deque([(now, pc.count if first else 0)]))
            edge.add(now, pc.count)

    def _queries(self, s: Status, now: float) -> None:
        for r in s.recent:  # oldest first
            if r.query_id in self._queries_seen:
                continue
            self._queries_seen.append(r.query_id)
            self.queries.append({
                "t": now, "id": r.query_id, "entry": s.name, "ok": r.ok, "agent": r.agent, "error": r.error_code,
                "seconds": round(r.seconds, 4), "trace": [{"agent": h.agent, "decision": h.decision, "seconds": round(h.seconds, 4)} for h in r.trace],
            })

    def snapshot(self) -> dict[str, Any]:
        """The whole view as JSON-ready data; agents cheapest first (a cascade's order)."""
        agents = []
        for m in sorted(self.members.values(), key=lambda m: (m.cost, m.name)):
            own = self.own.get(m.name)
            kind, model = self.backends.get(m.name, ("", ""))
            row: dict[str, Any] = {"name": m.name, "state": m.state, "since": self.since.get(m.name, 0.0), "cost": m.cost,
                                   "incarnation": m.incarnation, "backend": kind, "model": model}
            if own is not None:
                decided = own.answered + own.rejected
                row |= {"in_flight": own.in_flight if m.name in self.reporting else None, "received": own.received, "answered": own.answered, "rejected": own.rejected,
                        "answer_rate": round(own.answered / decided, 4) if decided else None,
                        "p50_ms": round(own.p50_s * 1000, 2), "p95_ms": round(own.p95_s * 1000, 2)}
            agents.append(row)
        edges = [{"from": a, "to": b, "count": e.last_minute, "total": e.samples[-1][1]}
                 for (a, b), e in sorted(self.edges.items()) if e.last_minute > 0]
        return {"swarm": self.swarm, "now": self.polled_at, "polls": self.polls, "agents": agents, "edges": edges,
                "timeline": list(self.timeline)[::-1], "queries": list(self.queries)[::-1]}
