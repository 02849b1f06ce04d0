"""NeighbourTable: which peer a query goes to next, derived from the membership map.

- cascade: every stronger peer is a neighbour; the next hop is the cheapest stronger one.
- graph: neighbours are the agents linked to us (links are undirected and travel in the
  membership entries); the next hop is the cheapest stronger linked one.
Visited agents are never candidates, so a query cannot loop in any graph; suspected agents
are tried only after every alive one.
"""

from __future__ import annotations

from typing import Literal

from swarm.membership import Membership
from swarm.protocol import Member

Routing = Literal["cascade", "graph"]


class NeighbourTable:
    def __init__(self, membership: Membership, routing: Routing = "cascade") -> None:
        self.membership = membership
        self.routing = routing

    def neighbours(self) -> list[Member]:
        me = self.membership.self_entry
        peers = self.membership.peers()
        if self.routing == "cascade":
            return peers
        return [p for p in peers if p.name in me.links or me.name in p.links]

    def candidates(self, visited: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Stronger, reachable, unvisited neighbours in the order they should be tried."""
        me = self.membership.self_entry
        mine = (me.cost, me.name)
        stronger = [p for p in self.neighbours() if (p.cost, p.name) > mine and p.name not in visited]
        stronger.sort(key=lambda p: (p.state != "alive", p.cost, p.name))
        return [p.name for p in stronger]

    def next_hop(self, visited: set[str] | frozenset[str] = frozenset()) -> str | None:
        found = self.candidates(visited)
        return found[0] if found else None
