"""Membership: the versioned map name -> Member that every agent holds, merged SWIM style.

Rules: a higher incarnation wins; at equal incarnation the worse state wins
(alive < suspect < left < dead). Only an agent itself raises its incarnation, which is how a
suspected agent refutes the suspicion. Changes spread by gossip: each change is sent a few
times (about 3 log n) on gossip exchanges, and a digest of the whole map travels on every
query so that peers that drifted apart notice and exchange views.

Dead (not left) members are probed again now and then (`dead_peer`), as memberlist does, so a
healed partition refutes its obituaries; an entry dead or left for `forget_after_s` is dropped
(`forget_gone`), and the map never holds more than `max_members` entries, whatever gossip says.
The digest covers live entries only, so agents that dropped a gone member at different times
still agree. The last MAX_CHANGES changes of state seen here are kept (`changes`) for status, so a
dashboard polling once a second misses no suspicion that was refuted in between.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable

import structlog

from swarm.protocol import MAX_CHANGES, MAX_INCARNATION, MAX_MEMBERS, Member, MemberChange, MemberState

log = structlog.get_logger("swarm.membership")

STATE_ORDER: dict[str, int] = {"alive": 0, "suspect": 1, "left": 2, "dead": 3}


class Membership:
    def __init__(self, me: Member, clock: Callable[[], float] = time.monotonic, retransmit: int = 3,
                 max_members: int = MAX_MEMBERS) -> None:
        self.me = me.name
        self.max_members = max_members
        self._gone_at: dict[str, float] = {}  # name -> when it became dead or left (for forget_gone)
        self.refused = 0  # entries not taken because the map was full
        self.members: dict[str, Member] = {me.name: me}
        self.clock = clock
        self.retransmit = retransmit
        self._pending: dict[str, int] = {}  # name -> gossip transmissions left for its latest change
        self._changed_at: dict[str, int] = {}  # name -> version of its latest change (newest news goes first)
        self.version = 0  # bumped on every change; caches derived from the map key on it
        self._suspected_at: dict[str, float] = {}
        self._digest: str | None = None
        self._changes: deque[tuple[float, str, MemberState, MemberState | None, int]] = deque(maxlen=MAX_CHANGES)

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

    def dead_peer(self, rng: random.Random) -> Member | None:
        """A random peer we hold dead (not left): worth probing again, in case it was only cut off."""
        dead = self.peers(("dead",))
        return rng.choice(dead) if dead else None

    def changes(self) -> list[MemberChange]:
        """The last changes of state seen here, oldest first, each with its age by our own clock."""
        now = self.clock()
        return [MemberChange(name=n, state=s, previous=p, incarnation=i, age_s=max(0.0, now - t)) for t, n, s, p, i in self._changes]

    def digest(self) -> str:
        if self._digest is None:
            text = ";".join(f"{m.name},{m.incarnation},{m.state}" for m in self.view() if m.state in ("alive", "suspect"))
            self._digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
        return self._digest

    # -- changing ------------------------------------------------------------------------------
    def merge(self, incoming: Member, spread: bool = True) -> bool:
        """Apply one entry heard from a peer; True when it changed the map. `spread=False` for bulk
        views (bootstrap, full sync): that is old news, and gossiping it would crowd out new news."""
        if incoming.name == self.me:
            return self._maybe_refute(incoming)
        current = self.members.get(incoming.name)
        if current is not None and not supersedes(incoming, current):
            return False
        if current is None and len(self.members) >= self.max_members:
            self.refused += 1
            if self.refused == 1:
                log.warning("membership full: new entries ignored", agent=self.me, limit=self.max_members, entry=incoming.name)
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
        self._set(me.model_copy(update={**changes, "incarnation": min(MAX_INCARNATION, me.incarnation + 1)}))
        return self.self_entry

    def announce(self) -> None:
        """Owe the swarm our own entry as news (a newcomer spreads itself, not only through its seed)."""
        self._set(self.self_entry)

    def expire_suspects(self, timeout: float) -> list[str]:
        """Suspects that did not refute within `timeout` seconds become dead."""
        now = self.clock()
        expired = [n for n, t in self._suspected_at.items() if now - t >= timeout]
        for name in expired:
            self.mark(name, "dead")
        return expired

    def forget_gone(self, after_s: float) -> list[str]:
        """Drop the entries dead or left for `after_s` seconds or more (a name may come back as a new member)."""
        now = self.clock()
        gone = [n for n, t in self._gone_at.items() if now - t >= after_s]
        for name in gone:
            del self.members[name], self._gone_at[name]
            self._pending.pop(name, None)
            self._changed_at.pop(name, None)
        if gone:
            self._digest = None
            self.version += 1
        return gone

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
        # Bounded: a refutation never makes an incarnation that peers would refuse to decode.
        self._set(me.model_copy(update={"incarnation": min(MAX_INCARNATION, incoming.incarnation + 1)}))
        return True

    def _set(self, member: Member, spread: bool = True) -> None:
        before = self.members.get(member.name)
        if before is None or before.state != member.state:
            self._changes.append((self.clock(), member.name, member.state, before and before.state, member.incarnation))
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
        if member.state in ("dead", "left") and member.name != self.me:
            self._gone_at.setdefault(member.name, self.clock())
        else:
            self._gone_at.pop(member.name, None)


def supersedes(a: Member, b: Member) -> bool:
    """`a` is newer news of the same member than `b` (a higher incarnation, or the worse state at the same one)."""
    if a.incarnation != b.incarnation:
        return a.incarnation > b.incarnation
    return STATE_ORDER[a.state] > STATE_ORDER[b.state]
