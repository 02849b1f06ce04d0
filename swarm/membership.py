"""Membership: the versioned map name -> Member that every agent holds, merged SWIM style.

Rules: a higher incarnation wins; at equal incarnation the worse state wins
(alive < suspect < left < dead). Only an agent itself raises its incarnation, which is how a
suspected agent refutes the suspicion. Changes spread by gossip: each change is sent a few
times (about 3 log n) on gossip exchanges, and a digest of the whole map travels on every
query so that peers that drifted apart notice and exchange views.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Iterable

from swarm.protocol import Member, MemberState

STATE_ORDER: dict[str, int] = {"alive": 0, "suspect": 1, "left": 2, "dead": 3}


class Membership:
    def __init__(self, me: Member, clock: Callable[[], float] = time.monotonic, retransmit: int = 3) -> None:
        self.me = me.name
        self.members: dict[str, Member] = {me.name: me}
        self.clock = clock
        self.retransmit = retransmit
        self._pending: dict[str, int] = {}  # name -> gossip transmissions left for its latest change
        self._changed_at: dict[str, int] = {}  # name -> version of its latest change (newest news goes first)
        self.version = 0  # bumped on every change; caches derived from the map key on it
        self._suspected_at: dict[str, float] = {}
        self._digest: str | None = None

    # -- reading -------------------------------------------------------------------------------
    @property
    def self_entry(self) -> Member:
        return self.members[self.me]

    def get(self, name: str) -> Member | None:
        return self.members.get(name)

    def view(self) -> list[Member]:
        return sorted(self.members.values(), key=lambda m: m.name)

    def reachable(self, name: str) -> bool:
        m = self.members.get(name)
        return m is not None and m.state in ("alive", "suspect")

    def peers(self, states: Iterable[str] = ("alive", "suspect")) -> list[Member]:
        wanted = set(states)
        return [m for m in self.members.values() if m.name != self.me and m.state in wanted]

    def random_peer(self, rng: random.Random) -> Member | None:
        peers = self.peers()
        return rng.choice(peers) if peers else None

    def digest(self) -> str:
        if self._digest is None:
            text = ";".join(f"{m.name},{m.incarnation},{m.state}" for m in self.view())
            self._digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
        return self._digest

    # -- changing ------------------------------------------------------------------------------
    def merge(self, incoming: Member, spread: bool = True) -> bool:
        """Apply one entry heard from a peer; True when it changed the map. `spread=False` for bulk
        views (bootstrap, full sync): that is old news, and gossiping it would crowd out new news."""
        if incoming.name == self.me:
            return self._maybe_refute(incoming)
        current = self.members.get(incoming.name)
        if current is not None and not _newer(incoming, current):
            return False
        self._set(incoming.model_copy(), spread)
        return True

    def merge_all(self, entries: Iterable[Member], spread: bool = True) -> list[Member]:
        return [m for m in entries if self.merge(m, spread)]

    def mark(self, name: str, state: MemberState) -> bool:
        """Local judgement about a peer (suspect after a missed ping, dead after a failed send)."""
        current = self.members.get(name)
        if current is None or name == self.me or STATE_ORDER[state] <= STATE_ORDER[current.state]:
            return False
        self._set(current.model_copy(update={"state": state}))
        return True

    def set_self(self, state: MemberState | None = None, **changes) -> Member:
        """Announce a change of our own entry (alive again, left, a new value curve) with a fresh incarnation."""
        me = self.self_entry
        if state is not None:
            changes["state"] = state
        self._set(me.model_copy(update={**changes, "incarnation": me.incarnation + 1}))
        return self.self_entry

    def expire_suspects(self, timeout: float) -> list[str]:
        """Suspects that did not refute within `timeout` seconds become dead."""
        now = self.clock()
        expired = [n for n, t in self._suspected_at.items() if now - t >= timeout]
        for name in expired:
            self.mark(name, "dead")
        return expired

    def take_updates(self, limit: int = 16) -> list[Member]:
        """The changes still owed to the swarm, newest first; each call spends one transmission."""
        names = sorted(self._pending, key=lambda n: -self._changed_at[n])[:limit]
        for name in names:
            self._pending[name] -= 1
            if self._pending[name] <= 0:
                del self._pending[name]
        return [self.members[n] for n in names]

    def _maybe_refute(self, incoming: Member) -> bool:
        # Someone holds an older life of ours, or suspects us: outbid it with a higher incarnation.
        me = self.self_entry
        stale = incoming.incarnation > me.incarnation
        doubted = incoming.incarnation == me.incarnation and incoming.state != me.state
        if me.state == "left" or not (stale or doubted):
            return False
        self._set(me.model_copy(update={"incarnation": incoming.incarnation + 1}))
        return True

    def _set(self, member: Member, spread: bool = True) -> None:
        self.members[member.name] = member
        self._digest = None
        self.version += 1
        if spread:
            self._pending[member.name] = self.retransmit * max(1, math.ceil(math.log2(len(self.members) + 1)))
            self._changed_at[member.name] = self.version
        if member.state == "suspect":
            self._suspected_at.setdefault(member.name, self.clock())
        else:
            self._suspected_at.pop(member.name, None)


def _newer(a: Member, b: Member) -> bool:
    if a.incarnation != b.incarnation:
        return a.incarnation > b.incarnation
    return STATE_ORDER[a.state] > STATE_ORDER[b.state]
