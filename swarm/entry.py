"""The entry client: how a query gets into a swarm, written once for every front end.

The Python API (`Swarm`, sync and async), the HTTP gateway and `MemorySwarm` all hand queries to
a swarm through an `EntryClient` over a `Transport`. The client routes nothing: it picks the
cheapest live agent it knows as the entry, sends the query with the time it has left, and waits
for the one Result that flows back. If that entry is dead, or refuses because it is leaving, the
client goes again at the next entry; if the entry never replies, the client gives up one grace
period past the query's deadline (`GRACE_S`, so that the agents' own deadline error, which
carries the trace, normally arrives first). That rule is `EntryClient.attempts`, a generator that
does no waiting itself: `send` drives it by awaiting the transport (the async faces, the gateway,
`MemorySwarm`), and the sync face of `Swarm` drives it by blocking on Ray (`ray.wait`), which on
a 2-core machine is a third of a millisecond per query faster than awaiting a Ray reference.

Its view of the swarm is a `Membership` that it is not a member of: filled from the full view of
any agent that answers (at most every `VIEW_TTL_S`, in the background, never on a query's
path). What the client saw itself (an entry that died, left, or failed once) only sets that
entry aside, beside the view: a later refresh that shows it alive re-admits it, so one transient
failure, or a partition that healed, never blacklists an agent for good. When the client stops
waiting for an entry (deadline, a transient failure, its caller went away) it tells the entry to
cancel the query, so abandoned work does not run on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Generator, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from swarm.client import Answer, new_query, to_answer
from swarm.errors import DeadlineExceeded, NoCapableAgent, PeerUnreachable, ProtocolError, QueryError, SwarmError
from swarm.membership import Membership
from swarm.prompts import scenario_alpha
from swarm.protocol import Cancel, Chunk, Gossip, Member, Query, Result, View, decode, encode, expect
from swarm.transport.base import Transport

log = structlog.get_logger("swarm.entry")
GRACE_S = 2.0  # how long past a query's deadline the client waits for its entry before giving up
VIEW_TTL_S = 1.0  # how old the view may grow before a query starts a refresh in the background
_ASK_VIEW_S = 5.0  # how long one agent may take to send its view
_FULL_VIEW = encode(Gossip(digest="", full=True))
T = TypeVar("T")
Attempt = tuple[str, bytes, float]  # (entry agent, message, seconds to wait for its reply)
Outcome = bytes | PeerUnreachable | TimeoutError | None  # what came of an attempt (None: nothing yet)


@dataclass(frozen=True)
class QueryLimits:
    """A swarm's defaults for the queries that enter it (the topology's `defaults`)."""

    deadline_s: float = 30.0
    max_hops: int = 8
    max_query_chars: int = 32768

    @classmethod
    def of(cls, defaults: Any) -> QueryLimits:
        return cls(defaults.deadline_s, defaults.max_hops, defaults.max_query_chars)


class EntryClient:
    def __init__(self, swarm: str, transport: Transport, limits: QueryLimits = QueryLimits(), grace_s: float = GRACE_S) -> None:
        self.swarm, self.transport, self.limits, self.grace_s = swarm, transport, limits, grace_s
        # The client is not a member: its own entry is 'left', so it is never an entry nor anyone's news.
        self.view = Membership(Member(name="(client)", cost=0.0, state="left"))
        self._refreshed_at = -math.inf
        self._refreshing: asyncio.Task | None = None
        self._entries: tuple[tuple[int, int], list[str]] = ((-1, -1), [])
        self._set_aside: dict[str, float] = {}  # entry -> when this client saw it fail (re-admitted by a later view)
        self._aside_version = 0
        self._background: set[asyncio.Task] = set()
        # How a cancel reaches an abandoned entry: on the running loop by default; the sync face of Swarm sets its own.
        self.abandon = self._abandon_on_loop
        # A sync face, its refresh thread and an async face may share one client: the view is read
        # and changed under this lock (each hold is a few dictionary operations).
        self._lock = threading.Lock()

    # -- the view ------------------------------------------------------------------------------
    def entries(self) -> list[str]:
        """Live agents, cheapest first: where queries enter."""
        with self._lock:
            version, names = self._entries
            if version != (self.view.version, self._aside_version):
                version = (self.view.version, self._aside_version)
                live = sorted(self.view.peers(("alive",)), key=lambda m: (m.cost, m.name))
                names = [m.name for m in live if m.name not in self._set_aside]
                self._entries = (version, names)
            return list(names)

    def known(self, states: Iterable[str] = ("alive", "suspect")) -> list[Member]:
        """The agents the view holds in these states, cheapest first."""
        with self._lock:
            return sorted(self.view.peers(states), key=lambda m: (m.cost, m.name))

    def learn(self, members: Iterable[Member], asked_at: float | None = None) -> None:
        """Merge what an agent reported (a newer incarnation wins; at equal incarnation, the worse state).
        `asked_at`: when that agent was asked; an entry set aside before then that it reports alive is re-admitted."""
        members = list(members)
        with self._lock:
            self.view.merge_all(members, spread=False)
            if asked_at is not None:
                back = [m.name for m in members if m.state == "alive" and self._set_aside.get(m.name, asked_at) < asked_at]
                for name in back:
                    del self._set_aside[name]
                self._aside_version += bool(back)

    def mark(self, name: str, state: str = "dead", certain: bool = False) -> None:
        """What the client saw itself: an entry that died, is leaving, or failed. It is set aside until a
        view asked for later shows it alive. Only what the client did itself (`certain`: it killed or
        removed that agent) is written into the view, at the entry's current incarnation."""
        with self._lock:
            self._set_aside[name] = time.monotonic()
            self._aside_version += 1
            if certain:
                self.view.mark(name, state)

    def set_aside(self) -> list[str]:
        with self._lock:
            return sorted(self._set_aside)

    async def refresh(self, first: Iterable[str] = (), also: Iterable[str] = ()) -> bool:
        """Take the whole view of the first agent that answers: those named in `first`, then the
        known ones (alive before suspect, cheapest first), then those named in `also` (for a client
        that knows names only); False when none did."""
        self._refreshed_at = time.monotonic()
        known = [m.name for m in self.known(("alive",))] + [m.name for m in self.known(("suspect",))]
        for name in dict.fromkeys([*first, *known, *also]):
            asked_at = time.monotonic()
            try:
                async with asyncio.timeout(_ASK_VIEW_S):
                    view = expect(await self.transport.send(name, _FULL_VIEW, control=True), View)
            except (PeerUnreachable, TimeoutError, SwarmError):
                continue
            self.learn(view.members, asked_at)
            return True
        return False

    def stale(self) -> bool:
        """The last refresh began more than VIEW_TTL_S ago."""
        return time.monotonic() - self._refreshed_at >= VIEW_TTL_S

    def claim_refresh(self) -> bool:
        """True (once) when the view is stale: the caller then starts a refresh; others wait their turn."""
        if not self.stale():
            return False
        self._refreshed_at = time.monotonic()
        return True

    def refresh_soon(self) -> None:
        """A stale view starts refreshing in the background, on the running loop (queries never wait for it)."""
        if self.claim_refresh():
            self._refreshing = asyncio.ensure_future(self.refresh_quietly())

    async def refresh_quietly(self) -> None:
        """`refresh`, for the background: a failure is logged, never raised."""
        try:
            await self.refresh()
        except Exception as exc:  # noqa: BLE001 - a background refresh must never die silently
            log.warning("view refresh failed", swarm=self.swarm, error=repr(exc))

    def _abandon_on_loop(self, at: str, data: bytes) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self.send_quietly(at, data))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def send_quietly(self, at: str, data: bytes) -> None:
        with contextlib.suppress(PeerUnreachable, TimeoutError, SwarmError):
            async with asyncio.timeout(_ASK_VIEW_S):
                await self.transport.send(at, data, control=True)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._refreshing is not None:
            self._refreshing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refreshing

    # -- asking --------------------------------------------------------------------------------
    def query(self, text: str, scenario: str | float | None = None, alpha: float | None = None, deadline_s: float | None = None,
              must_answer: bool = False, target_latency_s: float | None = None) -> Query:
        """A query with this swarm's limits; `must_answer` gives it a one-hop budget (its entry answers);
        `target_latency_s`: a soft latency target (`new_query`)."""
        d = self.limits
        return new_query(text, scenario_alpha(scenario, alpha), deadline_s or d.deadline_s,
                         1 if must_answer else d.max_hops, d.max_query_chars, target_latency_s=target_latency_s)

    async def ask(self, text: str, scenario: str | float | None = None, alpha: float | None = None, deadline_s: float | None = None,
                  entry: str | None = None, must_answer: bool = False, target_latency_s: float | None = None) -> Answer:
        """One query: an Answer, or a QueryError (NoCapableAgent, DeadlineExceeded) / QueryTooLarge."""
        return await self.send(self.query(text, scenario, alpha, deadline_s, must_answer, target_latency_s), entry)

    def ask_stream(self, text: str, scenario: str | float | None = None, alpha: float | None = None, deadline_s: float | None = None,
                   entry: str | None = None, target_latency_s: float | None = None, must_answer: bool = False) -> AsyncIterator[str | Answer]:
        """One query, streamed (`stream`): its text piece by piece, then its Answer."""
        return self.stream(self.query(text, scenario, alpha, deadline_s, must_answer, target_latency_s), entry)

    async def ask_many(self, texts: Iterable[str], scenario: str | float | None = None, alpha: float | None = None,
                       deadline_s: float | None = None, concurrency: int = 64, entry: str | None = None,
                       must_answer: bool = False, target_latency_s: float | None = None) -> list[Answer | QueryError]:
        """Many queries, at most `concurrency` in flight; each slot holds an Answer or its QueryError."""
        queries = [self.query(t, scenario, alpha, deadline_s, must_answer, target_latency_s) for t in texts]
        slots = asyncio.Semaphore(max(1, concurrency))

        async def one(q: Query) -> Answer | QueryError:
            async with slots:
                try:
                    return await self.send(q, entry)
                except QueryError as exc:
                    return exc
                except Exception as exc:  # noqa: BLE001 - one query's failure never drops the others
                    return unexpected(q, exc)

        return list(await asyncio.gather(*(one(q) for q in queries)))

    async def send(self, q: Query, entry: str | None = None) -> Answer:
        """Hand `q` to the cheapest live entry (or to `entry` only), the next one on death or refusal,
        until the deadline plus the grace period: `attempts` driven by awaiting the transport."""
        self.refresh_soon()
        steps = self.attempts(q, entry)
        outcome: Outcome = None
        while True:
            try:
                at, data, wait_s = steps.send(outcome)
            except StopIteration as done:
                return done.value
            try:
                async with asyncio.timeout(wait_s):
                    outcome = await self.transport.send(at, data)
            except (TimeoutError, PeerUnreachable) as exc:
                outcome = exc
            except asyncio.CancelledError:  # our caller went away: the entry need not go on
                self.abandon(at, encode(Cancel(query_id=q.query_id)))
                raise

    async def stream(self, q: Query, entry: str | None = None) -> AsyncIterator[str | Answer]:
        """`send`, streamed: the answer's text piece by piece as the answering agent generates it, then
        the Answer (whole text and trace) as the last item. Until a first piece arrives the query is
        retried at the next entry as `send` does; after that it is not (its client would see text
        twice): a failure then ends it with a QueryError. Closing the iterator cancels the query.
        Text the pieces did not carry (an agent of protocol 1.3 answered, or its pieces could not be
        delivered) comes as one last piece before the Answer."""
        self.refresh_soon()
        steps = self.attempts(q, entry)
        outcome: Outcome = None
        loop = asyncio.get_running_loop()
        sent = ""
        while True:
            try:
                at, data, wait_s = steps.send(outcome)
            except StopIteration as done:
                answer: Answer = done.value
                if len(answer.text) > len(sent) and answer.text.startswith(sent):
                    yield answer.text[len(sent):]
                yield answer
                return
            outcome, streamed, deadline = None, False, loop.time() + wait_s
            replies = self.transport.stream(at, data)
            try:
                while outcome is None:
                    try:
                        async with asyncio.timeout_at(deadline):
                            reply = await anext(replies)
                    except StopAsyncIteration:
                        raise PeerUnreachable(at, "its stream ended without a result", permanent=False) from None
                    piece = _piece(reply, q.query_id)
                    if piece is None:
                        outcome = reply
                    else:
                        streamed, sent = True, sent + piece
                        yield piece
            except (TimeoutError, PeerUnreachable) as exc:
                if streamed and isinstance(exc, PeerUnreachable):
                    self.abandon(at, encode(Cancel(query_id=q.query_id)))
                    raise QueryError(f"query {q.query_id}: entry agent {at} failed while streaming its answer ({exc})", q.query_id) from None
                outcome = exc
            except BaseException:  # our caller went away (or anything else stopped us): the entry need not go on
                self.abandon(at, encode(Cancel(query_id=q.query_id)))
                raise
            finally:
                await replies.aclose()

    def attempts(self, q: Query, entry: str | None = None) -> Generator[Attempt, Outcome, Answer]:
        """The one rule for getting `q` answered, free of any way of waiting (a driver awaits a
        transport, or blocks on Ray): yields (entry agent, message, seconds to wait for its reply)
        and is sent what came of it: the reply's bytes, a PeerUnreachable, or a TimeoutError. Returns
        the Answer; raises the QueryError that ends the query."""
        began = time.monotonic()
        tried: list[str] = []
        while True:
            remaining = q.budget_s - (time.monotonic() - began)
            candidates = self.entries() if entry is None else [entry]
            at = next((n for n in candidates if n not in tried), None)
            if remaining <= 0:
                raise DeadlineExceeded(f"query {q.query_id}: deadline passed before an entry agent took it", q.query_id)
            if at is None:
                raise NoCapableAgent(f"query {q.query_id}: no live entry agent (tried {', '.join(tried) or 'none'})", q.query_id)
            tried.append(at)
            target = None if q.target_s is None else max(0.0, q.target_s - (time.monotonic() - began))
            outcome = yield at, encode(q.model_copy(update={"budget_s": remaining, "target_s": target})), remaining + self.grace_s
            if isinstance(outcome, TimeoutError):
                self.abandon(at, encode(Cancel(query_id=q.query_id)))
                raise DeadlineExceeded(f"query {q.query_id}: no reply from entry agent {at} within the deadline", q.query_id)
            if isinstance(outcome, PeerUnreachable):
                self.mark(at)
                if not outcome.permanent:  # it may still be working on it: we go elsewhere, so it need not
                    self.abandon(at, encode(Cancel(query_id=q.query_id)))
                log.info("entry unreachable", query_id=q.query_id, agent=at, error=str(outcome))
                continue
            try:
                result = expect(outcome, Result)
                if result.query_id != q.query_id:
                    raise ProtocolError("mismatched_reply", f"entry {at} answered query {result.query_id[:64]!r}")
            except ProtocolError as exc:  # it answered, but not with this query's Result: try the next entry
                log.warning("entry answered with an error", query_id=q.query_id, agent=at, error=str(exc))
                self.mark(at)
                continue
            if result.error_code == "refused":  # it is leaving: go to the next entry
                self.mark(at, "left")
                continue
            return to_answer(result, time.monotonic() - began, at)


