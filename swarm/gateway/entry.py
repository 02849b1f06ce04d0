"""The gateway's way into a swarm: an asyncio client that hands each query to an entry agent.

It does what `Swarm.ask_async` does (cheapest live entry first, the next entry when that one is
dead or leaving, one result per query) without any blocking Ray call on the event loop that
also serves HTTP: the membership view is refreshed by a background task, handles of agents
that joined later are looked up in a worker thread, and every call is awaited. It routes
nothing: the entry agent and its peers do that.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import ray
import structlog
from ray.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    RayActorError,
    RayError,
)

from swarm.client import Answer, new_query, to_answer
from swarm.errors import DeadlineExceeded, NoCapableAgent, SwarmError
from swarm.protocol import Gossip, Member, Result, View, encode, expect
from swarm.topology import Topology
from swarm.transport.ray import namespace_of

log = structlog.get_logger("swarm.gateway")
_GRACE_S = 2.0  # how long past a query's budget we wait for its entry agent before giving up
_REFRESH_S = 1.0


class EntryClient:
    def __init__(self, swarm_name: str) -> None:
        self.swarm_name = swarm_name
        self.namespace = namespace_of(swarm_name)
        self.topology: Topology | None = None
        self._handles: dict[str, ray.actor.ActorHandle] = {}
        self._view: dict[str, Member] = {}
        self._refresher: asyncio.Task | None = None

    async def start(self) -> None:
        """Find the swarm's agents and its topology; start refreshing the view in the background."""
        names = await asyncio.to_thread(_actor_names, self.namespace)
        if not names:
            raise SwarmError(f"no swarm named {self.swarm_name!r} is running on this Ray cluster")
        for name in names:
            with contextlib.suppress(ValueError):
                self._handles[name] = await asyncio.to_thread(ray.get_actor, name, namespace=self.namespace)
        for handle in list(self._handles.values()):
            with contextlib.suppress(RayError, TimeoutError):
                async with asyncio.timeout(10):
                    self.topology = Topology.model_validate_json((await handle.describe.remote())["topology"])
                break
        if self.topology is None:
            raise SwarmError(f"swarm {self.swarm_name!r}: none of its agents answered")
        await self.refresh()
        self._refresher = asyncio.ensure_future(self._refresh_forever())

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher

    # -- asking --------------------------------------------------------------------------------
    async def ask(self, text: str, alpha: float, deadline_s: float | None = None) -> Answer:
        """One query: an Answer, or a QueryError (NoCapableAgent, DeadlineExceeded) / QueryTooLarge."""
        d = self.topology.defaults
        q = new_query(text, alpha, deadline_s or d.deadline_s, d.max_hops, d.max_query_chars)
        began = time.monotonic()
        tried: set[str] = set()
        while True:
            remaining = q.budget_s - (time.monotonic() - began)
            entry = next((n for n in self.entries() if n not in tried), None)
            if remaining <= 0:
                raise DeadlineExceeded(f"query {q.query_id}: deadline passed before an entry agent took it", q.query_id)
            if entry is None:
                raise NoCapableAgent(f"query {q.query_id}: no live entry agent (tried {', '.join(sorted(tried)) or 'none'})", q.query_id)
            tried.add(entry)
            try:
                async with asyncio.timeout(remaining + _GRACE_S):
                    data = await self._handles[entry].handle.remote(encode(q.model_copy(update={"budget_s": remaining})))
            except TimeoutError:
                raise DeadlineExceeded(f"query {q.query_id}: no reply from entry agent {entry} within the deadline", q.query_id) from None
            except (ActorDiedError, ActorUnavailableError, RayActorError):
                self._mark(entry, "dead")
                continue
            result = expect(data, Result)
            if result.error_code == "refused":  # it is leaving: go to the next entry
                self._mark(entry, "left")
                continue
            return to_answer(result, time.monotonic() - began, entry)

    def entries(self) -> list[str]:
        """Live agents, cheapest first: where queries enter."""
        live = [m for m in self._view.values() if m.state == "alive" and m.name in self._handles]
        return [m.name for m in sorted(live, key=lambda m: (m.cost, m.name))]

    # -- membership ----------------------------------------------------------------------------
    async def refresh(self) -> None:
        """Learn membership from the first agent that answers; look up handles of newcomers."""
        ask = encode(Gossip(digest="", full=True))
        for name in sorted(self._handles, key=lambda n: self._view[n].cost if n in self._view else 0):
            try:
                async with asyncio.timeout(5):
                    view = expect(await self._handles[name].control.remote(ask), View)
            except (RayError, TimeoutError, SwarmError):
                continue
            await self._merge(view.members)
            return

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(_REFRESH_S)
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - the refresher must never die silently
                log.warning("view refresh failed", swarm=self.swarm_name, error=repr(exc))

    async def _merge(self, members: list[Member]) -> None:
        for m in members:
            mine = self._view.get(m.name)
            if mine is None or m.incarnation > mine.incarnation or (m.incarnation == mine.incarnation and m.state != "alive"):
                self._view[m.name] = m
        for name, m in list(self._view.items()):
            if m.state in ("left", "dead"):
                self._handles.pop(name, None)
            elif m.state == "alive" and name not in self._handles:
                try:
                    self._handles[name] = await asyncio.to_thread(ray.get_actor, name, namespace=self.namespace)
                except ValueError:
                    self._view[name] = m.model_copy(update={"state": "dead"})

    def _mark(self, name: str, state: str) -> None:
        m = self._view.get(name)
        if m is not None:
            self._view[name] = m.model_copy(update={"state": state})


def _actor_names(namespace: str) -> set[str]:
    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a.get("namespace") == namespace}
