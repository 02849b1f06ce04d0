"""Membership merge rules (SWIM style), refutation, gossip bookkeeping, and next-hop choice."""

from __future__ import annotations

import random

import pytest

from swarm.membership import STATE_ORDER, Membership
from swarm.neighbours import NeighbourTable
from swarm.protocol import Member


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def m(name: str, cost: float = 0.5, state: str = "alive", incarnation: int = 0, links: list[str] | None = None) -> Member:
    return Member(name=name, cost=cost, state=state, incarnation=incarnation, links=links or [])


def view_of(me: str = "me", /, *, cost: float = 0.5, clock=None, **peers: Member) -> Membership:
    mem = Membership(m(me, cost), clock=clock or FakeClock())
    for peer in peers.values():
        mem.merge(peer)
    return mem


# -- merge rules ------------------------------------------------------------------------------

STATES = ["alive", "suspect", "left", "dead"]


def test_state_order_is_alive_suspect_left_dead() -> None:
    assert sorted(STATES, key=STATE_ORDER.__getitem__) == STATES


def test_unknown_member_is_added() -> None:
    mem = view_of()
    assert mem.merge(m("p", cost=0.3, incarnation=2)) is True
    assert mem.get("p") == m("p", cost=0.3, incarnation=2)


@pytest.mark.parametrize("old_state", STATES)
@pytest.mark.parametrize("new_state", STATES)
def test_higher_incarnation_wins_whatever_the_states(old_state: str, new_state: str) -> None:
    mem = view_of(p=m("p", state=old_state, incarnation=4))
    assert mem.merge(m("p", state=new_state, incarnation=5)) is True
    assert (mem.get("p").state, mem.get("p").incarnation) == (new_state, 5)


@pytest.mark.parametrize("old_state", STATES)
@pytest.mark.parametrize("new_state", STATES)
def test_lower_incarnation_is_stale_and_ignored(old_state: str, new_state: str) -> None:
    mem = view_of(p=m("p", state=old_state, incarnation=5))
    digest = mem.digest()
    assert mem.merge(m("p", state=new_state, incarnation=4)) is False
    assert (mem.get("p").state, mem.get("p").incarnation) == (old_state, 5)
    assert mem.digest() == digest


@pytest.mark.parametrize("old_state", STATES)
@pytest.mark.parametrize("new_state", STATES)
def test_equal_incarnation_worse_state_wins(old_state: str, new_state: str) -> None:
    mem = view_of(p=m("p", state=old_state, incarnation=3))
    changed = mem.merge(m("p", state=new_state, incarnation=3))
    worse = STATES.index(new_state) > STATES.index(old_state)
    assert changed is worse
    assert mem.get("p").state == (new_state if worse else old_state)


def test_merge_all_returns_only_changes() -> None:
    mem = view_of(p=m("p", incarnation=2), q=m("q"))
    changed = mem.merge_all([m("p", incarnation=1), m("q", state="suspect"), m("r"), m("p", incarnation=2)])
    assert [c.name for c in changed] == ["q", "r"]


def test_mark_only_worsens_and_never_touches_self() -> None:
    mem = view_of(p=m("p", incarnation=2))
    assert mem.mark("p", "suspect") is True
    assert mem.get("p").incarnation == 2  # local judgement keeps the incarnation, so a refutation beats it
    assert mem.mark("p", "alive") is False
    assert mem.mark("p", "suspect") is False
    assert mem.mark("p", "dead") is True
    assert mem.mark("p", "suspect") is False
    assert mem.get("p").state == "dead"
    assert mem.mark("me", "dead") is False
    assert mem.mark("stranger", "dead") is False
    assert mem.get("stranger") is None
    assert mem.self_entry.state == "alive"


# -- refutation -------------------------------------------------------------------------------