def _piece(reply: bytes, query_id: str) -> str | None:
    """The text of a streamed reply that is a piece of this query's answer; None for anything else (its Result)."""
    try:
        _, body = decode(reply)
    except ProtocolError:
        return None
    return body.text if isinstance(body, Chunk) and body.query_id == query_id else None


def unexpected(q: Query, exc: BaseException) -> QueryError:
    """A failure no rule above foresaw, as the QueryError of its own query (a batch never loses the others)."""
    log.error("query failed unexpectedly", query_id=q.query_id, error=repr(exc))
    return QueryError(f"query {q.query_id}: failed unexpectedly ({type(exc).__name__}: {str(exc)[:200]})", q.query_id)


_END = object()


async def next_or_end(items: AsyncIterator[T]) -> T | object:
    """The next item of `items`, or `_END` (a StopAsyncIteration cannot cross a thread's future)."""
    try:
        return await anext(items)
    except StopAsyncIteration:
        return _END


class LoopThread:
    """An event loop in a daemon thread, for the sync face of an asyncio client: `run(coro)` blocks
    the calling thread (any thread, inside a running loop or not) until the coroutine is done."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.submit(coro).result()

    def iterate(self, items: AsyncIterator[T]) -> Generator[T, None, None]:
        """An async iterator that lives on the loop, consumed from this thread; closing it early closes `items` there."""
        try:
            while (item := self.run(next_or_end(items))) is not _END:
                yield item  # type: ignore[misc]
        finally:
            with contextlib.suppress(SwarmError, RuntimeError):
                self.run(items.aclose())

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start `coro` on the loop without waiting for it."""
        if not self._thread.is_alive():
            coro.close()
            raise SwarmError("this swarm handle is closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        """Cancel what still runs there, stop the loop and its thread, release the loop."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(self._wind_down(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()

    async def _wind_down(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.loop.shutdown_default_executor()
