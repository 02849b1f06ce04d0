"""NeighbourTable: which peer a query goes to next, derived from the membership map.

- cascade: every stronger peer is a neighbour; the next hop is the cheapest stronger one.
- graph: neighbours are the agents linked to us (links are undirected and travel in the
  membership entries); the next hop is the cheapest stronger linked one.
Visited agents are never candidates, so a query cannot loop in any graph; suspected agents
are tried only after every alive one.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

from swarm.membership import Membership
from swarm.protocol import Member

Routing = Literal["cascade", "graph"]


class NeighbourTable:
    def __init__(self, membership: Membership, routing: Routing = "cascade") -> None:
        self.membership = membership
        self.routing = routing
        self._order: list[str] = []
        self._order_version = -1

    def neighbours(self) -> list[Member]:
        me = self.membership.self_entry
        peers = self.membership.peers()
        if self.routing == "cascade":
            return peers
        return [p for p in peers if p.name in me.links or me.name in p.links]

    def _stronger(self) -> list[str]:
        """Stronger reachable neighbours in trying order; rebuilt only when membership changes,
        so a hop costs a scan of this list, not a sort of the whole swarm."""
        if self._order_version != self.membership.version:
            me = self.membership.self_entry
            mine = (me.cost, me.name)
            stronger = [p for p in self.neighbours() if (p.cost, p.name) > mine]
            stronger.sort(key=lambda p: (p.state != "alive", p.cost, p.name))
            self._order = [p.name for p in stronger]
            self._order_version = self.membership.version
        return self._order

    def candidates(self, visited: Collection[str] = ()) -> list[str]:
        """Stronger, reachable, unvisited neighbours in the order they should be tried."""
        skip = set(visited)
        return [n for n in self._stronger() if n not in skip]

    def next_hop(self, visited: Collection[str] = ()) -> str | None:
        for name in self._stronger():
            if name not in visited:
                return name
        return None
