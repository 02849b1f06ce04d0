"""Membership upkeep: how an agent keeps its view of the swarm true, SWIM style.

Joining through seeds, push-pull gossip of changes (and a whole-view exchange when views still
differ), pings that make an unresponsive peer a suspect (after k other peers failed to reach it
too: SWIM's indirect probe), suspicion that expires into death, dead peers probed again now and
then (a healed partition refutes its obituaries), gone entries forgotten, and the goodbye of a
leaving agent. All of it travels on the control lane, which a flood of queries cannot starve. `AgentNode` routes queries and hands membership messages here;
this module never touches a query, except that `on_dead` tells the router to stop waiting on a
peer that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from swarm.errors import PeerUnreachable, ProtocolError, SwarmError
from swarm.latency import Latency
from swarm.membership import Membership
from swarm.protocol import Ack, Error, Gossip, Join, Leave, Member, Ping, PingReq, Pong, View, encode, expect
from swarm.transport.base import Transport

log = structlog.get_logger("swarm.upkeep")
MAX_HEALTH = 8  # Lifeguard's local health multiplier saturates here: timeouts at most 9x


class Upkeep:
    def __init__(self, membership: Membership, transport: Transport, config: Any, rng: random.Random,
                 spawn: Callable[[Coroutine[Any, Any, Any]], None], on_dead: Callable[[str], None],
                 on_view: Callable[[], Any] = lambda: None, latency: Latency | None = None) -> None:
        self.membership, self.transport, self.config, self.rng = membership, transport, config, rng
        self.latency = latency or Latency(membership.me)  # measured times ride on pongs (swarm.latency)
        self.name = membership.me
        self.spawn, self.on_dead, self.on_view = spawn, on_dead, on_view  # on_view: after any change of a peer's entry
        self._syncing = False
        # Local health (Lifeguard, Dadgar et al. 2018): an agent that is slow itself (its timers fire
        # late, its probes fail, it has to refute suspicions) is more likely wrong about others, so
        # it stretches its probe and suspicion timeouts by (1 + health) instead of accusing them.
        self.health = 0

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
            self.membership.announce()  # gossip our own arrival too: the seed may crash before it has spread it
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
        return Pong(name=me.name, incarnation=me.incarnation, timing=self.latency.own.timing())

    async def _on_ping_req(self, r: PingReq) -> Pong | Error:
        """Ping `r.target` on a peer's behalf: its Pong, or an error when it did not answer."""
        try:
            return await self.call(r.target, Ping(sender=self.name), Pong)
        except (TimeoutError, PeerUnreachable, ProtocolError) as exc:
            return Error(code="no_reply", message=f"{r.target} did not answer {self.name}'s ping ({type(exc).__name__})")

    def merge(self, entries: list[Member], spread: bool = True) -> None:
        changed = self.membership.merge_all(entries, spread)
        if any(m.name == self.name for m in changed):  # we had to refute a rumour about ourselves
            self._worse()
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
            self.latency.peers.forget(m.name)
            self.on_dead(m.name)
        log.info("member " + m.state, agent=self.name, peer=m.name, incarnation=m.incarnation)

    async def gossip_round(self) -> None:
        """One push-pull exchange with a random peer; a full view exchange if we still disagree. Now
        and then (`reprobe_share` of rounds) the exchange goes to a peer we hold dead instead, carrying
        its obituary and our own entry: if it was only cut off, it refutes, and both sides heal."""
        dead = self.membership.dead_peer(self.rng) if self.rng.random() < self.config.reprobe_share else None
        if dead is not None:
            await self._reprobe(dead)
            return
        peer = self.membership.random_peer(self.rng)
        if peer is not None:
            await self._gossip_with(peer.name)

    async def _reprobe(self, dead: Member) -> None:
        news = [dead, self.membership.self_entry, *self.membership.take_updates(self.config.gossip_fanout - 2)]
        try:
            reply = await self.call(dead.name, Gossip(digest=self.membership.digest(), updates=news), Gossip)
        except (TimeoutError, PeerUnreachable, ProtocolError):
            return  # still gone
        log.info("dead peer answered", agent=self.name, peer=dead.name)
        self.merge(reply.updates)

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
            log.debug("no reply to gossip", agent=self.name, peer=peer)  # judging liveness is the pings' job (indirect probes included)
        except PeerUnreachable as exc:
            if exc.permanent:
                self.judge(peer, "dead", str(exc))
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
        """Probe one random peer; when neither we nor any of `indirect_probes` other peers reach it,
        it becomes a suspect; an old suspicion makes it dead. Gone entries are forgotten here too."""
        peer = self.membership.random_peer(self.rng)
        if peer is not None:
            try:
                pong = await self.call(peer.name, Ping(sender=self.name), Pong, timeout=self.scaled(self.config.ping_timeout_s))
                self.latency.peers.heard([pong.timing] if pong.timing and pong.timing.agent == peer.name else [])
                self.health = max(0, self.health - 1)
            except TimeoutError:
                self._worse()
                if not await self._reached_indirectly(peer.name):
                    self.judge(peer.name, "suspect", "no reply to ping, directly or through peers")
            except PeerUnreachable as exc:
                if exc.permanent:
                    self.judge(peer.name, "dead", str(exc))
                elif not await self._reached_indirectly(peer.name):
                    self.judge(peer.name, "suspect", str(exc))
            except ProtocolError:
                pass
        for name in self.membership.expire_suspects(self.suspicion_timeout()):
            log.warning("suspect expired", agent=self.name, peer=name)
            self._note_change(self.membership.members[name])
            self.on_view()
        for name in self.membership.forget_gone(self.config.forget_after_s):
            self.transport.forget(name)
            log.info("member forgotten", agent=self.name, peer=name)

    def scaled(self, seconds: float) -> float:
        return seconds * (1 + self.health)

    def suspicion_timeout(self) -> float:
        """How long a suspect has to refute: longer in a bigger swarm (memberlist's log10(n) factor),
        never shorter than the 2 log2(n) gossip rounds its refutation needs to reach everyone, and
        longer again when we ourselves are slow."""
        alive = 1 + len(self.membership.peers(("alive",)))
        spread = 2 * self.config.gossip_interval_s * math.ceil(math.log2(alive + 1))
        return self.scaled(max(self.config.suspect_timeout_s * max(1.0, math.log10(alive)), spread))

    def _worse(self) -> None:
        self.health = min(MAX_HEALTH, self.health + 1)

    async def _reached_indirectly(self, target: str) -> bool:
        """SWIM's indirect probe: ask up to k other live peers to ping `target`; True when one reached it."""
        helpers = [m.name for m in self.membership.peers(("alive",)) if m.name != target]
        helpers = self.rng.sample(helpers, min(self.config.indirect_probes, len(helpers)))
        if not helpers:
            return False

        async def through(helper: str) -> bool:
            try:
                async with asyncio.timeout(2 * self.scaled(self.config.ping_timeout_s)):
                    expect(await self.transport.send(helper, encode(PingReq(target=target, sender=self.name)), control=True), Pong)
                return True
            except (TimeoutError, PeerUnreachable, ProtocolError):
                return False

        return any(await asyncio.gather(*(through(h) for h in helpers)))

    async def _every(self, interval: float, step) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # Jitter keeps the agents of a swarm from probing in lock step.
            pause = interval * self.rng.uniform(0.8, 1.2)
            began = loop.time()
            await asyncio.sleep(pause)
            if loop.time() - began - pause > self.config.ping_timeout_s / 2:  # our own loop is late: we are the slow one
                self._worse()
            try:
                await step()
            except Exception as exc:  # a background round must never die silently
                log.error("background round failed", agent=self.name, error=repr(exc))

    async def call(self, peer: str, body, reply_type, control: bool = True, timeout: float | None = None):
        """One membership request, bounded by the ping timeout so a hung peer cannot stall us. Every
        one travels on the control lane, so a flood of queries cannot make a busy agent look dead;
        a stuck agent still fails them (its node's own loop answers them), and a hung backend is the
        circuit breaker's business (swarm.node)."""
        async with asyncio.timeout(timeout or self.config.ping_timeout_s):
            return expect(await self.transport.send(peer, encode(body), control=control), reply_type)

    async def send_quietly(self, peer: str, data: bytes) -> None:
        with contextlib.suppress(PeerUnreachable, ProtocolError, TimeoutError):
            async with asyncio.timeout(self.config.ping_timeout_s):
                await self.transport.send(peer, data, control=True)

    def handlers(self) -> dict[type, Callable[[Any], Coroutine[Any, Any, Any]]]:
        """The membership messages this agent answers, by type."""
        return {Join: self._on_join, Gossip: self._on_gossip, Leave: self._on_leave, Ping: self._on_ping, PingReq: self._on_ping_req}