@pytest.mark.parametrize("rumour", ["suspect", "dead", "left"])
def test_self_refutes_rumour_at_current_incarnation(rumour: str) -> None:
    me = view_of("me")
    assert me.merge(m("me", state=rumour, incarnation=0)) is True
    assert me.self_entry.state == "alive"
    assert me.self_entry.incarnation == 1


def test_refutation_beats_the_suspicion_at_a_peer() -> None:
    me = view_of("me")
    peer = view_of("peer", me=m("me", incarnation=0))
    peer.mark("me", "suspect")
    rumour = peer.get("me")
    me.merge(rumour)
    assert peer.merge(me.self_entry) is True
    assert peer.get("me").state == "alive"
    assert peer.get("me").incarnation == 1
    # The old suspicion, arriving late from a third agent, no longer wins.
    assert peer.merge(rumour) is False
    assert peer.get("me").state == "alive"


def test_refutation_of_a_dead_rumour_revives_at_peers() -> None:
    me = view_of("me")
    peer = view_of("peer", me=m("me", incarnation=0))
    peer.mark("me", "dead")
    me.merge(peer.get("me"))
    peer.merge(me.self_entry)
    assert (peer.get("me").state, peer.get("me").incarnation) == ("alive", 1)


def test_rejoining_agent_outbids_its_old_life() -> None:
    # An agent that died at incarnation 5 comes back under the same name with incarnation 0.
    peer = view_of("peer", me=m("me", state="dead", incarnation=5))
    fresh = view_of("me")
    assert peer.merge(fresh.self_entry) is False  # the new life alone cannot beat the old rumour
    assert fresh.merge(peer.get("me")) is True
    assert fresh.self_entry.state == "alive"
    assert fresh.self_entry.incarnation == 6
    assert peer.merge(fresh.self_entry) is True
    assert (peer.get("me").state, peer.get("me").incarnation) == ("alive", 6)


def test_old_alive_life_at_higher_incarnation_is_also_outbid() -> None:
    fresh = view_of("me")
    assert fresh.merge(m("me", state="alive", incarnation=3)) is True
    assert fresh.self_entry.incarnation == 4


def test_agreeing_self_entry_is_not_refuted() -> None:
    me = view_of("me")
    me.set_self()
    assert me.merge(m("me", incarnation=1)) is False
    assert me.merge(m("me", state="suspect", incarnation=0)) is False
    assert me.self_entry.incarnation == 1


def test_left_is_not_refuted() -> None:
    me = view_of("me")
    entry = me.set_self("left")
    assert (entry.state, entry.incarnation) == ("left", 1)
    assert me.merge(m("me", state="dead", incarnation=1)) is False
    assert me.merge(m("me", state="alive", incarnation=7)) is False
    assert (me.self_entry.state, me.self_entry.incarnation) == ("left", 1)


def test_set_self_left_beats_alive_at_peers() -> None:
    me = view_of("me")
    peer = view_of("peer", me=m("me"))
    peer.merge(me.set_self("left"))
    assert peer.get("me").state == "left"
    assert "me" not in [p.name for p in peer.peers()]


# -- digest and gossip bookkeeping ------------------------------------------------------------


def test_digest_changes_on_change_and_equal_maps_agree() -> None:
    a = view_of("a", b=m("b"), c=m("c", cost=0.9))
    b = view_of("b", a=m("a", cost=0.5), c=m("c", cost=0.9))
    assert a.digest() == b.digest()
    before = a.digest()
    assert a.merge(m("c", incarnation=0)) is False
    assert a.digest() == before
    a.mark("c", "suspect")
    assert a.digest() != before
    assert a.digest() != b.digest()
    b.merge(a.get("c"))
    assert a.digest() == b.digest()
    b.merge(m("d"))
    assert a.digest() != b.digest()


def test_digest_does_not_depend_on_merge_order() -> None:
    entries = [m("x", incarnation=2), m("y", state="dead"), m("z", state="suspect", incarnation=1)]
    one = view_of("me")
    two = view_of("me")
    one.merge_all(entries)
    two.merge_all(list(reversed(entries)))
    assert one.digest() == two.digest()


