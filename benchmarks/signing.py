"""Signing: what a swarm-key signature on every message would cost, against the codec it wraps.

The question (issue 16): should membership and query messages carry a signature made with a key
the whole swarm shares? This measures, in one process and one run, for the messages of one hop
(a query and its result) and for membership traffic (a gossip message of 16 updates, a full view
of 64 agents), the median time to encode and decode each message (the baseline: what every
message already costs) and the time to also sign it with HMAC-SHA256 and verify it, and reports
the ratio and the absolute microseconds a hop would add. The decision is in the README
("Trust boundary"): the number is small, but a signature would not stop the attacker it is for.

Run:  python benchmarks/signing.py [--rounds N] [--out benchmarks/results/signing.json]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import secrets
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from swarm.eval.summary import write_summary
from swarm.protocol import Gossip, Hop, Member, Query, Result, View, decode, encode

ROOT = Path(__file__).resolve().parent.parent
KEY = secrets.token_bytes(32)


def _members(n: int) -> list[Member]:
    return [Member(name=f"agent-{i:03d}", cost=round(0.1 + 0.8 * i / n, 3), incarnation=i, links=[f"agent-{(i + 1) % n:03d}"],
                   curve=[0.5] * 21) for i in range(n)]


def messages() -> dict[str, object]:
    query = Query(query_id="0f1e2d3c4b5a69788796a5b4c3d2e1f0", text="What is 1234 + 5678? Answer with the number only.", alpha=0.5,
                  budget_s=29.5, max_hops=8, visited=["m1"], sender="m1", digest="ab" * 32)
    result = Result(query_id=query.query_id, ok=True, text="The answer is: 6912", agent="m2", cost=0.3,
                    trace=[Hop(agent="m1", decision="reject", seconds=0.002, tokens_in=12, tokens_out=1),
                           Hop(agent="m2", decision="answer", seconds=0.004, tokens_in=12, tokens_out=6)])
    return {"query": query, "result": result, "gossip (16 updates)": Gossip(digest="cd" * 32, updates=_members(16)),
            "view (64 agents)": View(digest="ef" * 32, members=_members(64))}


def sign(data: bytes) -> bytes:
    return data + hmac.new(KEY, data, hashlib.sha256).digest()


def verify(signed: bytes) -> bytes:
    data, tag = signed[:-32], signed[-32:]
    if not hmac.compare_digest(tag, hmac.new(KEY, data, hashlib.sha256).digest()):
        raise ValueError("bad signature")
    return data


def median_us(fn: Callable[[], object], rounds: int) -> float:
    """Median of `rounds` blocks of 50 calls, in microseconds per call."""
    for _ in range(200):
        fn()
    samples = []
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(50):
            fn()
        samples.append((time.perf_counter() - began) / 50 * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "signing.json")
    args = parser.parse_args()

    rows, data = [], {}
    for name, body in messages().items():
        wire = encode(body)

        def plain(body=body) -> object:
            return decode(encode(body))

        def signed(body=body) -> object:
            return decode(verify(sign(encode(body))))

        # interleaved: each series in turn, so load on the machine falls on both alike
        base, both = [], []
        for _ in range(5):
            base.append(median_us(plain, args.rounds // 5))
            both.append(median_us(signed, args.rounds // 5))
        b, s = statistics.median(base), statistics.median(both)
        data[name] = {"bytes": len(wire), "codec_us": round(b, 2), "codec_and_hmac_us": round(s, 2), "added_us": round(s - b, 2), "ratio": round(s / b, 3)}
        rows.append((name, len(wire), b, s, s - b, s / b))

    per_hop = data["query"]["added_us"] + data["result"]["added_us"]
    header = f"{'message':<22} {'bytes':>7} {'encode+decode (us)':>19} {'+ HMAC sign+verify (us)':>24} {'added (us)':>11} {'ratio':>6}"
    lines = [header, "-" * len(header)]
    lines += [f"{n:<22} {size:>7,} {b:>19.2f} {s:>24.2f} {d:>11.2f} {r:>6.3f}" for n, size, b, s, d, r in rows]
    lines.append(f"one hop (query + result): {per_hop:.2f} us added")
    table = "\n".join(lines)
    print(table)
    write_summary(args.out, ROOT, table, {"messages": data, "per_hop_added_us": round(per_hop, 2)}, __file__)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
