"""Membership upkeep: how an agent keeps its view of the swarm true, SWIM style.

Joining through seeds, push-pull gossip of changes (and a whole-view exchange when views still
differ), pings that make an unresponsive peer a suspect, suspicion that expires into death, and
the goodbye of a leaving agent. `AgentNode` routes queries and hands membership messages here;
this module never touches a query, except that `on_dead` tells the router to stop waiting on a
peer that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from swarm.errors import PeerUnreachable, ProtocolError, SwarmError
from swarm.membership import Membership
from swarm.protocol import Ack, Gossip, Join, Leave, Member, Ping, Pong, View, encode, expect
from swarm.transport.base import Transport

log = structlog.get_logger("swarm.upkeep")


class Upkeep:
    def __init__(self, membership: Membership, transport: Transport, config: Any, rng: random.Random,
                 spawn: Callable[[Coroutine[Any, Any, Any]], None], on_dead: Callable[[str], None],
                 on_view: Callable[[], Any] = lambda: None) -> None:
        self.membership, self.transport, self.config, self.rng = membership, transport, config, rng
        self.name = membership.me
        self.spawn, self.on_dead, self.on_view = spawn, on_dead, on_view  # on_view: after any change of a peer's entry
        self._syncing = False

    # -- life cycle ----------------------------------------------------------------------------
    async def join(self, seeds: list[str]) -> None:
        """Announce ourselves through the first seed that answers and take its view."""
        tried = [s for s in seeds if s != self.name]
        for seed in tried:
            try:
                view = await self.call(seed, Join(member=self.membership.self_entry), View)
            except (PeerUnreachable, ProtocolError, TimeoutError) as exc:
                log.warning("seed unreachable", agent=self.name, seed=seed, error=str(exc) or "timeout")
                continue
            self.merge(view.members, spread=False)
            self.on_view()
            return
        self.on_view()
        if tried:
            raise SwarmError(f"agent {self.name!r} could not join: no seed answered (tried {', '.join(tried)})")

    def run_in_background(self) -> None:
        self.spawn(self._every(self.config.gossip_interval_s, self.gossip_round))
        self.spawn(self._every(self.config.ping_interval_s, self.ping_round))

    async def say_goodbye(self) -> None:
        """Mark ourselves left (a fresh incarnation) and tell every peer, so none sends us more."""
        goodbye = encode(Leave(member=self.membership.set_self("left")))
        await asyncio.gather(*(self.send_quietly(p.name, goodbye) for p in self.membership.peers()))

    # -- membership messages -------------------------------------------------------------------
    async def _on_join(self, j: Join) -> View:
        self.merge([j.member])
        return View(digest=self.membership.digest(), members=self.membership.view())

    async def _on_gossip(self, g: Gossip) -> Gossip | View:
        self.merge(g.updates, spread=not g.full)
        if g.full:
            return View(digest=self.membership.digest(), members=self.membership.view())
        return Gossip(digest=self.membership.digest(), updates=self.membership.take_updates(self.config.gossip_fanout))

    async def _on_leave(self, msg: Leave) -> Ack:
        self.merge([msg.member])
        return Ack()

    async def _on_ping(self, _: Ping) -> Pong:
        me = self.membership.self_entry
        return Pong(name=me.name, incarnation=me.incarnation)


    def merge(self, entries: list[Member], spread: bool = True) -> None:
        changed = self.membership.merge_all(entries, spread)
        for m in changed:
            self._note_change(m)
        if any(m.name != self.name for m in changed):
            self.on_view()

    def judge(self, peer: str, state: str, why: str) -> None:
        if self.membership.mark(peer, state):
            log.warning("peer judged " + state, agent=self.name, peer=peer, reason=why[:200])
            self._note_change(self.membership.members[peer])
            self.on_view()

    def _note_change(self, m: Member) -> None:
        if m.name == self.name:
            return
        if m.state == "dead":
            self.transport.forget(m.name)
            self.on_dead(m.name)
        log.info("member " + m.state, agent=self.name, peer=m.name, incarnation=m.incarnation)

    async def gossip_round(self) -> None:
        """One push-pull exchange with a random peer; a full view exchange if we still disagree."""
        peer = self.membership.random_peer(self.rng)
        if peer is not None:
            await self._gossip_with(peer.name)

    async def _gossip_with(self, peer: str) -> None:
        updates = self.membership.take_updates(self.config.gossip_fanout)
        try:
            reply = await self.call(peer, Gossip(digest=self.membership.digest(), updates=updates), Gossip)
            self.merge(reply.updates)
            if reply.digest != self.membership.digest() and not reply.updates and not updates:
                # Epidemic spreading is over and we still disagree: exchange whole views once.
                full = Gossip(digest=self.membership.digest(), updates=self.membership.view(), full=True)
                self.merge((await self.call(peer, full, View)).members, spread=False)
        except TimeoutError:
            self.judge(peer, "suspect", "no reply to gossip")
        except PeerUnreachable as exc:
            self.judge(peer, "dead" if exc.permanent else "suspect", str(exc))
        except ProtocolError as exc:
            log.warning("gossip refused", agent=self.name, peer=peer, error=str(exc))

    def sync_soon(self, peer: str) -> None:
        if not self._syncing:
            self._syncing = True
            self.spawn(self._sync(peer))

    async def _sync(self, peer: str) -> None:
        try:
            await self._gossip_with(peer)
        finally:
            self._syncing = False

    async def ping_round(self) -> None:
        """Probe one random peer; no reply in time makes it a suspect, an old suspicion makes it dead."""
        peer = self.membership.random_peer(self.rng)
        if peer is not None:
            try:
                await self.call(peer.name, Ping(sender=self.name), Pong, control=False)
            except TimeoutError:
                self.judge(peer.name, "suspect", "no reply to ping")
            except PeerUnreachable as exc:
                self.judge(peer.name, "dead" if exc.permanent else "suspect", str(exc))
            except ProtocolError:
                pass
        for name in self.membership.expire_suspects(self.config.suspect_timeout_s):
            log.warning("suspect expired", agent=self.name, peer=name)
            self._note_change(self.membership.members[name])
            self.on_view()

    async def _every(self, interval: float, step) -> None:
        while True:
            # Jitter keeps the agents of a swarm from probing in lock step.
            await asyncio.sleep(interval * self.rng.uniform(0.8, 1.2))
            try:
                await step()
            except Exception as exc:  # a background round must never die silently
                log.error("background round failed", agent=self.name, error=repr(exc))

    async def call(self, peer: str, body, reply_type, control: bool = True):
        """One membership request, bounded by the ping timeout so a hung peer cannot stall us.
        Pings travel on the query lane on purpose: a stuck query loop must fail them."""
        async with asyncio.timeout(self.config.ping_timeout_s):
            return expect(await self.transport.send(peer, encode(body), control=control), reply_type)

    async def send_quietly(self, peer: str, data: bytes) -> None:
        with contextlib.suppress(PeerUnreachable, ProtocolError, TimeoutError):
            async with asyncio.timeout(self.config.ping_timeout_s):
                await self.transport.send(peer, data, control=True)

    def handlers(self) -> dict[type, Callable[[Any], Coroutine[Any, Any, Any]]]:
        """The membership messages this agent answers, by type."""
        return {Join: self._on_join, Gossip: self._on_gossip, Leave: self._on_leave, Ping: self._on_ping}
