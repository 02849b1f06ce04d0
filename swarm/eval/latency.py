"""The latency experiment (`swarm eval latency`): end-to-end latency by hop count, and what
rejections really cost against the paper's assumption that they are free.

The swarm (and, with `--trained DIR`, the self-aware swarm; with `--probes DIR`, the probe swarm) answers the in-domain test items at
each alpha; the terminal agent answers them alone as the reference. For every query, its agent
calls are split into rejections (every step but the one whose answer counts) and the answer:

- latency p50/p95 overall and by hops (`metrics.latency`);
- the measured cost of rejections: tokens, model-seconds and FLOPs (tokens x FLOPs per token of
  the rejecting agent) per query, and their share of all the query's FLOPs;
- utility under three costs: the paper's (answering agent only, rejections free), compute of the
  answer only (the same assumption, measured), compute of every call (rejections included);
  compute costs are scaled so that the terminal agent answering alone costs its normalised cost.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from swarm.cluster.connect import private_ray
from swarm.eval import metrics
from swarm.eval.data import held_out_items
from swarm.eval.harness import (
    Forced,
    SelfRouting,
    agent_costs,
    flops_per_token,
    run_method,
    say,
)
from swarm.eval.records import Record
from swarm.tasks.testbed_families import IN_DOMAIN_FAMILIES


def split_steps(r: Record):
    """(rejection steps, answer steps): the answer is the last decided step of the counted agent."""
    decided = [k for k, st in enumerate(r.steps) if st.decision in ("answer", "forced")]
    last = decided[-1] if decided else len(r.steps)
    return r.steps[:last] + r.steps[last + 1:], r.steps[last:last + 1]


def rejection_cost(records: list[Record], fpt: dict[str, float], ref_flops: float, ref_cost: float, alpha: float) -> dict:
    n = max(1, len(records))
    rej = [split_steps(r)[0] for r in records]
    ans = [split_steps(r)[1] for r in records]
    flops = lambda steps: sum(st.tokens * fpt.get(st.agent, 0.0) for st in steps)
    rej_flops, ans_flops = sum(map(flops, rej)) / n, sum(map(flops, ans)) / n
    acc = metrics.accuracy(records)
    c_ans, c_all = ans_flops / ref_flops * ref_cost, (ans_flops + rej_flops) / ref_flops * ref_cost
    return {
        "rejections_per_query": sum(len(x) for x in rej) / n,
        "reject_tokens_per_query": sum(st.tokens for x in rej for st in x) / n,
        "reject_model_seconds_per_query": sum(st.seconds for x in rej for st in x) / n,
        "answer_tokens_per_query": sum(st.tokens for x in ans for st in x) / n,
        "reject_share_of_flops": rej_flops / (rej_flops + ans_flops) if rej_flops + ans_flops else 0.0,
        "paper_cost": metrics.paper_cost(records), "compute_cost_answer_only": c_ans, "compute_cost_all_calls": c_all,
        "utility_paper": metrics.utility(records, alpha), "utility_compute_answer_only": acc - alpha * c_ans,
        "utility_compute_all_calls": acc - alpha * c_all,
    }


def run_latency(out: Path, s) -> list[Path]:
    from swarm import launch
    from swarm.topology import load_topology

    alphas = tuple(s.alphas) or (0.2, 0.5, 0.8)
    topo = load_topology(s.topology)
    swarms = {"swarm": topo}
    if s.trained is not None:
        from swarm.eval.trained import trained_topology

        swarms["swarm-trained"] = trained_topology(topo, s.trained, alphas)
    if s.probes is not None:
        from swarm.eval.trained import probe_topology

        swarms["swarm-probe"] = probe_topology(topo, s.probes)
    fpt = flops_per_token(topo)
    test = held_out_items(s.per_cell, IN_DOMAIN_FAMILIES)
    terminal = topo.ordered_agents()[-1]
    began = time.monotonic()
    records: dict[str, dict[float, list[Record]]] = {}
    with private_ray(s.address):
        for method, t in swarms.items():
            swarm = launch(t, address=s.address, name=f"lat-{uuid.uuid4().hex[:8]}")
            try:
                if method == "swarm":
                    records["reference"] = {0.5: run_method(Forced(terminal.name, "reference"), swarm, test, 0.5, out / "records", progress=say)}
                    costs = agent_costs(swarm)
                records[method] = {a: run_method(SelfRouting(method), swarm, test, a, out / "records", progress=say) for a in alphas}
            finally:
                swarm.shutdown()
    ref = records.pop("reference")[0.5]
    ref_flops = metrics.mean_flops(ref, fpt) if fpt else 0.0
    summary = {
        "experiment": "latency", "title": "latency by hops, and the measured cost of rejections",
        "setup": (f"topology {s.topology}{' and its self-aware version from ' + str(s.trained) if s.trained else ''}"
                  f"{' and its probe version from ' + str(s.probes) if s.probes else ''}; "
                  f"{len(test)} in-domain test items ({s.per_cell} per family x difficulty of held_out(0, 200)); reference: "
                  f"{terminal.name} answering alone (latency p50 {metrics.latency(ref)['p50_s']:.2f} s)"),
        "alphas": list(alphas), "agents": costs, "flops_per_token": fpt, "seconds": time.monotonic() - began,
        "reference": {"agent": terminal.name, "latency": metrics.latency(ref), "tokens": metrics.mean_tokens(ref)},
        "methods": {},
    }
    for method, by_alpha in records.items():
        summary["methods"][method] = {}
        for a, recs in by_alpha.items():
            row = {"latency": metrics.latency(recs), "calls": metrics.calls_per_query(recs), "accuracy": metrics.accuracy(recs)}
            if ref_flops:
                row["rejections"] = rejection_cost(recs, fpt, ref_flops, costs[terminal.name], a)
            summary["methods"][method][f"{a:g}"] = row
    return write(summary, out)


def markdown(summary: dict) -> str:
    lines = [f"# {summary['title']}", "", summary["setup"], "", "## Latency by hop count (p50 / p95 s, n)", "",
             "| method | alpha | all | " + " | ".join(f"{h} hops" for h in range(4)) + " |", "|---" * 7 + "|"]
    for method, by_alpha in summary["methods"].items():
        for a, row in by_alpha.items():
            lat = row["latency"]
            hops = [lat["by_hops"].get(h) or lat["by_hops"].get(str(h)) for h in range(4)]
            cells = [f"{x['p50_s']:.2f} / {x['p95_s']:.2f} ({x['n']})" if x else "-" for x in hops]
            lines.append(f"| {method} | {a} | {lat['p50_s']:.2f} / {lat['p95_s']:.2f} | " + " | ".join(cells) + " |")
    lines += ["", "## Are rejections free?", "",
              ("| method | alpha | rejections/query | reject tokens/query | answer tokens/query | rejections' share of FLOPs "
              "| cost: paper / compute (answer only) / compute (all calls) | utility: paper / answer only / all calls |"),
              "|---" * 8 + "|"]
    for method, by_alpha in summary["methods"].items():
        for a, row in by_alpha.items():
            r = row.get("rejections")
            if not r:
                continue
            lines.append(f"| {method} | {a} | {r['rejections_per_query']:.2f} | {r['reject_tokens_per_query']:.1f} | {r['answer_tokens_per_query']:.1f} "
                         f"| {r['reject_share_of_flops']:.2f} | {r['paper_cost']:.3f} / {r['compute_cost_answer_only']:.3f} / {r['compute_cost_all_calls']:.3f} "
                         f"| {r['utility_paper']:.3f} / {r['utility_compute_answer_only']:.3f} / {r['utility_compute_all_calls']:.3f} |")
    return "\n".join(lines) + "\n"


def hops_png(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for k, (method, by_alpha) in enumerate(summary["methods"].items()):
        for j, (a, row) in enumerate(by_alpha.items()):
            hops = sorted(row["latency"]["by_hops"].items(), key=lambda kv: int(kv[0]))
            ax.plot([int(h) for h, _ in hops], [x["p50_s"] for _, x in hops], "o-" if k == 0 else "s--",
                    color=plt.cm.tab10(j), label=f"{method} a={a} (p50)")
    ax.set(xlabel="hops (forwards before the answer)", ylabel="end-to-end latency (s)", title="latency by hop count")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(summary: dict, out: Path) -> list[Path]:
    from swarm.eval.report import write_outputs

    return write_outputs(out, "latency", summary, markdown(summary), {"hops": lambda p: hops_png(summary, p)})
