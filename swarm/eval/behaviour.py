"""The behaviour experiment's report (`swarm eval behaviour`): how the swarm's routing changes
with alpha. The runs themselves are `swarm.eval.experiments.methods_experiment` with the swarm(s)
only (and the Oracle and Largest, the references every summary needs); this module turns the
summary into three tables and three plots:

- routing: the share of queries answered by each agent, per method and alpha;
- answer rate: per agent, the share of the queries that reached it that it answered (the
  terminal agent always answers), per swarm and alpha;
- easy versus hard: accuracy and cost (the paper's, and model-seconds) on easy queries (some
  agent of the cheaper half of the ladder answers them correctly when forced) and hard ones.
"""

from __future__ import annotations

from pathlib import Path

SELF_ROUTING = ("swarm", "swarm-trained")


def _shown(summary: dict) -> list[str]:
    return [m for m in summary["methods"] if m != "largest"]


def markdown(summary: dict) -> str:
    agents, alphas = list(summary["agents"]), [f"{a:g}" for a in summary["alphas"]]
    lines = [f"# {summary['title']}", "", summary["setup"], "",
             "## Routing: share of queries answered by each agent", "",
             "| method | alpha | " + " | ".join(agents) + " |", "|---" * (2 + len(agents)) + "|"]
    for m in _shown(summary):
        for a in alphas:
            r = summary["methods"][m][a]["routing"]
            lines.append(f"| {m} | {a} | " + " | ".join(f"{r.get(x, 0.0):.2f}" for x in agents) + " |")
    lines += ["", "## Answer rate: answered / reached, per agent ('-': no query reached it)", "",
              "| method | alpha | " + " | ".join(agents) + " |", "|---" * (2 + len(agents)) + "|"]
    for m in (m for m in SELF_ROUTING if m in summary["methods"]):
        for a in alphas:
            r = summary["methods"][m][a]["answer_rate"]
            lines.append(f"| {m} | {a} | " + " | ".join(f"{r[x]:.2f}" if x in r else "-" for x in agents) + " |")
    eh = summary["methods"][_shown(summary)[0]][alphas[0]]["easy_hard"]
    lines += ["", (f"## Easy ({eh['easy']['n']}) versus hard ({eh['hard']['n']}) queries: easy = some agent of the cheaper half "
                   f"({', '.join(agents[: max(1, len(agents) // 2)])}) answers it correctly when forced"), "",
              "| method | alpha | easy acc | easy cost | easy model-s | hard acc | hard cost | hard model-s |", "|---" * 8 + "|"]
    for m in _shown(summary):
        for a in alphas:
            e, h = (summary["methods"][m][a]["easy_hard"][k] for k in ("easy", "hard"))
            lines.append(f"| {m} | {a} | {e['accuracy']:.3f} | {e['cost']:.3f} | {e['model_seconds']:.3f} | "
                         f"{h['accuracy']:.3f} | {h['cost']:.3f} | {h['model_seconds']:.3f} |")
    return "\n".join(lines) + "\n"


def answer_rate_png(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in SELF_ROUTING if m in summary["methods"]]
    agents, alphas = list(summary["agents"]), summary["alphas"]
    fig, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), 4), sharey=True, squeeze=False)
    for ax, m in zip(axes[0], methods, strict=True):
        for k, agent in enumerate(agents[:-1]):  # the terminal agent always answers
            ys = [summary["methods"][m][f"{a:g}"]["answer_rate"].get(agent, float("nan")) for a in alphas]
            ax.plot(alphas, ys, marker="o", color=plt.cm.viridis(k / max(1, len(agents) - 1)), label=agent)
        ax.set(title=m, xlabel="alpha (weight of cost)", ylim=(0, 1.05), xticks=alphas)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("answer rate (answered / reached)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle("answer rate per agent as alpha changes")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def easy_hard_png(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods, alphas = _shown(summary), summary["alphas"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(methods) * len(alphas)), 4.2))
    width = 0.4
    ticks, labels = [], []
    for g, m in enumerate(methods):
        for j, a in enumerate(alphas):
            x = g * (len(alphas) + 1) + j
            eh = summary["methods"][m][f"{a:g}"]["easy_hard"]
            ax.bar(x - width / 2, eh["easy"]["cost"], width, color="tab:green", label="easy" if x == 0 else None)
            ax.bar(x + width / 2, eh["hard"]["cost"], width, color="tab:red", label="hard" if x == 0 else None)
            ticks.append(x)
            labels.append(f"{m}\na={a:g}")
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.set(ylabel="mean cost of the answering agent", ylim=(0, 1), title="cost on easy versus hard queries")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(summary: dict, out: Path) -> list[Path]:
    from swarm.eval.report import routing_png, write_outputs

    return write_outputs(out, "behaviour", summary, markdown(summary), {
        "routing": lambda p: routing_png({**summary, "methods": {m: summary["methods"][m] for m in _shown(summary)}}, p),
        "answer_rate": lambda p: answer_rate_png(summary, p),
        "easy_hard": lambda p: easy_hard_png(summary, p),
    })
