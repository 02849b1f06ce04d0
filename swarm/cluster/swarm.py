"""The Python API: launch a swarm onto Ray, ask it questions, change its membership while it serves.

The driver is a client, not a router: it hands each query to an entry agent (the cheapest live
one it knows) and waits for the single Result that flows back. If the entry itself is dead or
leaving, the driver retries at the next entry; everything else happens between the agents.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import ray
import structlog
from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError, RayActorError, RayError

from swarm.client import Answer, new_query, to_answer
from swarm.errors import DeadlineExceeded, NoCapableAgent, QueryError, SwarmError
from swarm.logging import configure_logging, logging_settings
from swarm.prompts import scenario_alpha
from swarm.protocol import Gossip, Member, Query, Result, Status, StatusRequest, View, encode, expect
from swarm.topology import AgentSpec, Topology, load_agent_spec, load_topology
from swarm.transport.ray import AgentActor, namespace_of

log = structlog.get_logger("swarm.api")
_FULL_VIEW = encode(Gossip(digest="", full=True))
_GRACE_S = 5.0  # how long past a query's deadline the client waits before giving up on its entry
_VIEW_TTL_S = 2.0


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

    @property
    def answer_rate(self) -> float:
        decided = self.answered + self.rejected
        return self.answered / decided if decided else 0.0


def _connect(address: str | None, namespace: str, log_to_driver: bool = True) -> None:
    if ray.is_initialized():
        return
    address = _resolve(address)
    _probe(address)
    # A new local cluster gets Ray's default token authentication; Ray announces that default on every
    # start, a banner our users cannot act on (RAY_AUTH_MODE=disabled would opt out).
    banner = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = banner.level
    banner.setLevel(logging.ERROR if address == "local" else level)
    try:
        ray.init(address=address, namespace=namespace, include_dashboard=False, log_to_driver=log_to_driver, configure_logging=False)
    except ConnectionError as exc:
        raise SwarmError(f"Ray is not reachable at {address!r}: {str(exc).splitlines()[0]}") from None
    finally:
        banner.setLevel(level)


def _resolve(address: str | None) -> str | None:
    """The address to hand to ray.init. None and "auto" mean the cluster that RAY_ADDRESS or Ray's
    `ray_current_cluster` file names; that file outlives a cluster stopped without `ray stop`, and
    ray.init would then retry the dead address for minutes. So a named cluster that does not
    listen is, for None, ignored (a fresh local cluster starts) and, for "auto", an error."""
    if address not in (None, "auto"):
        return address
    named = _named_cluster()
    if named is None:
        if address is None:
            return "local"
        raise SwarmError("no Ray cluster is running on this machine; start one with `ray start --head` "
                         "(or `swarm launch`, which starts one)")
    if _listening(named):
        return named
    by = "RAY_ADDRESS" if os.environ.get("RAY_ADDRESS") else "Ray's ray_current_cluster file"
    if address is None and not os.environ.get("RAY_ADDRESS"):
        log.warning("stale Ray address ignored: a fresh local cluster starts", stale=named)
        return "local"
    raise SwarmError(f"no Ray cluster listens at {named} (named by {by}; a cluster stopped without `ray stop` "
                     "leaves it behind): start one with `ray start --head`, or run `ray stop`")


def running_cluster() -> str | None:
    """The address of the Ray cluster that RAY_ADDRESS or Ray's address file names, if one listens there."""
    named = _named_cluster()
    return named if named is not None and _listening(named) else None


def _named_cluster() -> str | None:
    env = os.environ.get("RAY_ADDRESS")
    if env:
        return env
    from ray._private.utils import read_ray_address

    return read_ray_address() or None


def _listening(address: str, timeout_s: float = 2.0) -> bool:
    return _unreachable(address, timeout_s) is None


