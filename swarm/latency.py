"""Latency-aware next hops: what an agent measures of its own speed, what it hears of its peers',
and the choice of next hop that keeps a query within its time.

Each agent times its own policy calls (wall time, the micro-batcher's wait and the model
included): how long it takes to reach a rejection (`decide_s`, the median of its last `WINDOW`,
and `decide_slow_s`, the p95) and to answer (`answer_s`, its decision included, the p95).
Planning takes a typical decision and a slow answer: a decision that runs late is caught where it
happens (the agent chooses its next hop again for the time really left, and answers itself when
none fits), so an agent decides (and a peer is passed through) only when even a slow decision
still leaves it the time to answer itself; an answer that runs late breaks the deadline. It advertises them without a
message of their own (protocol 1.5): on every `pong` (so each peer hears them about every n
pings, whether or not it sends us queries) and on every `result` (each agent on the way back
adds its own, so the agents upstream learn the times of the whole path from every answer).
Never in membership entries: those are resent about 3 log n times per change, and times change
all the time.

The choice (`next_hop_within`): a peer fits the time left when it can answer in it (its
`answer_s`, at least its `decide_s`, plus a hop's overhead); the strongest peer that fits is the
target; a cheaper peer on the way is tried only when it can also decide, reject and still leave
the target its `answer_s` (with the next hop "best", `defaults.next_hop`, the way starts at the
fitting peer whose advertised curve is worth most for the query's region and alpha). When none can, the peer that gets the query is its last holder, so
it goes to the one worth most answering it (accuracy - alpha x cost, as `blind_pass` below) of
those that fit, which need not be the strongest: a slow strong agent at alpha 0.5 is often worth
less than the faster one below it. So a query never goes to a peer whose expected time would break the
budget; and an agent holding a query for which, after its own decision, no peer would fit,
answers it itself (`forced`) instead of deciding and then failing at the deadline, unless a peer
that can answer in time is worth more answering it unjudged (`blind_pass`: its accuracy - alpha x
cost, from the accuracy it advertises, protocol 1.6; or, for a peer that can itself decide in the time
left and still pass the query on, the value its curve advertises, `handed_value`): then it passes the
query on without deciding. An agent that
may pass a query on decides within `generation_share` of the time left, or, when that is shorter
than its own decisions usually take, within twice its usual time as long as its next hop's known
need still fits (`decision_limit`). An agent whose usual decision judges a generated reply (a probe
with its second stage) and has no time for one, but has time to decide on its prefill alone (its
measured rejections that generated nothing, `OwnTimes.quick_timing`), decides that way (`Ask.quick`)
rather than pass the query on unjudged or answer it forced, and so does one whose usual decision fits but
a slow one (one that generates and judges a reply: as long as its answers, the p95) would leave no peer its time,
for after such a rejection it would answer forced what it had just judged not worth answering; it
advertises those times too (`quick_s`,
`quick_slow_s`, protocol 1.7), so an agent upstream passes a query through a peer that can decide on
its prefill in the time left instead of skipping it. Unmeasured times count as zero: with nothing
known, routing is as it was (but a quick decision is never assumed fast before it was measured).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from swarm.protocol import MAX_TRACE, Member, Timing

WINDOW = 200  # own policy calls of each kind the advertised times are taken over
DECIDE_QUANTILE, ANSWER_QUANTILE = 0.5, 0.95


class OwnTimes:
    """This agent's measured decision and answer times."""

    def __init__(self, name: str, window: int = WINDOW) -> None:
        self.name = name
        self._decide: deque[float] = deque(maxlen=window)
        self._answer: deque[float] = deque(maxlen=window)
        self._prefill: deque[float] = deque(maxlen=window)  # rejections that generated nothing: the prefill decided
        self._timing: Timing | None = None

    def record(self, seconds: float, rejected: bool, on_prefill: bool = False) -> None:
        (self._decide if rejected else self._answer).append(max(0.0, seconds))
        if rejected and on_prefill:
            self._prefill.append(max(0.0, seconds))
        self._timing = None

    def quick_timing(self) -> Timing | None:
        """Its times deciding on the prefill alone (`Ask.quick`; `quickened`)."""
        return quickened(self.timing())

    def judged_timing(self) -> Timing:
        """Its times when its decision generates and judges a reply (`judged`)."""
        return judged(self.timing())

    def timing(self) -> Timing:
        if self._timing is None:
            decide, answer, fast = list(self._decide), list(self._answer), list(self._prefill)
            # a quick time is at least 0.0001 once measured (rounded up), so 0 always means "never measured"
            self._timing = Timing(agent=self.name, decide_s=round(quantile(decide, DECIDE_QUANTILE), 4),
                                  decide_slow_s=round(quantile(decide, ANSWER_QUANTILE), 4),
                                  answer_s=round(quantile(answer, ANSWER_QUANTILE), 4),
                                  quick_s=max(1e-4, round(quantile(fast, DECIDE_QUANTILE), 4)) if fast else 0.0,
                                  quick_slow_s=max(1e-4, round(quantile(fast, ANSWER_QUANTILE), 4)) if fast else 0.0)
        return self._timing