def test_take_updates_spends_transmissions_and_empties() -> None:
    mem = Membership(m("me"), retransmit=2)
    mem.merge_all([m("p"), m("q")])
    rounds = []
    while True:
        updates = mem.take_updates(limit=16)
        if not updates:
            break
        rounds.append(sorted(u.name for u in updates))
        assert len(rounds) < 50, "take_updates never empties"
    assert rounds, "fresh changes must be owed to the swarm"
    # Each change is sent a bounded number of times (retransmit * ceil(log2(n + 1))) and then stops.
    assert all("p" in r and "q" in r for r in rounds)
    assert 2 <= len(rounds) <= 2 * 3
    assert mem.take_updates() == []


def test_take_updates_respects_limit_and_prefers_most_owed() -> None:
    mem = Membership(m("me"), retransmit=1)
    mem.merge_all([m(f"p{i}") for i in range(6)])
    first = mem.take_updates(limit=2)
    assert len(first) == 2
    mem.merge(m("fresh"))
    second = mem.take_updates(limit=1)
    # The newest change owes the most transmissions, so it goes first.
    assert [u.name for u in second] == ["fresh"]


def test_take_updates_carries_latest_entry() -> None:
    mem = Membership(m("me"))
    mem.merge(m("p"))
    mem.mark("p", "suspect")
    [update] = mem.take_updates()
    assert update.state == "suspect"


def test_random_peer_and_reachable() -> None:
    mem = view_of(a=m("a"), s=m("s", state="suspect"), d=m("d", state="dead"), l=m("l", state="left"))
    rng = random.Random(1)
    seen = {mem.random_peer(rng).name for _ in range(100)}
    assert seen == {"a", "s"}
    assert [mem.reachable(n) for n in ("a", "s", "d", "l", "nobody")] == [True, True, False, False, False]
    assert view_of().random_peer(rng) is None


# -- suspicion timeout ------------------------------------------------------------------------


def test_expire_suspects_with_fake_clock() -> None:
    clock = FakeClock(10.0)
    mem = view_of(clock=clock, p=m("p"), q=m("q"))
    mem.mark("p", "suspect")
    clock.now = 11.0
    mem.merge(m("q", state="suspect"))  # a suspicion heard by gossip starts its own timer
    clock.now = 12.9
    assert mem.expire_suspects(3.0) == []
    clock.now = 13.0
    assert mem.expire_suspects(3.0) == ["p"]
    assert mem.get("p").state == "dead"
    assert mem.get("q").state == "suspect"
    assert mem.expire_suspects(3.0) == []
    clock.now = 14.0
    assert mem.expire_suspects(3.0) == ["q"]
    assert mem.get("q").state == "dead"


def test_refuted_suspect_does_not_expire() -> None:
    clock = FakeClock(0.0)
    mem = view_of(clock=clock, p=m("p", incarnation=1))
    mem.mark("p", "suspect")
    clock.now = 1.0
    mem.merge(m("p", incarnation=2))  # p refuted
    clock.now = 100.0
    assert mem.expire_suspects(3.0) == []
    assert mem.get("p").state == "alive"
    # A later suspicion starts a fresh timer.
    mem.mark("p", "suspect")
    clock.now = 102.0
    assert mem.expire_suspects(3.0) == []
    clock.now = 103.0
    assert mem.expire_suspects(3.0) == ["p"]


def test_suspect_that_left_does_not_expire_to_dead() -> None:
    clock = FakeClock(0.0)
    mem = view_of(clock=clock, p=m("p"))
    mem.mark("p", "suspect")
    mem.merge(m("p", state="left", incarnation=1))
    clock.now = 50.0
    assert mem.expire_suspects(1.0) == []
    assert mem.get("p").state == "left"


# -- NeighbourTable ---------------------------------------------------------------------------