def _unreachable(address: str, timeout_s: float) -> str | None:
    """Why nothing answers a TCP connection at host:port (or ray://host:port), or None if something does."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        return "not of the form host:port"
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _probe(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not minutes, when an explicit host:port has nothing listening
    (ray.init would keep retrying the connection for a long time)."""
    if not address or address in ("auto", "local"):
        return
    why = _unreachable(address, timeout_s)
    if why == "not of the form host:port":
        raise SwarmError(f"Ray address {address!r} is not of the form host:port, ray://host:port, 'auto' or 'local'")
    if why is not None:
        raise SwarmError(f"Ray is not reachable at {address!r}: {why}")


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
    _prepare_models(topo.agents)
    namespace = namespace_of(topo.name)
    _connect(address, namespace, log_to_driver=agent_output)
    existing = _actor_names(namespace)
    if existing:
        raise SwarmError(f"swarm {topo.name!r} is already running (agents: {', '.join(sorted(existing))}); attach to it or shut it down first")
    swarm = Swarm(topo.name, topo)
    initial = [_member_dict(spec, topo) for spec in topo.agents]
    try:
        for spec in topo.agents:
            swarm._handles[spec.name] = _create_actor(topo, spec, initial)
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
    if swarm.failed:
        swarm._bury({n: m for n, m in zip([s.name for s in topo.agents], initial, strict=True) if n in swarm.failed})
    swarm._refresh_view(force=True)
    log.info("swarm up", swarm=topo.name, agents=len(topo.agents))
    return swarm


def _prepare_models(agents: list[AgentSpec]) -> None:
    """Build the testbed ladders these agents name, here, before any agent starts: the build shows
    its progress on this terminal, and agents then find their models in the cache."""
    from swarm.testbed.models import prepare

    prepare([str(getattr(a.backend, "model", "")) for a in agents])


def attach(name: str, address: str | None = "auto") -> Swarm:
    """Connect to a swarm that another process launched, by its name."""
    configure_logging()
    namespace = namespace_of(name)
    _connect(address, namespace)
    names = _actor_names(namespace)
    if not names:
        raise SwarmError(f"no swarm named {name!r} is running on this Ray cluster")
    handles = {n: ray.get_actor(n, namespace=namespace) for n in names}
    for agent_name, handle in handles.items():
        try:
            topology_json = ray.get(handle.describe.remote(), timeout=10)["topology"]
            break
        except RayError:
            log.warning("agent did not describe itself", agent=agent_name)
    else:
        raise SwarmError(f"swarm {name!r}: none of its agents answered ({', '.join(names)})")
    swarm = Swarm(name, Topology.model_validate_json(topology_json))
    swarm._handles = handles
    swarm._refresh_view(force=True)
    return swarm


