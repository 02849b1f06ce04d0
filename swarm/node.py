"""AgentNode: the routing core. One per agent, free of Ray, speaking only through a Transport.
Membership upkeep (joining, gossip, pings, suspicion, goodbye) is its `upkeep` (swarm.upkeep).

A query arrives, the agent's policy answers or rejects it with the agent's own backend, and a
rejected query goes to the next hop of the NeighbourTable. Each hop awaits the next, so the
answer flows back along the path and a failed hop is simply retried at the next candidate:
no timers, acknowledgements or coordinator. A query always ends in one Result: an answer, or
an explicit error code. An agent works at most once on a query id (swarm.execution): a copy that
arrives while it holds the id, or soon after, gets the same Result; a query that comes back to an
agent it already visited is refused (a loop); a reply must answer the query it was sent for; work
nobody waits for any more is cancelled along the path.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from swarm.backends.base import Backend
from swarm.backends.batching import MicroBatcher
from swarm.errors import BackendError, Oversize, PeerUnreachable, ProtocolError
from swarm.execution import CircuitBreaker, Executions
from swarm.latency import Latency, blind_pass, decision_limit, forced_value, handed_value, next_hop_within, quantile, twice_usual, with_own
from swarm.membership import Membership
from swarm.neighbours import NeighbourTable, Routing
from swarm.policies import Ask, Policy
from swarm.protocol import (
    MAX_HOPS, MAX_RECENT, Ack, Cancel, Chunk, Error, Hop, Member, PeerCount, Query, RecentQuery, Result, Speculations, Status, StatusRequest, decode, encode,
    error_reply, expect,
)
from swarm.speculation import Speculation
from swarm.streaming import TextRelay, pieces_of
from swarm.transport.base import Transport
from swarm.upkeep import Upkeep

log = structlog.get_logger("swarm.node")
# `_respond`'s answer when the agent's decision outran its share of the time left: its model works (as far as
# anyone knows) but was stopped, so the query is planned again for the time really left and, when no peer fits
# that any more, answered here. (A backend that failed outright gets None, and is not asked a second time.)
_UNDECIDED = object()


@dataclass(frozen=True)
class NodeConfig:
    routing: Routing = "cascade"
    gossip_interval_s: float = 0.5
    ping_interval_s: float = 1.0
    ping_timeout_s: float = 2.0
    suspect_timeout_s: float = 3.0
    drain_timeout_s: float = 30.0
    max_query_chars: int = 32768
    max_hops: int = MAX_HOPS  # a query asking to visit more agents is cut to this (the topology's max_hops)
    max_budget_s: float = 600.0  # a query asking for more time is cut to this (the topology's max_deadline_s)
    gossip_fanout: int = 16  # membership updates carried per gossip message
    indirect_probes: int = 3  # peers asked to ping a peer that missed our ping, before we suspect it
    reprobe_share: float = 0.25  # gossip rounds that go to a peer held dead instead (partition healing)
    forget_after_s: float = 600.0  # a dead or left entry is dropped after this long
    generation_share: float = 0.5  # the most of the time left an agent spends on a query it could pass on
    breaker_failures: int = 3  # consecutive backend timeouts or errors that open the circuit breaker
    breaker_cooldown_s: float = 5.0  # an open breaker passes queries on without asking the backend this long
    remember_s: float = 60.0  # how long a finished query id is remembered, so a late duplicate is not run again
    remember_max: int = 100_000
    hop_overhead_s: float = 0.01  # allowed for one forward (transport, codec) beside a peer's advertised times (swarm.latency)
    next_hop: str = "next"  # where a rejected query goes: "next" agent of the cascade, or the stronger one advertising the "best" value
    regions: Any = None  # the topology's region map (swarm.assess.regions.RegionMap): value curves per region; None: one curve


@dataclass
class Counters:
    received: int = 0
    answered: int = 0
    rejected: int = 0
    forced: int = 0
    failed: int = 0
    forwarded: int = 0
    in_flight: int = 0
    duplicates: int = 0  # copies of a query id this agent already held: joined or answered from memory, never run again
    cancelled: int = 0  # executions stopped by a cancel message
    latencies: list[float] = field(default_factory=list)  # the last 1,000, for status
    forwards_to: Counter[str] = field(default_factory=Counter)  # peer -> forwards it replied to (the edges queries took)
    speculation: Speculations = field(default_factory=Speculations)  # queries passed on while generating (swarm.speculation)


class NodeObserver:
    """Hooks for metrics exporters (the Ray transport implements one). Called on the node's event
    loop for every query, so implementations must be cheap and never block; the default does nothing."""

    def decided(self, decision: str) -> None:
        """This agent's own decision on a query: answer, forced or reject."""

    def query_done(self, seconds: float, outcome: str, entry: bool, hops: int) -> None:
        """A query left this agent: time held here, 'ok' or the error code, whether this agent was its
        entry, and (at the entry, the whole path) the forwards between agents it took."""

    def speculated(self, outcome: str) -> None:
        """A query this agent passed on while generating (swarm.speculation): 'used' (it rejected, the
        copy's reply is the result) or 'cancelled' (it answered: the copy was wasted work)."""