def test_cascade_picks_cheapest_stronger_unvisited_alive_peer() -> None:
    mem = view_of("me", cost=0.3, cheap=m("cheap", cost=0.1), mid=m("mid", cost=0.5), top=m("top", cost=0.9), mid2=m("mid2", cost=0.6))
    table = NeighbourTable(mem, "cascade")
    assert table.candidates() == ["mid", "mid2", "top"]
    assert table.next_hop() == "mid"
    assert table.next_hop({"mid"}) == "mid2"
    assert table.next_hop({"mid", "mid2"}) == "top"
    assert table.next_hop({"mid", "mid2", "top"}) is None


def test_cascade_equal_cost_broken_by_name() -> None:
    mem = view_of("m", cost=0.5, a=m("a", cost=0.5), z=m("z", cost=0.5), x=m("x", cost=0.7))
    # (cost, name) is a total order: with equal costs only later names are "stronger".
    assert NeighbourTable(mem).candidates() == ["z", "x"]


def test_suspects_go_after_alive_peers() -> None:
    mem = view_of("me", cost=0.1, s=m("s", cost=0.2, state="suspect"), a=m("a", cost=0.8), b=m("b", cost=0.9))
    assert NeighbourTable(mem).candidates() == ["a", "b", "s"]


def test_dead_and_left_are_never_candidates() -> None:
    mem = view_of("me", cost=0.1, d=m("d", cost=0.2, state="dead"), l=m("l", cost=0.3, state="left"), a=m("a", cost=0.9))
    table = NeighbourTable(mem)
    assert table.candidates() == ["a"]
    mem.mark("a", "dead")
    assert table.next_hop() is None


def test_candidates_follow_membership_changes() -> None:
    mem = view_of("me", cost=0.1, a=m("a", cost=0.5))
    table = NeighbourTable(mem)
    assert table.next_hop() == "a"
    mem.merge(m("b", cost=0.2))
    assert table.next_hop() == "b"
    mem.merge(m("b", cost=0.2, state="left", incarnation=1))
    assert table.next_hop() == "a"


def test_graph_uses_links_in_either_direction_only() -> None:
    # me links to x; y links to me (declared at y's end only); z is stronger but unlinked.
    me = Membership(m("me", cost=0.1, links=["x"]))
    me.merge_all([m("x", cost=0.7), m("y", cost=0.4, links=["me"]), m("z", cost=0.2), m("w", cost=0.05, links=["me"])])
    table = NeighbourTable(me, "graph")
    assert sorted(p.name for p in table.neighbours()) == ["w", "x", "y"]
    assert table.candidates() == ["y", "x"]
    assert "z" in NeighbourTable(me, "cascade").candidates()


def test_graph_links_of_third_parties_do_not_count() -> None:
    me = Membership(m("me", cost=0.1))
    me.merge_all([m("x", cost=0.5, links=["y"]), m("y", cost=0.6, links=["x"])])
    assert NeighbourTable(me, "graph").candidates() == []


def test_graph_excludes_dead_linked_peer() -> None:
    me = Membership(m("me", cost=0.1, links=["x", "y"]))
    me.merge_all([m("x", cost=0.5, state="dead"), m("y", cost=0.6, state="suspect")])
    assert NeighbourTable(me, "graph").candidates() == ["y"]


def test_changes_of_state_are_kept_with_their_age_for_status() -> None:
    clock = FakeClock()
    peer = view_of("peer", clock=clock, me=m("me"))
    clock.now += 1
    peer.mark("me", "suspect")
    peer.merge(m("me", incarnation=1))  # the refutation
    peer.merge(m("me", incarnation=1))  # no news: not a change
    peer.set_self(curve=[0.5])  # a new curve under the same state: not a change of state
    clock.now += 2
    changes = [(c.name, c.previous, c.state, c.incarnation, c.age_s) for c in peer.changes()]
    assert changes == [("me", None, "alive", 0, 3.0), ("me", "alive", "suspect", 0, 2.0), ("me", "suspect", "alive", 1, 2.0)]
