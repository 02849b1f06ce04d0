"""A swarm of agent actors on Ray, and the handle that launches, asks and changes it.

The handle is a client, not a router: it asks through an `EntryClient` (the one shared with the
gateway and `MemorySwarm`) over the Ray transport, and manages membership through the agents'
actors (start, leave, kill, status).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import ray
import structlog
from ray.exceptions import GetTimeoutError, RayActorError, RayError

from swarm.client import Answer
from swarm.cluster.actor import create_actor
from swarm.cluster.connect import actor_names, connect, namespace_of
from swarm.cluster.transport import RayTransport
from swarm.entry import Attempt, EntryClient, LoopThread, Outcome, QueryLimits, unexpected
from swarm.errors import AgentExists, PeerUnreachable, QueryError, SwarmError, UnknownAgent
from swarm.logging import configure_logging
from swarm.protocol import Gossip, Member, Query, Status, StatusRequest, encode, expect
from swarm.topology import AgentSpec, Topology, load_agent_spec, load_topology

log = structlog.get_logger("swarm.api")


@dataclass(frozen=True)
class AgentStatus:
    name: str
    state: str  # alive, suspect, dead, left, or unreachable when it did not answer the status call
    cost: float
    in_flight: int = 0
    received: int = 0
    answered: int = 0
    rejected: int = 0
    forced: int = 0
    failed: int = 0
    p50_s: float = 0.0
    p95_s: float = 0.0
    decide_s: float = 0.0  # its own median time to a rejection, and p95 time to an answer (what it tells peers; 0: none yet)
    answer_s: float = 0.0
    speculated: int = 0  # queries it passed on while generating, and of those the copies it cancelled (it answered)
    speculation_cancelled: int = 0

    @classmethod
    def of(cls, s: Status) -> AgentStatus:
        timing, spec = s.timing, s.speculation
        return cls(**s.model_dump(include={"name", "state", "cost", "in_flight", "received", "answered", "rejected", "forced",
                                           "failed", "p50_s", "p95_s"}),
                   decide_s=timing.decide_s if timing else 0.0, answer_s=timing.answer_s if timing else 0.0,
                   speculated=spec.started if spec else 0, speculation_cancelled=spec.cancelled if spec else 0)

    @property
    def answer_rate(self) -> float:
        decided = self.answered + self.rejected
        return self.answered / decided if decided else 0.0


def launch(topology: str | Path | Topology, address: str | None = None, name: str | None = None, allow_partial: bool = False,
           agent_output: bool = True) -> Swarm:
    """Start every agent of a topology as a detached Ray actor and wait until all are up.

    `address`: a Ray cluster ("auto", "ray://host:port"); None joins the local one that is
    running, or starts one (a stale address file of a stopped cluster is ignored).
    `agent_output`: show what the agents' processes print on this terminal (Ray's log_to_driver)
    when this call connects to Ray.
    `name`: overrides the topology's swarm name (the Ray namespace is derived from it).
    `allow_partial`: an agent that fails to start (missing model, engine error) is dropped and
    reported in `Swarm.failed` instead of failing the launch; the others route around it.
    """
    configure_logging()
    topo = topology if isinstance(topology, Topology) else load_topology(topology)
    if name is not None:
        topo = topo.model_copy(update={"name": name})
    _prepare_models(topo.agents, topo)
    namespace = namespace_of(topo.name)
    connect(address, namespace, log_to_driver=agent_output)
    existing = actor_names(namespace)
    if existing:
        raise SwarmError(f"swarm {topo.name!r} is already running (agents: {', '.join(sorted(existing))}); attach to it or shut it down first")
    swarm = Swarm(topo.name, topo)
    initial = [_member_dict(spec, topo) for spec in topo.agents]
    try:
        for spec in topo.agents:
            swarm._adopt(spec.name, create_actor(topo, spec, initial))
        if topo.defaults.start == "sequential":
            for n, h in swarm._handles.items():
                swarm.failed.update(swarm._await_started({n: h.start.remote([])}, allow_partial))
        else:
            swarm.failed = swarm._await_started({n: h.start.remote([]) for n, h in swarm._handles.items()}, allow_partial)
        if len(swarm.failed) == len(topo.agents):
            raise SwarmError(f"no agent of swarm {topo.name!r} started: " + "; ".join(swarm.failed.values()))
    except BaseException:
        swarm.shutdown()
        raise
    swarm._client.learn(Member.model_validate(m) for m in initial)
    if swarm.failed:
        swarm._bury({n: m for n, m in zip([s.name for s in topo.agents], initial, strict=True) if n in swarm.failed})
    swarm._refresh_view()
    log.info("swarm up", swarm=topo.name, agents=len(topo.agents))
    return swarm


def _prepare_models(agents: list[AgentSpec], topo: Topology) -> None:
    """Build the testbed ladders and fit the testbed probes these agents name, here, before any agent
    starts: the build shows its progress on this terminal, and agents then find them in the cache."""
    from swarm.testbed.models import prepare
    from swarm.training.testbed_probes import prepare_probes

    prepare([str(getattr(a.backend, "model", "")) for a in agents])
    regions = topo.region_map()
    if regions is not None:  # every agent embeds queries with its encoder: missing, the launch fails here, saying what to install
        from swarm.assess.encoder import require_encoder

        require_encoder()
    prepare_probes([str(getattr(topo.policy_for(a), "path", "")) for a in agents], regions)


def attach(name: str, address: str | None = "auto") -> Swarm:
    """Connect to a swarm that another process launched, by its name."""
    configure_logging()
    namespace = namespace_of(name)
    connect(address, namespace)
    names = actor_names(namespace)
    if not names:
        raise SwarmError(f"no swarm named {name!r} is running on this Ray cluster")
    handles = {n: ray.get_actor(n, namespace=namespace) for n in names}
    swarm = Swarm(name, _described_topology(name, handles))
    for agent, handle in handles.items():
        swarm._adopt(agent, handle)
    if not swarm._refresh_view():
        raise SwarmError(f"swarm {name!r}: none of its agents answered ({', '.join(sorted(names))})")
    return swarm


def _described_topology(name: str, handles: dict[str, ray.actor.ActorHandle]) -> Topology:
    """The swarm's topology, as the first of its agents that answers describes it (blocking: a driver's)."""
    def describe(handle: ray.actor.ActorHandle) -> dict | BaseException:
        try:
            return ray.get(handle.describe.remote(), timeout=10)
        except RayError as exc:
            return exc

    return _first_topology(name, ((agent, describe(h)) for agent, h in handles.items()))


async def _described_topology_async(name: str, handles: dict[str, ray.actor.ActorHandle]) -> Topology:
    """The same, awaited: the gateway is an async actor, where a blocking ray.get (even in a thread) is not allowed."""
    answers = await asyncio.gather(*(asyncio.wait_for(h.describe.remote(), 10) for h in handles.values()), return_exceptions=True)
    return _first_topology(name, zip(handles, answers, strict=True))


def _first_topology(name: str, answers: Iterable[tuple[str, dict | BaseException]]) -> Topology:
    tried = []
    for agent, described in answers:
        tried.append(agent)
        if not isinstance(described, BaseException):
            return Topology.model_validate_json(described["topology"])
        log.warning("agent did not describe itself", agent=agent, error=type(described).__name__)
    raise SwarmError(f"swarm {name!r}: none of its agents answered ({', '.join(sorted(tried))})")


async def open_entry(name: str) -> EntryClient:
    """An entry client for the running swarm `name` (Ray connected), for an asyncio front end (the gateway)."""
    namespace = namespace_of(name)
    names = await asyncio.to_thread(actor_names, namespace)
    if not names:
        raise SwarmError(f"no swarm named {name!r} is running on this Ray cluster")
    handles = {}
    for agent in names:
        try:
            handles[agent] = await asyncio.to_thread(ray.get_actor, agent, namespace=namespace)
        except ValueError:
            continue
    topology = await _described_topology_async(name, handles)
    client = EntryClient(name, RayTransport(namespace, handles), QueryLimits.of(topology.defaults))
    if not await client.refresh(also=sorted(handles)):
        raise SwarmError(f"swarm {name!r}: none of its agents answered ({', '.join(sorted(handles))})")
    return client


class Swarm:
    """A handle on a running swarm. Create with `launch` or `attach`; `with launch(...) as s:` shuts it down at the end."""

    def __init__(self, name: str, topology: Topology) -> None:
        self.name = name
        self.topology = topology
        self.namespace = namespace_of(name)
        self._handles: dict[str, ray.actor.ActorHandle] = {}
        self._transport = RayTransport(self.namespace)
        self._client = EntryClient(name, self._transport, QueryLimits.of(topology.defaults))
        self._loop = LoopThread(f"swarm-{name}")
        weakref.finalize(self, self._loop.close)  # a handle dropped without shutdown() leaves no thread behind
        self._client.abandon = self._abandon  # the sync face has no running loop of its own: cancels go out on the loop thread
        self.failed: dict[str, str] = {}  # agents that did not start: name -> why
        self._closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- asking ----------------------------------------------------------------------------------
    def ask(self, text: str, scenario: str | float | None = None, alpha: float | None = None, deadline_s: float | None = None,
            target_latency_s: float | None = None) -> Answer:
        """Route one query through the swarm. Raises QueryError (NoCapableAgent, DeadlineExceeded) when unanswerable.
        `deadline_s` is the hard limit (default: the topology's); `target_latency_s` a soft one: agents skip
        peers that would miss it, or answer themselves, but a query is never failed for it."""
        [outcome] = self._drive([self._client.query(text, scenario, alpha, deadline_s, target_latency_s=target_latency_s)], 1, None)
        if isinstance(outcome, QueryError):
            raise outcome
        return outcome

    def ask_many(
        self, texts: Iterable[str], scenario: str | float | None = None, alpha: float | None = None,
        deadline_s: float | None = None, concurrency: int = 64, entry: str | None = None, must_answer: bool = False,
        target_latency_s: float | None = None,
    ) -> list[Answer | QueryError]:
        """Route many queries with at most `concurrency` in flight. Each slot holds an Answer or the
        QueryError that explains why that query could not be answered; none is ever dropped.

        `entry` hands every query to that agent only (no retry elsewhere if it is gone);
        `must_answer` gives each query a one-hop budget, so its entry cannot forward it and answers
        itself. Together they address one agent directly, as a centralized router would."""
        if entry is not None and entry not in self.entries():
            raise SwarmError(f"swarm {self.name!r} has no live agent named {entry!r} (agents: {', '.join(sorted(self.entries()))})")
        queries = [self._client.query(t, scenario, alpha, deadline_s, must_answer, target_latency_s) for t in texts]
        return self._drive(queries, concurrency, entry)

    async def ask_async(self, text: str, scenario: str | float | None = None, alpha: float | None = None, deadline_s: float | None = None,
                        target_latency_s: float | None = None, entry: str | None = None, must_answer: bool = False) -> Answer:
        """`ask` for asyncio callers (a web front end): awaits the entry agent's reply without blocking the loop."""
        self._check_open()
        return await self._client.ask(text, scenario, alpha, deadline_s, entry, must_answer, target_latency_s)

    def ask_stream(self, text: str, scenario: str | float | None = None, alpha: float | None = None,
                   deadline_s: float | None = None, target_latency_s: float | None = None) -> Iterator[str | Answer]:
        """`ask`, streamed: yields the answer's text piece by piece as the answering agent generates it,
        then the `Answer` (whole text, routing trace) as the last item. Raises QueryError as `ask` does.
        Leaving the loop early (break, an exception) cancels the query along its path."""
        self._check_open()
        return self._loop.iterate(self._client.ask_stream(text, scenario, alpha, deadline_s, target_latency_s=target_latency_s))

    def ask_stream_async(self, text: str, scenario: str | float | None = None, alpha: float | None = None,
                         deadline_s: float | None = None, target_latency_s: float | None = None, entry: str | None = None,
                         must_answer: bool = False) -> AsyncIterator[str | Answer]:
        """`ask_stream` for asyncio callers: `async for item in swarm.ask_stream_async(...)`. `entry` and
        `must_answer` as in `ask_many`: together they ask one agent directly."""
        self._check_open()
        return self._client.ask_stream(text, scenario, alpha, deadline_s, entry, target_latency_s, must_answer)

    def _check_open(self) -> None:
        if self._closed:
            raise SwarmError(f"swarm {self.name!r}: this handle is closed (shutdown() was called)")

    def _drive(self, queries: list[Query], concurrency: int, entry: str | None) -> list[Answer | QueryError]:
        """The entry client's `attempts` for each query, at most `concurrency` at a time, driven by
        blocking on Ray (`ray.wait` over every reply awaited), each given up on at its own deadline."""
        self._check_open()
        if self._client.claim_refresh():  # in the background, on the loop thread: never on a query's clock
            self._loop.submit(self._client.refresh_quietly())
        transport: RayTransport = self._client.transport  # type: ignore[assignment] - or one with its submit and reply
        outcomes: list[Answer | QueryError | None] = [None] * len(queries)
        pending: dict[ray.ObjectRef, tuple[int, Generator[Attempt, Outcome, Answer], str, float]] = {}

        def advance(i: int, steps: Generator[Attempt, Outcome, Answer], outcome: Outcome) -> None:
            while True:
                try:
                    at, data, wait_s = steps.send(outcome)
                except StopIteration as done:
                    outcomes[i] = done.value
                    return
                except QueryError as exc:
                    outcomes[i] = exc
                    return
                except Exception as exc:  # noqa: BLE001 - one query's failure never drops the batch
                    outcomes[i] = unexpected(queries[i], exc)
                    return
                sent = transport.submit(at, data)
                if not isinstance(sent, PeerUnreachable):
                    pending[sent] = (i, steps, at, time.monotonic() + wait_s)
                    return
                outcome = sent

        waiting = list(range(len(queries)))[::-1]
        while waiting or pending:
            while waiting and len(pending) < max(1, concurrency):
                i = waiting.pop()
                advance(i, self._client.attempts(queries[i], entry), None)
            if not pending:
                continue
            first_deadline = min(d for *_, d in pending.values())
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, first_deadline - time.monotonic()))
            for ref in ready:
                i, steps, at, _ = pending.pop(ref)
                advance(i, steps, transport.reply(ref, at))
            now = time.monotonic()
            for ref, (i, steps, _, deadline) in list(pending.items()):
                if now >= deadline:
                    del pending[ref]
                    advance(i, steps, TimeoutError())
        return outcomes  # type: ignore[return-value]

    # -- membership ------------------------------------------------------------------------------
    def entries(self) -> list[str]:
        """Live agents, cheapest first: where queries enter (the view refreshed first when it is stale)."""
        if self._closed:
            return []
        if self._client.stale():
            self._refresh_view()
        return self._client.entries()

    def add_agent(self, spec: AgentSpec | dict | str | Path, seeds: list[str] | None = None) -> str:
        """Start one more agent; it joins through `seeds` (default: the topology's seeds, else every live agent)."""
        spec = spec if isinstance(spec, AgentSpec) else load_agent_spec(spec)
        self._refresh_view()
        live = set(self.entries())
        if spec.name in live:
            raise AgentExists(f"swarm {self.name!r} already has a live agent named {spec.name!r}")
        seeds = seeds or [s for s in self.topology.seeds if s in live] or self.entries()
        _prepare_models([spec], self.topology)
        handle = create_actor(self.topology, spec, [])
        try:
            self._await_started({spec.name: handle.start.remote(seeds)})
        except BaseException:
            ray.kill(handle)
            raise
        self._adopt(spec.name, handle)
        self._refresh_view(first=[spec.name])  # the newcomer's own view holds it for sure
        log.info("agent added", swarm=self.name, agent=spec.name, seeds=seeds)
        return spec.name

    def remove_agent(self, name: str, timeout_s: float | None = None) -> int:
        """Graceful: the agent stops taking queries, tells its peers, finishes its in-flight work, then exits.
        Returns how many queries it still held when it was stopped: 0 when it drained (-1: it never said)."""
        handle = self._handle(name)
        timeout = timeout_s or self.topology.defaults.drain_timeout_s + 10
        try:
            undrained = ray.get(handle.leave.remote(), timeout=timeout)
        except (RayActorError, GetTimeoutError) as exc:
            log.warning("agent did not leave cleanly", agent=name, error=type(exc).__name__)
            undrained = -1
        ray.kill(handle)
        self._forget(name, "left")
        if undrained:
            log.warning("agent removed before draining", agent=name, in_flight=undrained)
        return undrained

    def kill_agent(self, name: str) -> None:
        """Crash an agent with no goodbye (for failure experiments): peers find out by themselves."""
        ray.kill(self._handle(name))
        self._forget(name, "dead")

    def status(self) -> list[AgentStatus]:
        """Every agent's state, load and decisions, including agents other processes added."""
        statuses = self.statuses()
        costs = {m.name: m.cost for m in self._client.known(("alive", "suspect", "left", "dead"))}
        out = [AgentStatus(name, "unreachable", costs.get(name, 0.0)) if s is None
               else AgentStatus.of(s) for name, s in statuses.items()]
        return sorted(out, key=lambda s: (s.cost, s.name))

    def statuses(self, timeout_s: float = 10) -> dict[str, Status | None]:
        """Each live agent's own Status (protocol 1.3: with its forwards per peer, its last queries, the
        membership changes it saw), asked of all at once; None for one that did not answer in `timeout_s`."""
        self._refresh_view()
        gone = {m.name for m in self._client.known(("left", "dead"))}
        for name in gone & set(self._handles):  # left or died, whoever removed it
            self._handles.pop(name)
        names = sorted({m.name for m in self._client.known(("alive", "suspect"))} | set(self._handles))
        refs = {}
        for name in names:
            try:
                refs[name] = self._handle(name).control.remote(encode(StatusRequest()))
            except SwarmError:
                continue
        ready = set(ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)[0]) if refs else set()
        out: dict[str, Status | None] = {}
        for name, ref in refs.items():
            try:
                out[name] = expect(ray.get(ref), Status) if ref in ready else None
            except (RayError, SwarmError):
                out[name] = None
                continue
            self._client.learn(out[name].members)
        return out

    def agent_spec(self, name: str, timeout_s: float = 10) -> AgentSpec:
        """The spec an agent was started from (its backend and model), as the agent describes it."""
        return AgentSpec.model_validate_json(ray.get(self._handle(name).describe.remote(), timeout=timeout_s)["agent"])

    def detach(self) -> None:
        """Let go of the swarm without stopping it: this handle's thread ends, the agents run on."""
        self._loop.close()
        self._closed = True

    def shutdown(self) -> None:
        """Stop every agent of this swarm (including ones other processes added)."""
        for name in actor_names(self.namespace) | set(self._handles):
            try:
                ray.kill(self._handles.get(name) or ray.get_actor(name, namespace=self.namespace))
            except (ValueError, RayError):
                pass
        for name in self._handles:
            self._transport.forget(name)
        self._handles.clear()
        self._loop.close()
        self._closed = True

    # -- internals -------------------------------------------------------------------------------
    def _abandon(self, at: str, data: bytes) -> None:
        try:
            self._loop.submit(self._client.send_quietly(at, data))
        except SwarmError:
            pass  # closed: nothing of ours is waiting any more

    def _adopt(self, name: str, handle: ray.actor.ActorHandle) -> None:
        self._handles[name] = handle
        self._transport.know(name, handle)

    def _forget(self, name: str, state: str) -> None:
        self._handles.pop(name, None)
        self._transport.forget(name)
        self._client.mark(name, state, certain=True)

    def _handle(self, name: str) -> ray.actor.ActorHandle:
        if name not in self._handles:
            try:
                self._adopt(name, ray.get_actor(name, namespace=self.namespace))
            except ValueError:
                raise UnknownAgent(f"swarm {self.name!r} has no agent named {name!r} (agents: {', '.join(sorted(self._handles))})") from None
        return self._handles[name]

    def _refresh_view(self, first: list[str] = ()) -> bool:
        """Learn membership now from the first agent that answers (queries refresh it in the background)."""
        return self._loop.run(self._client.refresh(first=first, also=sorted(self._handles)))

    def _await_started(self, refs: dict[str, ray.ObjectRef], allow_partial: bool = False) -> dict[str, str]:
        """Wait for agents to load and announce themselves, logging each; returns the failures."""
        by_ref = {ref: name for name, ref in refs.items()}
        pending, failed = list(by_ref), {}
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            name = by_ref[ready[0]]
            try:
                seconds = ray.get(ready[0])
            except RayError as exc:
                why = f"agent {name!r} failed to start: {_root_cause(exc)}"
                if not allow_partial:
                    raise SwarmError(why) from None
                log.error("agent failed to start", agent=name, error=why)
                failed[name] = why
                continue
            log.info("agent ready", agent=name, seconds=round(seconds, 2), remaining=len(pending))
        return failed

    def _bury(self, dead: dict[str, dict]) -> None:
        """Agents that never started: stop their actors and tell the others they are dead."""
        news = [Member.model_validate({**m, "state": "dead"}) for m in dead.values()]
        for name in dead:
            ray.kill(self._handles[name])
            self._forget(name, "dead")
        ray.get([h.control.remote(encode(Gossip(digest="", updates=news))) for h in self._handles.values()])
        self._client.learn(news)


def _member_dict(spec: AgentSpec, topo: Topology) -> dict:
    from swarm.build import member_for

    return member_for(spec, topo).model_dump()


def _root_cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    return f"{type(cause).__name__}: {cause}".splitlines()[0][:300]