class AgentNode:
    def __init__(
        self, member: Member, policy: Policy, backend: Backend, transport: Transport,
        config: NodeConfig = NodeConfig(), initial: list[Member] = (), seed: int | None = None,
        observer: NodeObserver | None = None,
    ) -> None:
        self.name = member.name
        self.observer = observer or NodeObserver()
        self.policy, self.backend, self.transport, self.config = policy, backend, transport, config
        self.membership = Membership(member)
        self.membership.merge_all(initial, spread=False)
        self.table = NeighbourTable(self.membership, config.routing)
        self.counters = Counters()
        self.executions = Executions(config.remember_s, config.remember_max)
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_cooldown_s)
        self.answered_ids: deque[str] = deque(maxlen=100_000)  # the query ids this agent answered, for duplicate counts
        self.recent: deque[tuple[float, Result, float]] = deque(maxlen=MAX_RECENT)  # (finished, result, seconds) of queries entered here
        self.rng = random.Random(seed)
        self._sending: dict[str, set[asyncio.Future]] = {}  # peer -> queries we are waiting on there
        self._tasks: set[asyncio.Task] = set()
        self._stopped = asyncio.Event()
        self.latency = Latency(self.name)  # own and peers' measured times, for latency-aware next hops
        self.upkeep = Upkeep(self.membership, transport, config, self.rng, self._spawn, self._abandon, self.advertise_curve, self.latency)
        self._streams: dict[str, asyncio.Queue[str | None]] = {}  # query id -> pieces of its answer, for the client streaming it here
        # queries that arrive together are embedded together for their regions (one encoder call, as a model batches)
        self._regions = None if config.regions is None else MicroBatcher(self._regions_of, max_batch=64)
        self._handlers = {Query: self._on_query, Cancel: self._on_cancel, Chunk: self._on_chunk, StatusRequest: self._on_status,
                          **self.upkeep.handlers()}

    # -- life cycle ----------------------------------------------------------------------------
    async def start(self, seeds: list[str] = (), background: bool = True) -> None:
        """Load the backend, then announce ourselves through the first seed that answers."""
        await self.backend.start()
        if self.config.regions is not None:  # the encoder loads now, not on the first query's clock
            await self._region_of("warm-up", "")
        await self.upkeep.join(list(seeds))
        if background:
            self.upkeep.run_in_background()
        log.info("agent up", agent=self.name, members=len(self.membership.members))

    async def leave(self) -> None:
        """Stop taking new queries and tell every peer (so none sends more), finish what is in
        flight, then stop. Peers do not abandon queries they already sent here: we drain them."""
        if self.membership.self_entry.state == "left":
            return
        await self.upkeep.say_goodbye()
        deadline = time.monotonic() + self.config.drain_timeout_s
        while self.counters.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        log.info("agent left", agent=self.name, undrained=self.counters.in_flight)
        await self.stop()

    async def stopped(self) -> None:
        """Wait until this node has stopped (it left, or was stopped)."""
        await self._stopped.wait()

    async def stop(self) -> None:
        self._stopped.set()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:  # leave() may run as one of our own tasks (after a fatal backend error)
                task.cancel()
        if self._regions is not None:
            await self._regions.close()
        await self.backend.close()

    # -- the one entry point -------------------------------------------------------------------
    async def handle(self, data: bytes) -> bytes:
        """Decode, dispatch, encode. Never raises: a bad message, a reply too large to send, or a
        fault of our own becomes an error reply that says so (and is logged here)."""
        try:
            msg_id, body = decode(data)
        except ProtocolError as exc:
            log.warning("bad message", agent=self.name, code=exc.code, error=str(exc))
            return error_reply(exc)
        return await self._reply(msg_id, body)

    async def handle_stream(self, data: bytes) -> AsyncIterator[bytes]:
        """`handle` for a client that streams: a Query's answer comes as Chunk messages while it is
        generated (from whichever agent answers it), then its Result; any other message, its one reply.
        The client going away (closing the stream) cancels the query, as it does for `handle`."""
        try:
            msg_id, body = decode(data)
        except ProtocolError:
            yield await self.handle(data)
            return
        if not isinstance(body, Query) or body.query_id in self._streams:  # a second stream of one id gets the Result only
            yield await self._reply(msg_id, body)
            return
        q = body.model_copy(update={"stream_to": self.name})
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        self._streams[q.query_id] = pieces
        reply = asyncio.ensure_future(self._reply(msg_id, q))
        reply.add_done_callback(lambda _: pieces.put_nowait(None))
        try:
            async for text in pieces_of(pieces):
                yield encode(Chunk(query_id=q.query_id, text=text, sender=self.name), msg_id)
            yield await reply
        finally:
            self._streams.pop(q.query_id, None)
            reply.cancel()

    async def _reply(self, msg_id: str, body) -> bytes:
        try:
            handler = self._handlers.get(type(body))
            if handler is None:
                return encode(Error(code="unexpected_type", message=f"agent {self.name} does not accept {type(body).__name__} messages"), msg_id)
            reply = await handler(body)
            try:
                return encode(reply, msg_id)
            except Oversize as exc:  # e.g. a backend's answer of many megabytes: refuse it here, no peer is at fault
                log.warning("reply too large to send", agent=self.name, error=str(exc))
                if isinstance(reply, Result):
                    hop = Hop(agent=self.name, decision="error", detail="answer too large to send")
                    return encode(_failure(reply, "answer_too_large", f"the reply of {self.name} is too large: {exc.message}", [*reply.trace[-16:], hop]), msg_id)
                return error_reply(exc, msg_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a fault of ours must reach the sender as an answer, never as a RayTaskError
            log.exception("message handler failed", agent=self.name)
            return encode(Error(code="internal", message=f"agent {self.name} failed on this message ({type(exc).__name__})"), msg_id)

    # -- queries -------------------------------------------------------------------------------
    async def _on_query(self, q: Query) -> Result:
        with structlog.contextvars.bound_contextvars(query_id=q.query_id, agent=self.name, hop=len(q.visited)):
            self.counters.received += 1
            if q.sender and q.digest and q.digest != self.membership.digest():
                self.upkeep.sync_soon(q.sender)
            if self.name in q.visited:  # it came back round: joining our own execution would wait on ourselves
                return _failure(q, "refused", f"query {q.query_id} already visited {self.name}", [Hop(agent=self.name, decision="refused", detail="already visited")])
            if (held := self.executions.running(q.query_id)) is not None:
                return await self._join(q, held)
            if (done := self.executions.finished(q.query_id)) is not None:
                self.counters.duplicates += 1
                log.info("duplicate query answered from memory")
                return done.model_copy(update={"duplicate": True})
            if self.membership.self_entry.state != "alive":
                return _failure(q, "refused", f"agent {self.name} is leaving", [Hop(agent=self.name, decision="refused")])
            if len(q.text) > self.config.max_query_chars:
                message = f"query of {len(q.text)} characters exceeds {self.config.max_query_chars}"
                return _failure(q, "query_too_large", message, [Hop(agent=self.name, decision="refused", detail=message)])
            return await self._run(self._within_limits(q))

    async def _region_of(self, text: str, query_id: str) -> int | None:
        """The query's region under our region map (its text embedded once, here; later agents read it from the
        query); None when the encoder fails, and the query is judged against one curve for every query instead."""
        try:
            return await self._regions.submit(text)
        except Exception as exc:  # a missing or broken encoder must not lose the query
            log.warning("no region for the query: judged against one curve", error=repr(exc)[:200], query_id=query_id, agent=self.name)
            return None

    async def _regions_of(self, texts: list[str]) -> list[int]:
        return [int(r) for r in await asyncio.to_thread(self.config.regions.regions_of, texts)]

    def _may_pass_on(self, q: Query) -> bool:
        return len(q.visited) + 1 < q.max_hops and self.table.next_hop([*q.visited, self.name]) is not None

    def _region(self, q: Query) -> int | None:
        """`q`'s region, when it was found under the region map we hold (a region the map does not have is none)."""
        regions = self.config.regions
        ok = regions is not None and q.regions == regions.digest and q.region is not None and q.region < regions.k
        return q.region if ok else None

    def _within_limits(self, q: Query) -> Query:
        """A sender may ask for any budget and hop count the wire allows; this swarm grants its own limits."""
        budget, hops = min(q.budget_s, self.config.max_budget_s), min(q.max_hops, self.config.max_hops)
        if (budget, hops) == (q.budget_s, q.max_hops):
            return q
        log.info("query limits cut", budget_s=budget, asked_budget_s=q.budget_s, max_hops=hops, asked_max_hops=q.max_hops)
        return q.model_copy(update={"budget_s": budget, "max_hops": hops})

    async def _run(self, q: Query) -> Result:
        result = await self.executions.run(q.query_id, q.sender, lambda: self._execute(q))
        return result if result is not None else self._cancelled(q)

    async def _execute(self, q: Query) -> Result:
        """The one execution of `q` at this agent."""
        self.counters.in_flight += 1
        start = time.monotonic()
        relay = self._relay(q)
        try:
            # the region is found once, by the first agent holding the map that may pass the query on (it reads the
            # next agent's curve in that region; an agent that must answer needs none)
            if self._regions is not None and self._region(q) is None and self._may_pass_on(q):
                q = q.model_copy(update={"region": await self._region_of(q.text, q.query_id), "regions": self.config.regions.digest})
            result = await self._route(q, start + q.budget_s, relay)
            result = result.model_copy(update={"timings": with_own(result.timings, self.latency.own.timing())})
        finally:
            self.counters.in_flight -= 1
            if relay is not None:
                relay.close()
        held = time.monotonic() - start
        self.counters.latencies.append(held)
        del self.counters.latencies[:-1000]
        if not q.visited:
            self.recent.append((time.monotonic(), result, held))
        path = dict.fromkeys(h.agent for h in result.trace if h.decision not in ("unreachable", "refused"))
        self.observer.query_done(held, "ok" if result.ok else result.error_code, not q.visited, max(0, len(path) - 1))
        return result

    async def _join(self, q: Query, held) -> Result:
        """A query id this agent is working on: wait for that execution, never start a second one
        (unless it gets cancelled meanwhile: then this copy runs, a re-run of abandoned work)."""
        log.info("duplicate query joins the execution under way")
        result = await self.executions.join(held, q.sender)
        if result is None:
            return await self._run(q)
        self.counters.duplicates += 1
        return result.model_copy(update={"duplicate": True})

    def _cancelled(self, q: Query) -> Result:
        return _failure(q, "cancelled", f"query {q.query_id} was cancelled at {self.name}", [Hop(agent=self.name, decision="refused", detail="cancelled")])

    def _relay(self, q: Query) -> TextRelay | None:
        """Where this agent's answer to a streamed query goes as it is generated: straight to the agent
        streaming it to the client (ourselves, when we are the entry), never back along the chain."""
        if not q.stream_to:
            return None
        if q.stream_to == self.name:
            async def deliver(text: str) -> None:
                if (pieces := self._streams.get(q.query_id)) is not None:
                    pieces.put_nowait(text)
        else:
            async def deliver(text: str) -> None:
                async with asyncio.timeout(self.config.ping_timeout_s * 5):
                    expect(await self.transport.send(q.stream_to, encode(Chunk(query_id=q.query_id, text=text, sender=self.name)),
                                                     control=True), Ack)
        return TextRelay(deliver)

    async def _on_chunk(self, c: Chunk) -> Ack:
        """A piece of the answer to a query streamed here: to its client (dropped when it is not, or no longer, streamed here)."""
        if (pieces := self._streams.get(c.query_id)) is not None:
            pieces.put_nowait(c.text)
        return Ack()

    async def _on_cancel(self, c: Cancel) -> Ack:
        if self.executions.cancel(c.query_id, c.sender):
            self.counters.cancelled += 1
            log.info("query cancelled", query_id=c.query_id, agent=self.name, by=c.sender)
        return Ack()

    async def _route(self, q: Query, deadline: float, relay: TextRelay | None = None) -> Result:
        visited = [*q.visited, self.name]
        # Hops are planned to the soft target when there is one, and to the hard deadline otherwise (swarm.latency).
        horizon = deadline if q.target_s is None else min(deadline, deadline - q.budget_s + q.target_s)
        peer = self._next_hop(q, visited, horizon, deciding=True)
        quick = False
        # No time to judge a reply, or a judged rejection that runs slow would leave no peer its time (the agent
        # would then answer forced what it just judged not worth answering): it decides on the prefill alone when
        # that leaves a peer its time.
        if getattr(self.policy, "decides_quicker", False) and (peer is None or self._next_hop(q, visited, horizon, deciding=True, slow=True) is None):
            if (fast := self._next_hop(q, visited, horizon, deciding=True, quick=True)) is not None:
                peer, quick = fast, True
                log.info("no time to judge a reply and pass on: deciding on the prefill alone", next_hop=peer, query_id=q.query_id, agent=self.name)
        trace: list[Hop] = []
        blind = None if peer is not None else self._blind_hop(q, visited, horizon)
        if blind is not None:  # no time to decide here, and a peer that can answer in time is worth more than our answer
            trace.append(Hop(agent=self.name, decision="reject", detail=f"no time to decide: passed on unjudged to {blind}, worth more answering it"))
            log.info("no time to decide: passed on unjudged", next_hop=blind, query_id=q.query_id, agent=self.name)
            peer, response, undecided, first = blind, None, True, None
        else:
            ahead = self._speculation(q, peer, visited, deadline, horizon)
            try:
                response = await self._respond(q, deadline, must_answer=peer is None, trace=trace, peer=peer, relay=relay,
                                               uncertain=ahead and ahead.trigger, quick=quick)
            except BaseException:
                if ahead is not None:
                    ahead.close()
                raise
            undecided = response is _UNDECIDED
            if undecided:
                response = None
            if response is not None and not response.rejected:
                if ahead is not None and (wasted := ahead.cancel()) is not None:
                    trace.append(wasted)
                    self.observer.speculated("cancelled")
                return await self._answered(q, response, trace, forced=peer is None, relay=relay)
            if (first := ahead and ahead.claim(trace)) is not None:
                self.observer.speculated("used")
            if response is not None:
                self.counters.rejected += 1
                self.observer.decided("reject")
                if first is None:  # chosen again for the time the decision really took (none fits: we answer); a copy already sent stays
                    peer = self._next_hop(q, visited, horizon)
                log.debug("rejected", next_hop=peer)
            elif undecided and first is None:
                peer = self._next_hop(q, visited, horizon)
                log.info("no decision in time: planned again", next_hop=peer, query_id=q.query_id, agent=self.name)
        while peer is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return _failure(q, "deadline_exceeded", f"deadline passed at {self.name}", trace)
            sending = first if first is not None else self._forward(peer, self._onward(q, visited, remaining, horizon), remaining)
            first = None
            try:
                reply = await sending
            except Oversize as exc:  # our own message is too large for any peer: nobody is at fault, and nobody else can take it
                log.warning("query too large to pass on", error=str(exc))
                trace.append(Hop(agent=self.name, decision="error", detail="query too large to pass on"))
                break
            except PeerUnreachable as exc:
                self.upkeep.judge(peer, "dead" if exc.permanent else "suspect", str(exc))
                trace.append(Hop(agent=peer, decision="unreachable", detail=str(exc)[:200]))
                visited.append(peer)
            except ProtocolError as exc:  # it answered, but not with a Result we can use (e.g. a newer protocol)
                self.upkeep.judge(peer, "suspect", str(exc))
                trace.append(Hop(agent=peer, decision="error", detail=str(exc)[:200]))
                visited.append(peer)
            except TimeoutError:
                trace.append(Hop(agent=peer, decision="unreachable", detail="deadline passed waiting for it"))
                return _failure(q, "deadline_exceeded", f"deadline passed waiting for {peer}", trace)
            else:
                trace.extend(reply.trace)
                if reply.ok or reply.error_code == "deadline_exceeded":
                    return reply.model_copy(update={"trace": trace})
                # The peer refused (leaving, too large) or nobody beyond it could answer: try our next candidate.
                visited.extend(dict.fromkeys(h.agent for h in reply.trace if h.agent not in visited))
            peer = self._next_hop(q, visited, horizon)
        if deadline <= time.monotonic():
            return _failure(q, "deadline_exceeded", f"deadline passed at {self.name}", trace)
        # Nobody left to ask: the agent holding the query answers anyway (unless its backend just failed).
        forced = None if response is None and not undecided else await self._respond(q, deadline, must_answer=True, trace=trace, relay=relay)
        if forced is not None:
            return await self._answered(q, forced, trace, forced=True, relay=relay)
        self.counters.failed += 1
        if deadline <= time.monotonic():  # our own answer ran into the deadline: that is what failed, not a lack of agents
            return _failure(q, "deadline_exceeded", f"deadline passed while {self.name} answered", trace)
        return _failure(q, "no_capable_agent", f"no agent could answer (last holder {self.name})", trace)

    def _onward(self, q: Query, visited: list[str], remaining: float, horizon: float) -> Query:
        """`q` as this agent passes it on (with the time left to its soft target, when it has one). The peer's
        budget keeps the reply's way back here out (`hop_overhead_s`, but never more than half of what is left):
        a peer that used all of our time would answer after we stopped waiting, and the query would be lost."""
        back = min(self.config.hop_overhead_s, remaining / 2)
        target = None if q.target_s is None else max(0.0, horizon - time.monotonic() - back)
        return q.model_copy(update={"budget_s": remaining - back, "target_s": target, "visited": list(visited), "sender": self.name,
                                    "digest": self.membership.digest()})

    def _speculation(self, q: Query, peer: str | None, visited: list[str], deadline: float, horizon: float) -> Speculation | None:
        """The early pass-on the policy may ask for while it generates (swarm.speculation); None when it cannot."""
        if peer is None or q.stream_to or getattr(self.policy, "speculate", 0.0) <= 0:
            return None

        def send() -> Awaitable[Result]:
            remaining = deadline - time.monotonic()
            return self._forward(peer, self._onward(q, visited, remaining, horizon), remaining)

        return Speculation(self.name, peer, send, self.counters.speculation)

    def _blind_hop(self, q: Query, visited: list[str], horizon: float) -> str | None:
        """With no time to decide and pass the query on: the peer to pass it to unjudged, when one that can
        answer in time is worth more answering it than this agent is (swarm.latency.blind_pass); None: answer here."""
        if len(visited) >= q.max_hops:
            return None
        from swarm.assess.curves import at

        me, candidates, remaining = self.membership.self_entry, self.table.candidates(visited), horizon - time.monotonic()
        times, hop = self.latency.peers.get, self.config.hop_overhead_s
        worth = handed_value(candidates, remaining, times, hop, lambda p: forced_value(self.membership.get(p), q.alpha),
                             lambda p: None if (c := self._curve_of(p, self._region(q))) is None else at(c, q.alpha))
        return blind_pass(candidates, remaining, times, hop, worth, forced_value(me, q.alpha))

    def _next_hop(self, q: Query, visited: list[str], horizon: float, deciding: bool = False, quick: bool = False,
                  slow: bool = False) -> str | None:
        """The next hop that fits the time left until `horizon` (after our own decision, when `deciding`: a
        decision on the prefill alone, when `quick`; a slow one, one that generates and judges a reply, when `slow`); None when
        none does, and the agent answers itself (swarm.latency)."""
        if len(visited) >= q.max_hops:
            return None
        remaining = horizon - time.monotonic()
        mine = self.latency.own
        own = (mine.quick_timing() if quick else mine.judged_timing() if slow else mine.timing()) if deciding else None
        if quick and own is None:  # a decision on the prefill alone is never assumed fast before it was measured
            return None
        peer = next_hop_within(self.table.candidates(visited), remaining, self.latency.peers.get, self.config.hop_overhead_s,
                               own, lambda p: forced_value(self.membership.get(p), q.alpha), self._rank(q))
        if peer is None and not deciding and self.table.next_hop(visited) is not None:  # (before deciding, _route has other ways)
            log.info("no peer fits the time left: answering here", remaining_s=round(remaining, 3), query_id=q.query_id, agent=self.name)
        return peer

    def _rank(self, q: Query) -> Callable[[str], float | None] | None:
        """With the next hop "best": what passing `q` to a peer is worth, the value its curve advertises for `q`'s
        region and alpha (None: it advertises none yet); None with the next hop "next" (the cascade's order)."""
        if self.config.next_hop != "best":
            return None
        from swarm.assess.curves import at

        region = self._region(q)
        return lambda p: None if (c := self._curve_of(p, region)) is None else at(c, q.alpha)

    async def _respond(self, q: Query, deadline: float, must_answer: bool, trace: list[Hop], peer: str | None = None,
                       relay: TextRelay | None = None, uncertain: Callable[[], None] | None = None, quick: bool = False):
        """Ask the policy; on a backend failure record it in the trace and return None (_UNDECIDED when it
        was the decision's time limit that stopped it). An agent that
        could still pass the query on spends at most `generation_share` of the time left (or twice its usual
        decision time, when that is more and its next hop still fits: swarm.latency.decision_limit), and none
        while its circuit breaker is open (its backend failed over and over: a hung or broken model)."""
        if not must_answer and not self.breaker.allows():
            trace.append(Hop(agent=self.name, decision="error", detail=f"circuit open: the backend failed {self.breaker.consecutive} times in a row"))
            return None
        now = time.monotonic()
        peer_times = self.latency.peers.get(peer) if peer is not None else None
        limit = deadline if must_answer else now + decision_limit(max(0.0, deadline - now), self.config.generation_share, self.latency.own.timing(),
                                                                  peer_times, self.config.hop_overhead_s)
        committed = False
        try:
            async with asyncio.timeout_at(_loop_time(limit)) as timer:
                loop = asyncio.get_running_loop()

                def commit() -> None:  # the decision is over: what is left is its answer, which has the whole deadline
                    nonlocal committed
                    committed = True
                    with contextlib.suppress(RuntimeError):  # the timeout already fired, or the call already ended
                        timer.reschedule(_loop_time(deadline))

                r = await self.policy.respond(Ask(q.query_id, q.text, q.alpha, must_answer, self.membership.self_entry.cost,
                                                  self._curve_of(peer, self._region(q)), relay, uncertain,
                                                  None if must_answer else lambda: loop.call_soon_threadsafe(commit), quick), self.backend)
            # a quick decision's times are kept (and advertised) only by an agent that makes them (`Ask.quick`)
            quick_kind = getattr(self.policy, "decides_quicker", False)
            self.latency.own.record(time.monotonic() - now, r.rejected, on_prefill=quick_kind and r.tokens_out == 0 and r.tokens_in > 0)
        except TimeoutError:
            if limit - now >= twice_usual(self.latency.own.timing()):  # a budget too short for its usual time is not the backend's fault
                self._backend_failed()
            if committed:
                trace.append(Hop(agent=self.name, decision="error", detail="deadline passed while generating"))
                return None
            detail = "deadline passed while generating" if must_answer else f"no decision within {self.config.generation_share:.0%} of the time left (or twice its usual time)"
            trace.append(Hop(agent=self.name, decision="error", detail=detail))
            return None if must_answer else _UNDECIDED
        except BackendError as exc:
            log.warning("backend failed", error=str(exc), fatal=exc.fatal)
            trace.append(Hop(agent=self.name, decision="error", detail=str(exc)[:400]))
            if exc.fatal and self.membership.self_entry.state == "alive":
                self._spawn(self.leave())  # it will not serve again: leave cleanly rather than fail every query
            else:
                self._backend_failed()
            return None
        except Exception as exc:  # a broken backend must not lose the query: it moves on
            log.warning("backend failed", error=repr(exc))
            trace.append(Hop(agent=self.name, decision="error", detail=repr(exc)[:200]))
            self._backend_failed()
            return None
        self.breaker.success()
        if r.rejected:
            trace.append(Hop(agent=self.name, decision="reject", seconds=r.seconds, tokens_in=r.tokens_in, tokens_out=r.tokens_out,
                             detail="no time to judge a reply: decided on the prefill alone" if quick else ""))
        return r

    def _backend_failed(self) -> None:
        if self.breaker.failure():
            log.warning("circuit breaker open: passing queries on", failures=self.breaker.consecutive, cooldown_s=self.breaker.cooldown_s)

    # -- value curves (swarm.assess.curves) ---------------------------------------------------
    def _curve_of(self, peer: str | None, region: int | None = None) -> tuple[float, ...] | None:
        """The value curve `peer` advertises (for `region`, when it advertises one per region of the map we
        hold); None when it advertises none, or one not on our grid."""
        from swarm.assess.curves import GRID

        m = self.membership.get(peer) if peer is not None else None
        if m is None:
            return None
        n = len(GRID)
        if region is not None and self._advertises_regions(m):
            return tuple(m.region_curves[region * n:(region + 1) * n])
        return tuple(m.curve) if len(m.curve) == n else None

    def _advertises_regions(self, m: Member) -> bool:
        """Whether `m` advertises a curve in each region of the region map we hold."""
        from swarm.assess.curves import GRID

        regions = self.config.regions
        return regions is not None and m.regions == regions.digest and len(m.region_curves) == regions.k * len(GRID)

    def advertise_curve(self) -> bool:
        """Recompute our value curve (and, under a region map, our curve per region) from the next agent's
        (backward induction) and advertise it when it changed (a fresh incarnation spreads it); True when it
        changed. Called whenever the view changes, so curves re-settle after a join, a leave or a death."""
        me = self.membership.self_entry
        if me.state != "alive":
            return False
        nxt = self.table.next_hop([self.name])
        heirs = self._heirs()
        successor = self._passing_curve(heirs)
        curve = self.policy.curve(me.cost, successor) if nxt is None or successor is not None else None
        new = [round(v, 4) for v in curve] if curve else []
        alone = curve if nxt is None else self.policy.curve(me.cost, None)  # answering everything: its value at alpha 0 is its accuracy
        accuracy = round(min(1.0, max(0.0, alone[0])), 4) if alone else None
        regions, by_region = self._advertised_regions(heirs)
        if new == me.curve and accuracy == me.accuracy and (regions, by_region) == (me.regions, me.region_curves):
            return False
        self.membership.set_self(curve=new, accuracy=accuracy, regions=regions, region_curves=by_region)
        log.info("value curve advertised", agent=self.name, next=nxt, curve_points=len(new), region_points=len(by_region))
        return True

    def _heirs(self) -> list[str]:
        """The agents a query this agent rejects may go to: the next one (next hop "next"), or every stronger one ("best")."""
        if self.config.next_hop == "best":
            return self.table.candidates([self.name])
        nxt = self.table.next_hop([self.name])
        return [] if nxt is None else [nxt]

    def _passing_curve(self, heirs: list[str], region: int | None = None) -> tuple[float, ...] | None:
        """What passing a query on is worth (in `region`): the pointwise best of the curves `heirs` advertise
        there (a peer without curves per region of our map: its one curve); None when none advertises one yet."""
        from swarm.assess.curves import pointwise_best

        curves = [c for p in heirs if (c := self._curve_of(p, region)) is not None]
        if len(curves) <= 1:
            return curves[0] if curves else None
        return tuple(pointwise_best(curves))

    def _advertised_regions(self, heirs: list[str]) -> tuple[str, list[float]]:
        """Our map's digest and our curve per region of it, flat (empty: none), given what passing a query on
        is worth in each region (`_passing_curve`)."""
        regions = self.config.regions
        if regions is None:
            return "", []
        following = None
        if heirs:
            following = [self._passing_curve(heirs, r) for r in range(regions.k)]
            if following[0] is None:  # the agents after us value nothing yet: neither do we
                return regions.digest, []
            following = [list(c) for c in following]
        curves = self.policy.region_curves_under(self.membership.self_entry.cost, following, regions)
        return regions.digest, [] if curves is None else [round(v, 4) for c in curves for v in c]

    async def _answered(self, q: Query, r, trace: list[Hop], forced: bool, relay: TextRelay | None = None) -> Result:
        decision = "forced" if forced else "answer"
        self.counters.forced += forced
        self.counters.answered += 1
        self.answered_ids.append(q.query_id)
        self.observer.decided(decision)
        trace.append(Hop(agent=self.name, decision=decision, seconds=r.seconds, tokens_in=r.tokens_in, tokens_out=r.tokens_out,
                         detail=f"flagged: {r.flag}" if r.flag else ""))
        log.debug("answered", decision=decision, flag=r.flag or None)
        if relay is not None:  # every piece reaches the client before the Result does
            await relay.finish(r.text)
        return Result(query_id=q.query_id, ok=True, text=r.text, agent=self.name, cost=self.membership.self_entry.cost, trace=trace)

    async def _forward(self, peer: str, q: Query, timeout: float) -> Result:
        """Send, but give up as soon as the peer is judged dead (`_abandon` cancels the pending sends
        to it), so a query waiting on a hung peer is routed around. A reply must answer this query.
        When we stop waiting without a reply (deadline, judged dead, cancelled ourselves) the peer is
        told to cancel, in case it still works on it: it may only have been slow or cut off."""
        message = encode(q)  # first: an Oversize sends (and counts) nothing
        self.counters.forwarded += 1
        send = asyncio.ensure_future(self.transport.send(peer, message))
        pending = self._sending.setdefault(peer, set())
        pending.add(send)
        replied = False
        try:
            async with asyncio.timeout(timeout):
                data = await send
            replied = True
            reply = expect(data, Result)
            if reply.query_id != q.query_id:
                raise ProtocolError("mismatched_reply", f"{peer} answered query {reply.query_id[:64]!r} instead of {q.query_id!r}")
            self.latency.peers.heard(reply.timings)
            self.counters.forwards_to[peer] += 1
            return reply
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if send.cancelled() and not (current and current.cancelling()):
                raise PeerUnreachable(peer, "judged dead while the query was with it", permanent=True) from None
            raise
        except PeerUnreachable as exc:
            replied = exc.permanent  # gone for good: nobody there to tell
            raise
        finally:
            pending.discard(send)
            if not replied:
                send.cancel()
                self._spawn(self.upkeep.send_quietly(peer, encode(Cancel(query_id=q.query_id, sender=self.name))))

    # -- status --------------------------------------------------------------------------------
    async def _on_status(self, _: StatusRequest) -> Status:
        me, c, now = self.membership.self_entry, self.counters, time.monotonic()
        return Status(
            name=me.name, state=me.state, cost=me.cost, incarnation=me.incarnation, in_flight=c.in_flight,
            received=c.received, answered=c.answered, rejected=c.rejected, forced=c.forced, failed=c.failed,
            forwarded=c.forwarded, p50_s=quantile(c.latencies, 0.5), p95_s=quantile(c.latencies, 0.95),
            members=self.membership.view(), duplicates=c.duplicates, cancelled=c.cancelled,
            forwards_to=[PeerCount(peer=p, count=n) for p, n in c.forwards_to.most_common(1024)],
            recent=[_recent(r, seconds, now - t) for t, r, seconds in self.recent], changes=self.membership.changes(),
            timing=self.latency.own.timing(), speculation=c.speculation.model_copy(),
        )

    def _abandon(self, peer: str) -> None:
        """`peer` died: stop waiting on the queries sent there (a leaving agent drains them instead)."""
        for send in self._sending.pop(peer, ()):
            send.cancel()

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _recent(r: Result, seconds: float, age_s: float) -> RecentQuery:
    trace = [h.model_copy(update={"detail": ""}) for h in r.trace]
    return RecentQuery(query_id=r.query_id, ok=r.ok, agent=r.agent, error_code=r.error_code, seconds=seconds, age_s=age_s, trace=trace)


def _failure(q: Query, code: str, message: str, trace: list[Hop]) -> Result:
    return Result(query_id=q.query_id, ok=False, error_code=code, error=message, trace=trace)


def _loop_time(monotonic_deadline: float) -> float:
    # asyncio's loop clock is time.monotonic on every platform we run on; convert defensively.
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())