def quickened(t: Timing | None) -> Timing | None:
    """An agent's times when it decides on its prefill alone (`Ask.quick`): its measured rejections that
    generated nothing, and its usual answer; None when it has made none (a quick decision is never assumed
    fast before it was measured)."""
    if t is None or not t.quick_slow_s:
        return None
    return Timing(agent=t.agent, decide_s=t.quick_s, decide_slow_s=t.quick_slow_s, answer_s=t.answer_s)


def judged(t: Timing) -> Timing:
    """An agent's times when its decision generates and judges a reply: as slow as its answers (their p95),
    which the p95 of its rejections hides when most of them are on the prefill."""
    return t.model_copy(update={"decide_s": max(t.decide_slow_s, t.answer_s)})


class PeerTimes:
    """What this agent last heard of each peer's times (from pongs and results)."""

    def __init__(self, me: str, limit: int = 100_000) -> None:
        self.me, self.limit = me, limit
        self._times: dict[str, Timing] = {}

    def heard(self, timings: Sequence[Timing | None]) -> None:
        for t in timings:
            if t is None or t.agent == self.me:
                continue
            if t.agent not in self._times and len(self._times) >= self.limit:
                self._times.pop(next(iter(self._times)))  # the oldest heard of: a bounded map whatever peers claim
            self._times[t.agent] = t

    def get(self, name: str) -> Timing | None:
        return self._times.get(name)

    def forget(self, name: str) -> None:
        self._times.pop(name, None)


def with_own(timings: list[Timing], mine: Timing) -> list[Timing]:
    """A result's timings with this agent's own added (the last MAX_TRACE: the wire's bound)."""
    return [*(t for t in timings if t.agent != mine.agent), mine][-MAX_TRACE:]


def next_hop_within(candidates: Sequence[str], remaining_s: float, times: Callable[[str], Timing | None],
                    hop_s: float, own: Timing | None = None, value: Callable[[str], float | None] | None = None,
                    rank: Callable[[str], float | None] | None = None) -> str | None:
    """The peer to pass a query on to with `remaining_s` left (candidates cheapest first): the
    cheapest one on the way to the strongest peer that can still answer in time; None when none can.
    With `rank` (what passing the query to a peer is worth: the value its curve advertises, for the
    next hop "best"), the way starts at the fitting peer ranked highest (a tie: the dearer one), so
    the cheaper peers it outranks are skipped; peers that do not fit are never ranked.
    With `own` (the holder's times, before it decides): after its typical decision, and only when a
    slow one would still leave it the time to answer itself. When no peer on the way can reject and
    still leave the strongest its time, whichever peer gets the query is its last holder: with `value`
    (a peer's worth answering unjudged, as in `blind_pass`), the one worth most of those that fit,
    where the strongest's worth is known; otherwise the strongest."""
    if own is not None:
        if not may_decide(own, remaining_s):
            return None
        remaining_s -= own.decide_s
    answer = lambda p: _answer_s(times(p)) + hop_s  # noqa: E731
    fitting = [p for p in candidates if answer(p) <= remaining_s]
    if not fitting:
        return None
    target = fitting[-1]

    def can_pass_on(t: Timing | None) -> bool:  # decide, reject, and still leave the target its time
        return (t.decide_s if t else 0.0) + hop_s + answer(target) <= remaining_s and may_decide(t, remaining_s - hop_s)

    ranked = [] if rank is None else [(v, i) for i, p in enumerate(fitting) if (v := rank(p)) is not None]
    way = fitting[max(ranked)[1] if ranked else 0:]
    for p in way:
        t = times(p)  # a peer with no time to judge a reply decides on its prefill alone when that fits (`Ask.quick`)
        if p == target or can_pass_on(t) or (t is not None and (q := quickened(t)) is not None and can_pass_on(q)):
            break
    if p != target or value is None:
        return p
    return _worth_most(way[:-1], value, target, value(target))


