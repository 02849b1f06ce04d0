"""Write an experiment's results: JSON, a markdown table, a cost-accuracy frontier PNG and a routing-distribution PNG."""

from __future__ import annotations

import json
from pathlib import Path


def markdown_table(summary: dict) -> str:
    """One row per method: utility, accuracy, paper cost and utility under the measured compute cost
    per alpha; calls, p95 latency and share of the Oracle's utility at the middle alpha."""
    alphas = summary["alphas"]
    lines = [
        "| method | " + " | ".join(f"utility a={a:g}" for a in alphas) + " | " + " | ".join(f"acc a={a:g}" for a in alphas)
        + " | " + " | ".join(f"cost a={a:g}" for a in alphas) + " | " + " | ".join(f"compute utility a={a:g}" for a in alphas)
        + " | calls (a=0.5) | p95 s (a=0.5) | share of Oracle (a=0.5) |",
        "|---" * (1 + 4 * len(alphas) + 3) + "|",
    ]
    mid = "0.5" if "0.5" in next(iter(summary["methods"].values())) else f"{alphas[len(alphas) // 2]:g}"
    for method, by_alpha in summary["methods"].items():
        cells = [f"{by_alpha[f'{a:g}']['utility']:.3f}" for a in alphas]
        cells += [f"{by_alpha[f'{a:g}']['accuracy']:.3f}" for a in alphas]
        cells += [f"{by_alpha[f'{a:g}']['cost']:.3f}" for a in alphas]
        cells += [f"{by_alpha[f'{a:g}'].get('compute_utility', float('nan')):.3f}" for a in alphas]
        m = by_alpha[mid]
        cells += [f"{m['calls']:.2f}", f"{m['latency']['p95_s']:.2f}", f"{m.get('oracle_share', float('nan')):.2f}"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def frontier_png(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alphas = summary["alphas"]
    fig, axes = plt.subplots(1, len(alphas), figsize=(5 * len(alphas), 4.2), sharey=True)
    axes = list(axes) if len(alphas) > 1 else [axes]
    for ax, a in zip(axes, alphas, strict=True):
        for k, (method, by_alpha) in enumerate(summary["methods"].items()):
            m = by_alpha[f"{a:g}"]
            ax.scatter(m["cost"], m["accuracy"], s=70 if method == "swarm" else 40, color=plt.cm.tab10(k % 10),
                       marker="osD^v<>phPX"[k % 10] if method != "swarm" else "*", label=method, edgecolors="black", linewidths=0.4)
        xs = [0, 1]
        for u in (0.2, 0.4, 0.6, 0.8):  # iso-utility lines: accuracy = u + alpha x cost
            ax.plot(xs, [u + a * x for x in xs], color="0.85", lw=0.8, zorder=0)
        ax.set(title=f"alpha = {a:g} (grey: equal utility)", xlabel="cost (answering agent, normalised)", xlim=(0, 1), ylim=(0, 1.05))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[-1].legend(loc="lower right", fontsize=8, ncol=2)
    fig.suptitle(summary.get("title", "cost-accuracy frontier"))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def routing_png(summary: dict, path: Path) -> None:
    """Share of queries answered by each agent, per method and alpha (stacked bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agents, alphas, methods = list(summary["agents"]), summary["alphas"], list(summary["methods"])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.4 * len(methods) * len(alphas) + 2.5), 4.6))
    ticks, tick_labels = [], []
    for g, method in enumerate(methods):
        base = g * (len(alphas) + 1)
        for j, a in enumerate(alphas):
            bottom = 0.0
            for k, agent in enumerate(agents):
                share = summary["methods"][method][f"{a:g}"]["routing"].get(agent, 0.0)
                ax.bar(base + j, share, bottom=bottom, color=plt.cm.viridis(k / max(1, len(agents) - 1)), label=agent if g == j == 0 else None)
                bottom += share
            ticks.append(base + j)
            tick_labels.append(f"{a:g}")
        ax.text(base + (len(alphas) - 1) / 2, -0.13, method, ha="center", va="top", fontsize=8, transform=ax.get_xaxis_transform())
    ax.set_xticks(ticks, tick_labels, fontsize=7)
    ax.set(ylabel="share of queries answered", ylim=(0, 1), title="routing distribution per method (bars: alpha)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(out_dir: Path, name: str, data: dict, markdown: str, plots: dict) -> list[Path]:
    """Every experiment's files: `<name>.json`, `<name>.md`, and one `<name>_<suffix>.png` per
    plot (suffix -> a function drawing into that path)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md"]
    paths[0].write_text(json.dumps(data, indent=1, default=str))
    paths[1].write_text(markdown)
    for suffix, draw in plots.items():
        paths.append(out_dir / f"{name}_{suffix}.png")
        draw(paths[-1])
    return paths


def write(summary: dict, out_dir: Path, name: str) -> list[Path]:
    text = f"# {summary.get('title', name)}\n\n{summary.get('setup', '')}\n\n" + markdown_table(summary)
    return write_outputs(out_dir, name, summary, text, {"frontier": lambda p: frontier_png(summary, p),
                                                        "routing": lambda p: routing_png(summary, p)})