class Swarm:
    """A handle on a running swarm. Create with `launch` or `attach`."""

    def __init__(self, name: str, topology: Topology) -> None:
        self.name = name
        self.topology = topology
        self.namespace = namespace_of(name)
        self._handles: dict[str, ray.actor.ActorHandle] = {}
        self._view: dict[str, Member] = {}
        self._view_at = 0.0
        self.failed: dict[str, str] = {}  # agents that did not start: name -> why

    # -- asking ----------------------------------------------------------------------------------
    def ask(self, text: str, scenario: str | float | None = None, alpha: float | None = None, deadline_s: float | None = None) -> Answer:
        """Route one query through the swarm. Raises QueryError (NoCapableAgent, DeadlineExceeded) when unanswerable."""
        [outcome] = self.ask_many([text], scenario, alpha, deadline_s, concurrency=1)
        if isinstance(outcome, QueryError):
            raise outcome
        return outcome

    def ask_many(
        self, texts: Iterable[str], scenario: str | float | None = None, alpha: float | None = None,
        deadline_s: float | None = None, concurrency: int = 64, entry: str | None = None, must_answer: bool = False,
    ) -> list[Answer | QueryError]:
        """Route many queries with at most `concurrency` in flight. Each slot holds an Answer or the
        QueryError that explains why that query could not be answered; none is ever dropped.

        `entry` hands every query to that agent only (no retry elsewhere if it is gone);
        `must_answer` gives each query a one-hop budget, so its entry cannot forward it and answers
        itself. Together they address one agent directly, as a centralized router would."""
        d = self.topology.defaults
        a = scenario_alpha(scenario, alpha)
        if entry is not None and entry not in self._handles:
            raise SwarmError(f"swarm {self.name!r} has no live agent named {entry!r} (agents: {', '.join(sorted(self._handles))})")
        hops = 1 if must_answer else d.max_hops
        queries = [new_query(t, a, deadline_s or d.deadline_s, hops, d.max_query_chars) for t in texts]
        only = None if entry is None else [entry]
        outcomes: list[Answer | QueryError | None] = [None] * len(queries)
        tried: list[set[str]] = [set() for _ in queries]
        started = [0.0] * len(queries)
        pending: dict[ray.ObjectRef, tuple[int, str]] = {}
        waiting = list(range(len(queries)))[::-1]
        while waiting or pending:
            while waiting and len(pending) < max(1, concurrency):
                i = waiting.pop()
                started[i] = started[i] or time.monotonic()
                ref, at = self._submit(queries[i], tried[i], started[i], only)
                if ref is None:
                    outcomes[i] = NoCapableAgent(f"query {queries[i].query_id}: no live entry agent (tried {', '.join(sorted(tried[i])) or 'none'})", queries[i].query_id)
                else:
                    pending[ref] = (i, at)
            if not pending:
                continue
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=self._wait_step(queries, started, pending))
            for ref in ready:
                i, at = pending.pop(ref)
                outcome = self._collect(ref, queries[i], at, started[i])
                if outcome is None:  # the entry died or was leaving: go again at another entry
                    waiting.append(i)
                else:
                    outcomes[i] = outcome
            self._expire(pending, queries, started, outcomes)
        return outcomes  # type: ignore[return-value]

    async def ask_async(self, text: str, scenario: str | float | None = None, alpha: float | None = None, deadline_s: float | None = None) -> Answer:
        """`ask` for asyncio callers (a web front end): awaits the entry agent's reply without blocking the loop."""
        d = self.topology.defaults
        q = new_query(text, scenario_alpha(scenario, alpha), deadline_s or d.deadline_s, d.max_hops, d.max_query_chars)
        tried: set[str] = set()
        began = time.monotonic()
        while True:
            await self._refresh_view_async()  # so that _submit finds the view fresh and never blocks the loop
            ref, entry = self._submit(q, tried, began)
            if ref is None:
                raise NoCapableAgent(f"query {q.query_id}: no live entry agent", q.query_id)
            wait = max(0.0, q.budget_s - (time.monotonic() - began)) + _GRACE_S
            try:
                data = await asyncio.wait_for(ref, wait)  # a wedged entry agent never replies: stop at the deadline
            except (ActorDiedError, ActorUnavailableError, RayActorError):
                self._mark(entry, "dead")
                continue
            except TimeoutError:
                raise DeadlineExceeded(f"query {q.query_id}: no reply from entry agent {entry} within the deadline", q.query_id) from None
            result = expect(data, Result)
            if result.error_code == "refused":
                self._mark(entry, "left")
                continue
            return to_answer(result, time.monotonic() - began, entry)

    def _submit(self, q: Query, tried: set[str], started: float, only: list[str] | None = None) -> tuple[ray.ObjectRef | None, str]:
        """Hand the query to the cheapest live entry not yet tried (or to one of `only`), with the time it has left."""
        remaining = q.budget_s - (time.monotonic() - started)
        for entry in self.entries() if only is None else [n for n in only if n in self._handles]:
            if entry not in tried and remaining > 0:
                tried.add(entry)
                return self._handles[entry].handle.remote(encode(q.model_copy(update={"budget_s": remaining}))), entry
        return None, ""

    def _collect(self, ref: ray.ObjectRef, q: Query, entry: str, started: float) -> Answer | QueryError | None:
        try:
            result = expect(ray.get(ref), Result)
        except (ActorDiedError, ActorUnavailableError, RayActorError):
            self._mark(entry, "dead")
            return None
        if result.error_code == "refused":
            self._mark(entry, "left")
            return None
        try:
            return to_answer(result, time.monotonic() - started, entry)
        except QueryError as exc:
            return exc

    def _wait_step(self, queries, started, pending) -> float:
        deadlines = [started[i] + queries[i].budget_s + _GRACE_S for i, _ in pending.values()]
        return max(0.0, min(deadlines) - time.monotonic())

    def _expire(self, pending, queries, started, outcomes) -> None:
        now = time.monotonic()
        for ref, (i, entry) in list(pending.items()):
            if now > started[i] + queries[i].budget_s + _GRACE_S:
                del pending[ref]
                outcomes[i] = DeadlineExceeded(f"query {queries[i].query_id}: no reply from entry agent {entry} within the deadline", queries[i].query_id)

    # -- membership ------------------------------------------------------------------------------
    def entries(self) -> list[str]:
        """Live agents, cheapest first: where queries enter."""
        self._refresh_view()
        live = [m for m in self._view.values() if m.state == "alive" and m.name in self._handles]
        return [m.name for m in sorted(live, key=lambda m: (m.cost, m.name))]

    def add_agent(self, spec: AgentSpec | dict | str | Path, seeds: list[str] | None = None) -> str:
        """Start one more agent; it joins through `seeds` (default: the topology's seeds, else every live agent)."""
        spec = spec if isinstance(spec, AgentSpec) else load_agent_spec(spec)
        if spec.name in self._live_names():
            raise SwarmError(f"swarm {self.name!r} already has a live agent named {spec.name!r}")
        seeds = seeds or [s for s in self.topology.seeds if s in self._live_names()] or self.entries()
        _prepare_models([spec])
        handle = _create_actor(self.topology, spec, [])
        try:
            self._await_started({spec.name: handle.start.remote(seeds)})
        except BaseException:
            ray.kill(handle)
            raise
        self._handles[spec.name] = handle
        self._refresh_view(force=True)
        log.info("agent added", swarm=self.name, agent=spec.name, seeds=seeds)
        return spec.name

    def remove_agent(self, name: str, timeout_s: float | None = None) -> None:
        """Graceful: the agent stops taking queries, tells its peers, finishes its in-flight work, then exits."""
        handle = self._handle(name)
        timeout = timeout_s or self.topology.defaults.drain_timeout_s + 10
        try:
            undrained = ray.get(handle.leave.remote(), timeout=timeout)
        except (RayActorError, GetTimeoutError) as exc:
            log.warning("agent did not leave cleanly", agent=name, error=type(exc).__name__)
            undrained = -1
        ray.kill(handle)
        self._handles.pop(name, None)
        self._mark(name, "left")
        if undrained:
            log.warning("agent removed before draining", agent=name, in_flight=undrained)

    def kill_agent(self, name: str) -> None:
        """Crash an agent with no goodbye (for failure experiments): peers find out by themselves."""
        ray.kill(self._handle(name))
        self._handles.pop(name, None)

    def status(self) -> list[AgentStatus]:
        """Every agent's state, load and decisions, including agents other processes added."""
        self._refresh_view(force=True)
        refs = {n: h.control.remote(encode(StatusRequest())) for n, h in self._handles.items()}
        out = []
        for name, ref in refs.items():
            try:
                s = expect(ray.get(ref, timeout=10), Status)
            except (RayError, GetTimeoutError, SwarmError):
                member = self._view.get(name)
                out.append(AgentStatus(name, "unreachable", member.cost if member else 0.0))
                continue
            out.append(AgentStatus(**s.model_dump(include=set(AgentStatus.__dataclass_fields__))))
            self._merge_view(s.members)
        return sorted(out, key=lambda s: (s.cost, s.name))

    def shutdown(self) -> None:
        """Stop every agent of this swarm (including ones other processes added)."""
        for name in _actor_names(self.namespace) | set(self._handles):
            try:
                ray.kill(self._handles.get(name) or ray.get_actor(name, namespace=self.namespace))
            except (ValueError, RayError):
                pass
        self._handles.clear()
        self._view.clear()

    # -- internals -------------------------------------------------------------------------------
    def _handle(self, name: str) -> ray.actor.ActorHandle:
        if name not in self._handles:
            try:
                self._handles[name] = ray.get_actor(name, namespace=self.namespace)
            except ValueError:
                raise SwarmError(f"swarm {self.name!r} has no agent named {name!r} (agents: {', '.join(sorted(self._handles))})") from None
        return self._handles[name]

    def _live_names(self) -> set[str]:
        return set(self.entries())

    def _mark(self, name: str, state: str) -> None:
        m = self._view.get(name)
        if m is not None:
            self._view[name] = m.model_copy(update={"state": state})

    def _merge_view(self, members: list[Member]) -> None:
        for m in members:
            mine = self._view.get(m.name)
            if mine is None or m.incarnation > mine.incarnation or (m.incarnation == mine.incarnation and m.state != "alive"):
                self._view[m.name] = m
        for name, m in self._view.items():
            if m.state in ("left", "dead"):
                self._handles.pop(name, None)
            elif m.state == "alive" and name not in self._handles:
                try:
                    self._handles[name] = ray.get_actor(name, namespace=self.namespace)
                except ValueError:
                    self._view[name] = m.model_copy(update={"state": "dead"})

    def _refresh_view(self, force: bool = False) -> None:
        """Learn membership from any live agent, at most every couple of seconds: never per query."""
        if not force and time.monotonic() - self._view_at < _VIEW_TTL_S:
            return
        self._view_at = time.monotonic()
        for name in self._view_sources():
            try:
                view = expect(ray.get(self._handles[name].control.remote(_FULL_VIEW), timeout=5), View)
            except (RayError, GetTimeoutError, SwarmError):
                continue
            self._merge_view(view.members)
            return

    async def _refresh_view_async(self) -> None:
        """`_refresh_view` for asyncio callers: the same, awaited instead of blocking."""
        if time.monotonic() - self._view_at < _VIEW_TTL_S:
            return
        self._view_at = time.monotonic()
        for name in self._view_sources():
            try:
                reply = asyncio.wrap_future(self._handles[name].control.remote(_FULL_VIEW).future())
                view = expect(await asyncio.wait_for(reply, 5), View)
            except (RayError, asyncio.TimeoutError, SwarmError):
                continue
            self._merge_view(view.members)
            return

    def _view_sources(self) -> list[str]:
        return sorted(self._handles, key=lambda n: self._view[n].cost if n in self._view else 0)

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
        news = encode(Gossip(digest="", updates=[Member.model_validate({**m, "state": "dead"}) for m in dead.values()]))
        for name in dead:
            ray.kill(self._handles.pop(name))
        ray.get([h.control.remote(news) for h in self._handles.values()])
        self._refresh_view(force=True)


def _create_actor(topo: Topology, spec: AgentSpec, initial: list[dict]) -> ray.actor.ActorHandle:
    res = topo.resources_for(spec)
    options = dict(
        name=spec.name, namespace=namespace_of(topo.name), lifetime="detached", max_restarts=0,
        num_cpus=res.num_cpus, num_gpus=res.num_gpus, max_concurrency=spec.max_concurrency,
    )
    if res.custom:
        options["resources"] = dict(res.custom)
    if res.memory_mb:
        options["memory"] = res.memory_mb * 1024 * 1024
    return AgentActor.options(**options).remote(topo.name, topo.model_dump_json(), spec.model_dump_json(), initial, logging_settings())


def _member_dict(spec: AgentSpec, topo: Topology) -> dict:
    from swarm.build import member_for

    return member_for(spec, topo).model_dump()


def _actor_names(namespace: str) -> set[str]:
    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a.get("namespace") == namespace}


def _root_cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    return f"{type(cause).__name__}: {cause}".splitlines()[0][:300]
