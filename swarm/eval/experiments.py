"""Experiments (`swarm eval EXPERIMENT`). Each launches the topology's swarm on Ray, collects
every agent's forced answers on the training and test items (the labels the learned baselines
train on, and the Oracle's), runs every method through the harness, and writes JSON, a markdown
table and a frontier PNG into a fresh results directory, marked `.swarm-results` (--overwrite and --resume
act only on a directory holding that mark, or an empty one). Records are kept per (method, alpha)
in `records/`, so a run started again with --resume skips what is done.

- main: utility, accuracy and cost of every method at alpha 0.2, 0.5, 0.8, in-domain.
- ood: the same methods on the out-of-domain family (`rev`), Balance (alpha 0.5) by default;
  every learned baseline still trains on in-domain items only.
- behaviour: the swarm(s) only, in-domain, at alpha 0.2, 0.5, 0.8: routing distribution and
  answer rate per agent as alpha changes, cost on easy versus hard queries (`swarm.eval.behaviour`).
- live, modularity, latency: see `swarm.eval.live`, `swarm.eval.modularity`, `swarm.eval.latency`.

With `Settings.trained` (`--trained DIR`), main, ood and behaviour also run `swarm-trained`: the same
topology with every agent but the terminal one replaced by its self-aware model from `swarm train`
(`DIR/<agent>/model`, see `swarm.eval.trained`), on a second swarm launched after the first.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from swarm.errors import SwarmError
from swarm.outdir import check_output_dir
from swarm.cluster.connect import private_ray
from swarm.eval import metrics
from swarm.eval.data import held_out_items, training_items
from swarm.eval.harness import (
    Forced,
    Routed,
    SelfRouting,
    agent_costs,
    flops_per_token,
    collect_labels,
    run_method,
    say,
)
from swarm.tasks.testbed_families import IN_DOMAIN_FAMILIES, OOD_FAMILIES

EXPERIMENTS = {  # name -> (test families, default alphas, title)
    "main": (IN_DOMAIN_FAMILIES, (0.2, 0.5, 0.8), "main: every method, in-domain, quick testbed ladder"),
    "ood": (OOD_FAMILIES, (0.5,), "ood: every method on the out-of-domain family, trained in-domain"),
    "behaviour": (IN_DOMAIN_FAMILIES, (0.2, 0.5, 0.8), "behaviour: who answers, and at what cost, as alpha changes"),
}
DEFAULT_METHODS = {"behaviour": ("swarm",)}  # (plus the Oracle and Largest, which every run needs)
OTHER_EXPERIMENTS = ("live", "modularity", "latency")  # their own runners below
ALL_EXPERIMENTS = (*EXPERIMENTS, *OTHER_EXPERIMENTS)


@dataclass
class Settings:
    topology: Path = Path("topologies/quickstart.yaml")
    per_cell: int = 20  # test items per (family, difficulty)
    train: int = 800  # training items
    alphas: tuple[float, ...] = ()  # empty: the experiment's own
    seed: int = 0
    address: str | None = None
    methods: tuple[str, ...] = field(default_factory=tuple)  # empty: all
    trained: Path | None = None  # `swarm train` output dirs (DIR/<agent>/model): also run the self-aware swarm
    probes: Path | None = None  # `swarm probe` output dirs (DIR/<agent>/probe): also run the probe swarm (same models)
    duration_s: float = 90.0  # live: length of the query stream
    rate: float = 2.0  # live: queries per second


RESULTS_MARKER = ".swarm-results"  # in every results directory `swarm eval` made: {"experiment": name}


def prepare_dir(out: Path, name: str, overwrite: bool, resume: bool) -> None:
    """Make the results directory of experiment `name`. An existing one is used only with --overwrite
    (deleted first) or --resume, and only if `swarm eval` made it (it holds RESULTS_MARKER; --resume:
    of the same experiment) or it is empty; see `swarm.outdir`."""
    where = check_output_dir(out, RESULTS_MARKER, "results directory")
    if out.exists() and not (overwrite or resume):
        raise SwarmError(f"results directory {out} exists: choose another, or pass --overwrite (start again) or --resume (continue it)")
    marker = where / RESULTS_MARKER
    if marker.is_file():
        made_for = _experiment_of(marker)
        if resume and made_for != name:
            raise SwarmError(f"results directory {out} holds the results of experiment {made_for!r}, not {name!r}; "
                             "--resume continues the same experiment (choose another directory, or --overwrite)")
        if overwrite:
            shutil.rmtree(where)
    where.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"experiment": name}) + "\n")


def _experiment_of(marker: Path) -> str | None:
    try:
        return json.loads(marker.read_text()).get("experiment")
    except (OSError, ValueError, AttributeError):
        return None


def run_experiment(name: str, out: Path, settings: Settings, overwrite: bool = False, resume: bool = False) -> list[Path]:
    if name not in ALL_EXPERIMENTS:
        raise SwarmError(f"unknown experiment {name!r} (expected one of: {', '.join(ALL_EXPERIMENTS)})")
    if settings.trained is not None:  # checked before the results directory is made
        from swarm.eval.trained import trained_topology
        from swarm.topology import load_topology

        default_alphas = EXPERIMENTS[name][1] if name in EXPERIMENTS else {"latency": (0.2, 0.5, 0.8)}.get(name, (0.5,))
        alphas = tuple(settings.alphas) or default_alphas
        trained_topology(load_topology(settings.topology), settings.trained, alphas[:1] if name == "live" else alphas)
    if name == "live":  # a stream cannot be resumed midway: a finished one is kept, an unfinished one starts again
        prepare_dir(out, name, overwrite, resume)
        if resume and (out / "live.json").exists():
            return [out / "live.json", out / "live.md", out / "live_timeline.png"]
        (out / "records" / "live.jsonl").unlink(missing_ok=True)
    else:
        prepare_dir(out, name, overwrite, resume)
    return _RUNNERS.get(name, methods_experiment)(name, out, settings)


def _live(name: str, out: Path, settings: Settings) -> list[Path]:
    from swarm.eval.live import LiveSettings, run_live

    return run_live(out, LiveSettings(topology=settings.topology, duration_s=settings.duration_s, rate=settings.rate,
                                      alpha=(settings.alphas or (0.5,))[0], seed=settings.seed, address=settings.address,
                                      trained=settings.trained))


def _modularity(name: str, out: Path, settings: Settings) -> list[Path]:
    from swarm.eval.modularity import run_modularity

    return run_modularity(out, settings)


def _latency(name: str, out: Path, settings: Settings) -> list[Path]:
    from swarm.eval.latency import run_latency

    return run_latency(out, settings)


# The experiments with a runner of their own; the others (EXPERIMENTS) compare methods on a task set.
_RUNNERS = {"live": _live, "modularity": _modularity, "latency": _latency}


LEARNED = ("knn", "forc", "routellm-mf", "frugalgpt")  # the methods that train on the training items' labels
ROUTERS = (*LEARNED[:3], "frugalgpt", "automix")  # the centralized routers and cascades the swarm is compared with
PROBE = "swarm-probe"  # the same agents, each deciding with its probe and value curve (Settings.probes)
RECOMMENDED = PROBE  # the configuration the README recommends
METHODS = ("oracle", "smallest", "largest", "random", *LEARNED, "automix", "swarm")


def build_methods(names, labels_train, answers_train, labels_test, train, costs, seed):
    """The named methods (see METHODS), the learned ones fitted on the training labels."""
    from swarm.eval.baselines import (
        FORCRouter,
        FrugalGPT,
        KNNRouter,
        Largest,
        MFRouter,
        Oracle,
        Random,
        Smallest,
    )
    from swarm.eval.baselines.cascades import AutoMix

    agents = list(costs)
    make = {
        "oracle": lambda: Routed("oracle", Oracle(labels_test)),
        "smallest": lambda: Routed("smallest", Smallest()),
        "largest": lambda: Routed("largest", Largest()),
        "random": lambda: Routed("random", Random(seed)),
        "knn": lambda: Routed("knn", KNNRouter().fit(train, labels_train, agents)),
        "forc": lambda: Routed("forc", FORCRouter(seed=seed).fit(train, labels_train, agents)),
        "routellm-mf": lambda: Routed("routellm-mf", MFRouter(seed=seed).fit(train, labels_train, agents)),
        "frugalgpt": lambda: FrugalGPT(seed).fit(train, answers_train, labels_train, costs),
        "automix": lambda: AutoMix(),
        "swarm": lambda: SelfRouting("swarm"),
    }
    return {n: make[n]() for n in METHODS if n in names}


def chosen_methods(name: str, requested: tuple[str, ...]) -> tuple[str, ...]:
    """The methods an experiment runs: those requested (default: the experiment's own, else all),
    always with the Oracle and Largest (every summary is relative to them)."""
    wanted = requested or DEFAULT_METHODS.get(name, METHODS)
    unknown = set(wanted) - set(METHODS)
    if unknown:
        raise SwarmError(f"unknown method(s) {', '.join(sorted(unknown))} (expected: {', '.join(METHODS)})")
    return tuple(m for m in METHODS if m in wanted or m in ("oracle", "largest"))


def methods_experiment(name: str, out: Path, s: Settings) -> list[Path]:
    """Every method on one set of test items (the experiment's families), at each alpha."""
    from swarm import launch
    from swarm.eval import report
    from swarm.topology import load_topology

    families, default_alphas, title = EXPERIMENTS[name]
    alphas = tuple(s.alphas) or default_alphas
    names = chosen_methods(name, tuple(s.methods))
    topo = load_topology(s.topology)
    trained_topo = None
    if s.trained is not None:  # checked before anything starts: a missing model or scenario is a clear error now
        from swarm.eval.trained import trained_topology

        trained_topo = trained_topology(topo, s.trained, alphas)
    probe_topo = None
    if s.probes is not None:
        from swarm.eval.trained import probe_topology

        probe_topo = probe_topology(topo, s.probes)
    test, train = held_out_items(s.per_cell, families), training_items(s.train)
    began = time.monotonic()
    with private_ray(s.address):
        swarm = launch(topo, address=s.address, name=f"eval-{uuid.uuid4().hex[:8]}")
        try:
            costs = agent_costs(swarm)
            say(f"swarm {swarm.name} up: {', '.join(f'{a} ({c:g})' for a, c in costs.items())}; {len(train)} training, {len(test)} test items")
            labels_train, answers_train = {}, {}
            if set(names) & set(LEARNED):  # the agents' forced answers to the training items: what the learned methods fit
                labels_train, per_agent_train = collect_labels(swarm, train, out / "records" / "train", progress=say)
                answers_train = {a: {r.query_id: r.answer for r in rs} for a, rs in per_agent_train.items()}
            labels_test, _ = collect_labels(swarm, test, out / "records" / f"test-{name}", progress=say)
            methods = build_methods(names, labels_train, answers_train, labels_test, train, costs, s.seed)
            records = {method: {a: run_method(m, swarm, test, a, out / "records" / name, progress=say) for a in alphas}
                       for method, m in methods.items()}
            swarm.shutdown()
            trained_labels = None
            if trained_topo is not None:
                swarm = launch(trained_topo, address=s.address, name=f"eval-{uuid.uuid4().hex[:8]}")
                say(f"self-aware swarm {swarm.name} up ({trained_topo.name}, models from {s.trained})")
                trained_labels = trained_forced_labels(swarm, trained_topo, test, labels_test, out / "records" / f"test-{name}-trained", say)
                records["swarm-trained"] = {a: run_method(SelfRouting("swarm-trained"), swarm, test, a, out / "records" / name, progress=say)
                                            for a in alphas}
                swarm.shutdown()
            if probe_topo is not None:
                swarm = launch(probe_topo, address=s.address, name=f"eval-{uuid.uuid4().hex[:8]}")
                say(f"probe swarm {swarm.name} up ({probe_topo.name}, probes from {s.probes}; the same models)")
                records[PROBE] = {a: run_method(SelfRouting(PROBE), swarm, test, a, out / "records" / name, progress=say)
                                  for a in alphas}
        finally:
            swarm.shutdown()
    agents = list(costs)
    summary: dict = {
        "experiment": name, "title": title,
        "setup": (f"topology {s.topology}; test: held_out(0, 200) families {', '.join(families)}, first {s.per_cell} per family x difficulty "
                  f"({len(test)} items); train: {len(train)} items of training_stream(0) excluding held_out(0, 200); seed {s.seed}"),
        "alphas": list(alphas), "agents": costs, "topology": topo.model_dump(mode="json"),
        "settings": {"per_cell": s.per_cell, "train": s.train, "seed": s.seed}, "seconds": time.monotonic() - began,
        "forced_accuracy": {"train": _forced_acc(labels_train, agents), "test": _forced_acc(labels_test, agents)},
        "methods": {},
        "routers": [m for m in ROUTERS if m in records],  # the centralized routers and cascades
        "recommended": RECOMMENDED if RECOMMENDED in records else None,
    }
    if trained_topo is not None:
        summary["trained"] = {"dir": str(s.trained), "topology": trained_topo.model_dump(mode="json"),
                              "forced_accuracy_test": _forced_acc(trained_labels, agents)}
    fpt = flops_per_token(topo)
    summary["flops_per_token"] = fpt
    for method, by_alpha in records.items():
        summary["methods"][method] = {}
        for a, recs in by_alpha.items():
            ref = metrics.mean_model_seconds(records["largest"][a])
            ref_flops = metrics.mean_flops(records["largest"][a], fpt) if fpt else None
            oracle_u = metrics.utility(records["oracle"][a], a)
            own = trained_labels if method == "swarm-trained" else labels_test  # F1 against the agent's own forced answers
            summary["methods"][method][f"{a:g}"] = metrics.summarize(recs, a, agents, own, ref, costs[agents[-1]], oracle_u, fpt, ref_flops)
    if name == "behaviour":
        from swarm.eval.behaviour import write

        return write(summary, out)
    return report.write(summary, out, name)


def trained_forced_labels(swarm, topo, items, base_labels, out_dir: Path, progress=None) -> dict[str, dict[str, bool]]:
    """The test labels with each trained agent's own forced answers (its self-assessment is judged
    against them); the terminal agent is the base topology's model, whose labels are kept."""
    labels = {q: dict(row) for q, row in base_labels.items()}
    terminal = topo.ordered_agents()[-1].name
    for agent in agent_costs(swarm):
        if agent == terminal:
            continue
        for r in run_method(Forced(agent), swarm, items, 0.5, out_dir, progress=progress):
            labels[r.query_id][agent] = r.correct
    return labels


def _forced_acc(labels, agents) -> dict[str, float]:
    return {a: sum(row[a] for row in labels.values()) / len(labels) for a in agents} if labels else {}