def _worth_most(candidates: Sequence[str], value: Callable[[str], float | None], best: str | None, best_value: float | None) -> str | None:
    """Of `candidates`, the one worth more than `best_value` and than every other (`best` when none is; also when its worth is unknown)."""
    if best_value is None:
        return best
    for p in candidates:
        v = value(p)
        if v is not None and v > best_value:
            best, best_value = p, v
    return best


def blind_pass(candidates: Sequence[str], remaining_s: float, times: Callable[[str], Timing | None], hop_s: float,
               value: Callable[[str], float | None], own: float | None) -> str | None:
    """With no time to decide and pass a query on: the peer to pass it to unjudged, the one worth most
    answering it (`value`, from its advertised accuracy) among those that can answer in time, when
    that is more than this agent's own answer is worth (`own`); None: answer here (also when either
    worth is unknown)."""
    return _worth_most([p for p in candidates if _answer_s(times(p)) + hop_s <= remaining_s], value, None, own)


def handed_value(candidates: Sequence[str], remaining_s: float, times: Callable[[str], Timing | None], hop_s: float,
                 forced: Callable[[str], float | None], decided: Callable[[str], float | None]) -> Callable[[str], float | None]:
    """What a query passed unjudged to a peer is worth there: its worth answering it (`forced`), or, when
    it can decide in the time left (its usual decision, or one on its prefill alone, `quickened`) and a
    peer after it (candidates cheapest first) could still answer after that, what it advertises a query
    handed to it is worth (`decided`: its value curve at alpha, the value its cascade gets), whichever
    is more. A peer that can decide is worth more than its unjudged answer: it answers what it knows
    and passes on the rest."""
    def value(p: str) -> float | None:
        f, d = forced(p), decided(p)
        if d is None:
            return f
        t, left = times(p), remaining_s - hop_s
        later = candidates[candidates.index(p) + 1:] if p in candidates else []
        for way in [None] if t is None else [w for w in (t, quickened(t)) if w is not None]:  # unknown times count as zero
            after = left - (way.decide_slow_s if way is not None else 0.0)
            if may_decide(way, left) and any(_answer_s(times(n)) + hop_s <= after for n in later):
                return d if f is None else max(f, d)
        return f
    return value


def forced_value(m: Member | None, alpha: float) -> float | None:
    """What an agent's answer to a query it did not judge is worth: its accuracy - alpha x cost (None: unknown)."""
    return None if m is None or m.accuracy is None else m.accuracy - alpha * m.cost


def quantile(values: list[float], q: float) -> float:
    """The nearest-rank quantile (0 for no values): cheap, and always a value that was measured."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def may_decide(t: Timing | None, remaining_s: float) -> bool:
    """Whether an agent with times `t` may decide (and perhaps reject) with `remaining_s` left: even
    after a slow decision it could still answer itself in time."""
    return t is None or t.decide_slow_s + _answer_s(t) <= remaining_s


def decision_limit(left_s: float, share: float, own: Timing, peer: Timing | None, hop_s: float) -> float:
    """How long an agent that may pass a query on to `peer` may spend deciding, of the `left_s` it has:
    `share` of it; or, when that is too little for a decision as long as its own usually are (p95), as
    long as twice its usual, if the peer's known need still fits. A hung model is still given up on
    after at most twice the agent's usual time, or the share."""
    usual = twice_usual(own)
    if peer is None or usual <= share * left_s:
        return share * left_s
    return max(share * left_s, min(usual, left_s - hop_s - _answer_s(peer)))


def twice_usual(own: Timing) -> float:
    """Twice an agent's usual time (its p95 decision or answer, the longer): more than that and its model
    is hung or broken, not just slow (0 before it has measured any)."""
    return 2 * max(own.decide_s, own.answer_s)


def _answer_s(t: Timing | None) -> float:
    # An answer takes at least a decision (a rejection is the start of a generation), so a peer that has only
    # rejected so far is expected to answer in no less than it takes to reject.
    return max(t.answer_s, t.decide_s) if t is not None else 0.0



class Latency:
    """An agent's own times and what it heard of its peers'."""

    def __init__(self, name: str) -> None:
        self.own = OwnTimes(name)
        self.peers = PeerTimes(name)
