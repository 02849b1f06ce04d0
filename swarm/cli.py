"""The `swarm` command: launch, ask, status, add, remove, down, serve, dashboard, demo, schema, testbed, train, probe, eval, outcomes.

A swarm launched by one command outlives it (detached actors on a Ray cluster that `launch`
starts when none is running); later commands attach to it by name. User mistakes end in a
one-line `error: ...` and exit status 1 or 2, never a traceback; an internal failure is one line
too (exit status 3) that says where the traceback was written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from swarm.errors import QueryError, SwarmError
from swarm.prompts import SCENARIOS

DEMO_QUESTIONS = 40


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except (SwarmError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (`swarm ... | head`): not a Ray problem
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ConnectionError as exc:
        print(f"error: cannot reach Ray: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - an internal failure: one line here, the traceback in a file
        return _internal_failure(exc)


def _internal_failure(exc: BaseException) -> int:
    """Say in one line what failed and where the whole traceback went (exit status 3).
    SWARM_LOG_LEVEL=debug prints the traceback here too."""
    import tempfile
    import time
    import traceback

    from swarm.offline import cache_dir

    text = "".join(traceback.format_exception(exc))
    if os.environ.get("SWARM_LOG_LEVEL", "").lower() == "debug":
        print(text, file=sys.stderr, end="")
    name = f"swarm-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for folder in (cache_dir() / "logs", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(f"swarm {' '.join(sys.argv[1:])}\n{text}")
        except OSError:
            continue
        where = f"full log: {folder / name}"
        break
    else:
        where = "rerun with SWARM_LOG_LEVEL=debug to see the traceback"
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    print(f"error: internal failure: {type(exc).__name__}: {first} ({where})", file=sys.stderr)
    return 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="swarm", description="Distributed self-routing LLM agents on Ray.")
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, run, help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        c.set_defaults(run=run)
        return c

    c = command("launch", _launch, "start a swarm from a topology file; it keeps running after this command exits")
    c.add_argument("topology", type=Path)
    c.add_argument("--name", help="swarm name (default: the topology's name)")
    c.add_argument("--address", help="Ray cluster address (default: the running local cluster, started if none)")

    c = command("ask", _ask, "ask a running swarm one question")
    c.add_argument("swarm")
    c.add_argument("question")
    _scenario_args(c)
    c.add_argument("--deadline-s", type=float, help="hard limit: the query fails past it (default: the topology's deadline_s)")
    c.add_argument("--target-latency-s", type=float, help="soft target: agents skip peers that would miss it, or answer themselves")
    c.add_argument("--json", action="store_true", help="print the answer and its trace as JSON")
    c.add_argument("--address", default="auto")

    c = command("status", _status, "show every agent's state, load and answer rate")
    c.add_argument("swarm")
    c.add_argument("--json", action="store_true")
    c.add_argument("--address", default="auto")

    c = command("add", _add, "add an agent (a YAML file holding one agent) to a running swarm")
    c.add_argument("swarm")
    c.add_argument("agent_file", type=Path)
    c.add_argument("--seeds", nargs="*", help="agents the newcomer greets (default: the topology's seeds)")
    c.add_argument("--address", default="auto")

    c = command("remove", _remove, "remove an agent gracefully (it drains first); --kill crashes it instead")
    c.add_argument("swarm")
    c.add_argument("agent")
    c.add_argument("--kill", action="store_true")
    c.add_argument("--address", default="auto")

    c = command("down", _down, "stop every agent of a swarm")
    c.add_argument("swarm")
    c.add_argument("--stop-ray", action="store_true", help="also stop the local Ray cluster")
    c.add_argument("--address", default="auto")

    from swarm.gateway.limits import GatewaySettings as G  # its defaults are the flags' (stdlib and structlog only)

    for name, port, help in (("serve", G.port, "serve a running swarm over HTTP (OpenAI-compatible, and its dashboard at /dashboard) until Ctrl-C"),
                             ("dashboard", 8001, "serve a live dashboard of a running swarm (and its OpenAI-compatible API) until Ctrl-C")):
        c = command(name, _serve, help)
        c.add_argument("swarm")
        c.add_argument("--host", default=G.host, help="address to bind (a non-loopback one needs API keys)")
        c.add_argument("--port", type=int, default=port, help="0: any free port")
        c.add_argument("--api-keys-file", type=Path, help="API keys, one a line (also: SWARM_API_KEYS, SWARM_API_KEYS_FILE); "
                       "without keys the dashboard is read-only")
        c.add_argument("--rate", type=float, default=G.rate_per_s, help="requests per second per key (burst: 2x)")
        c.add_argument("--max-in-flight", type=int, default=G.max_in_flight, help="queries in the swarm at once")
        c.add_argument("--max-queue", type=int, default=G.max_queue, help="requests waiting beyond that; more get 429")
        c.add_argument("--max-body-bytes", type=int, default=G.max_body_bytes)
        c.add_argument("--max-prompt-tokens", type=int, default=G.max_prompt_tokens)
        c.add_argument("--deadline-s", type=float, help="per request (default: the topology's deadline_s)")
        c.add_argument("--body-timeout-s", type=float, default=G.body_timeout_s,
                       help="to receive a request's head (else the connection is closed) and its body (else 408)")
        c.add_argument("--max-connections", type=int, default=G.max_connections,
                       help="open connections at once; beyond: 503 (keep it above max-in-flight + max-queue)")
        c.add_argument("--max-in-flight-per-key", type=int, default=G.max_in_flight_per_key, help="requests of one API key at once; beyond: 429")
        c.add_argument("--address", default="auto")
        c.set_defaults(page=name == "dashboard")

    c = command("demo", _demo, "the quickstart: launch a swarm on a local Ray, route questions, print where they went, shut down")
    c.add_argument("topology", type=Path, nargs="?", default=_shipped("quickstart-probe.yaml"))
    c.add_argument("-n", type=int, default=DEMO_QUESTIONS, help="how many questions (held-out testbed items, or replay table rows)")
    _scenario_args(c)

    c = command("schema", _schema, "print the topology JSON Schema (for editors)")

    c = command("testbed", _testbed, "build the testbed ladder of small models (cached: a second call returns at once)")
    c.add_argument("action", choices=["build"])
    c.add_argument("--quick", action="store_true", help="the quick ladder (at most 5 minutes on 2 cores; else at most 30)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", type=Path, help="default: the cache that 'testbed:<ladder>/<rung>' models are read from")

    c = command("train", _train, "self-awareness training (competence sampling, SFT, RL) of one agent per recipe; resumable")
    c.add_argument("recipes", type=Path, nargs="+", help="recipe YAML files (see recipes/)")
    c.add_argument("--address", help="run the recipes as Ray tasks on this cluster (default: one after another here)")

    c = command("probe", _probe, "fit each recipe's agent a probe of P(I know) on its frozen model's hidden states, "
                "with a calibration report; the model is not changed")
    c.add_argument("recipes", type=Path, nargs="+", help="recipe YAML files (see recipes/); the probe lands in <output_dir>/probe")
    c.add_argument("--regions", type=Path, help="a region map (`swarm regions fit`): record each validation query's region under "
                   "it, so that the agent advertises a value curve per region in a topology that names the same map")

    c = command("regions", _regions, "fit a region map: k-means clusters of query embeddings (all-MiniLM-L6-v2) that a topology "
                "names so that agents advertise a value curve per region")
    c.add_argument("action", choices=["fit"])
    c.add_argument("queries", type=Path, nargs="?", help="the queries: JSON lines with a \"query\" (or \"prompt\") field, or plain "
                   "text, one a line")
    c.add_argument("--recipes", type=Path, nargs="+", help="instead of a file: the training queries of these recipes (the "
                   "validation queries of the probes `swarm probe` fits from them)")
    c.add_argument("--k", type=int, default=4, help="regions (1 to 16; default 4)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", type=Path, required=True, help="the .npz file to write")
    c.add_argument("--overwrite", action="store_true", help="replace --out if it exists")

    from swarm.eval import cli as eval_cli

    eval_cli.add_arguments(command("eval", eval_cli.run, "run an evaluation experiment on a swarm launched for it; writes JSON, a markdown table and plots"))

    from swarm.eval.outcomes import cli as outcomes_cli

    outcomes_cli.add_arguments(command("outcomes", outcomes_cli.run, "outcome matrices of real models: convert RouterBench CSV files "
                                       "to the generic format, write a replay swarm from one, print the format's schema"))
    return p


def _scenario_args(c: argparse.ArgumentParser) -> None:
    c.add_argument("--scenario", choices=list(SCENARIOS))
    c.add_argument("--alpha", type=float, help="cost weight in [0, 1] instead of a named scenario")


def _shipped(name: str) -> Path:
    return Path(__file__).resolve().parent.parent / "topologies" / name


def _launch(args) -> int:
    import swarm
    from swarm.topology import load_topology

    topo = load_topology(args.topology)  # a broken file fails before any cluster is started
    address = args.address or _ensure_local_cluster()
    s = swarm.launch(topo, address=address, name=args.name)
    print(f"swarm {s.name!r} is up with {len(s.entries())} agents; ask it with: swarm ask {s.name} \"...\"")
    _print_status(s.status())
    return 0


def _ask(args) -> int:
    import swarm

    s = swarm.attach(args.swarm, args.address)
    try:
        if args.json:
            a = s.ask(args.question, scenario=args.scenario, alpha=args.alpha, deadline_s=args.deadline_s, target_latency_s=args.target_latency_s)
        else:  # the answer is printed as the answering agent generates it
            for a in s.ask_stream(args.question, scenario=args.scenario, alpha=args.alpha, deadline_s=args.deadline_s,
                                  target_latency_s=args.target_latency_s):
                if isinstance(a, str):
                    print(a, end="", flush=True)
    except QueryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"query_id": a.query_id, "text": a.text, "agent": a.agent, "cost": a.cost, "hops": a.hops,
                          "latency_s": a.latency_s, "trace": [h.model_dump() for h in a.trace]}, indent=2))
    else:
        print()
        print(f"-- answered by {a.agent} (cost {a.cost}) after {a.hops} hop(s) in {a.latency_s * 1000:.1f} ms: "
              + " -> ".join(f"{h.agent}:{h.decision}" for h in a.trace))
    return 0


def _status(args) -> int:
    import swarm

    rows = swarm.attach(args.swarm, args.address).status()
    if args.json:
        print(json.dumps([dict(r.__dict__, answer_rate=r.answer_rate) for r in rows], indent=2))
    else:
        _print_status(rows)
    return 0


def _add(args) -> int:
    import swarm

    s = swarm.attach(args.swarm, args.address)
    name = s.add_agent(args.agent_file, seeds=args.seeds)
    print(f"agent {name!r} joined swarm {s.name!r}")
    return 0


def _remove(args) -> int:
    import swarm

    s = swarm.attach(args.swarm, args.address)
    (s.kill_agent if args.kill else s.remove_agent)(args.agent)
    print(f"agent {args.agent!r} {'killed' if args.kill else 'left'}")
    return 0


def _down(args) -> int:
    import swarm

    try:
        swarm.attach(args.swarm, args.address).shutdown()
        print(f"swarm {args.swarm!r} stopped")
    finally:
        if args.stop_ray:
            subprocess.run([_ray_cli(), "stop"], check=False, capture_output=True)
    return 0


def _serve(args) -> int:
    import swarm
    from swarm.cluster.connect import disconnect
    from swarm.gateway import GatewaySettings, load_api_keys, serve

    settings = GatewaySettings(
        host=args.host, port=args.port, api_keys=load_api_keys(args.api_keys_file), rate_per_s=args.rate,
        burst=max(1, int(args.rate * 2)), max_in_flight=args.max_in_flight, max_queue=args.max_queue,
        max_body_bytes=args.max_body_bytes, max_prompt_tokens=args.max_prompt_tokens, deadline_s=args.deadline_s,
        body_timeout_s=args.body_timeout_s, max_connections=args.max_connections, max_in_flight_per_key=args.max_in_flight_per_key,
        agent_base_dir=os.getcwd(),  # a relative model path in an agent added from the dashboard means what it would to `swarm add` here
    )
    settings.check()
    swarm.attach(args.swarm, args.address)
    gateway = serve(args.swarm, settings)
    keys = f"API keys: {len(settings.api_keys)}" if settings.api_keys else "no API keys: the dashboard is read-only"
    if args.page:
        print(f"dashboard of swarm {args.swarm!r}: open {gateway.url}/dashboard ({keys}); Ctrl-C stops", flush=True)
    else:
        print(f"serving swarm {args.swarm!r} at {gateway.base_url} (models: {args.swarm}, {args.swarm}:<scenario>; "
              f"{keys}; dashboard: {gateway.url}/dashboard); Ctrl-C stops", flush=True)
    # Wait in short steps, so that Ctrl-C or SIGTERM is handled at once whatever Ray does with signals.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.is_set() and not gateway.wait(timeout_s=0.5):
            pass
    finally:
        try:
            gateway.stop(timeout_s=10)
        except Exception as exc:  # noqa: BLE001 - the gateway is killed either way; say why it did not stop cleanly
            print(f"warning: the gateway did not stop cleanly ({type(exc).__name__}); it was killed", file=sys.stderr)
        disconnect()
    return 0


def _demo(args) -> int:
    from swarm.demo import run_demo
    from swarm.topology import load_topology

    run_demo(load_topology(args.topology), args.n, args.scenario, args.alpha)
    return 0


def _print_status(rows) -> None:
    """One row per agent. p50/p95: the queries it held, its downstream included; decide/answer: its own
    times, as it tells its peers (median to a rejection, p95 to an answer); speculated: queries passed on
    while it generated, / of which it cancelled the copy (shown only when an agent speculates)."""
    speculates = any(r.speculated for r in rows)
    print(f"{'agent':<12}{'state':<12}{'cost':>6}{'in flight':>10}{'received':>10}{'answered':>10}{'rejected':>10}"
          f"{'answer rate':>12}{'p50 ms':>8}{'p95 ms':>8}{'decide ms':>10}{'answer ms':>10}" + (f"{'speculated':>14}" if speculates else ""))
    for r in rows:
        print(f"{r.name:<12}{r.state:<12}{r.cost:>6.2f}{r.in_flight:>10}{r.received:>10}{r.answered:>10}{r.rejected:>10}"
              f"{r.answer_rate:>12.2f}{r.p50_s * 1000:>8.1f}{r.p95_s * 1000:>8.1f}{r.decide_s * 1000:>10.1f}{r.answer_s * 1000:>10.1f}"
              + (f"{f'{r.speculated} / {r.speculation_cancelled}':>14}" if speculates else ""))


def _schema(args) -> int:
    from swarm.topology import topology_json_schema

    print(json.dumps(topology_json_schema(), indent=2, sort_keys=True))
    return 0


def _testbed(args) -> int:
    from swarm.testbed.ladder import build_ladder
    from swarm.testbed.models import ladder_dir

    ladder = "quick" if args.quick else "full"
    out = args.out or ladder_dir(ladder if args.seed == 0 else f"{ladder}-seed{args.seed}")
    try:
        report = build_ladder(out, quick=args.quick, seed=args.seed)
    except OSError as exc:  # an unwritable cache directory: one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{'cached' if report.cached else 'built'} in {report.out_dir} (report.json, report.png)")
    print(f"{'model':<8}{'params':>10}{'cost':>6}{'overall':>9}  accuracy by difficulty 1-4")
    for m in report.models:
        print(f"{m.name:<8}{m.params:>10,d}{m.cost:>6.2f}{m.overall:>9.3f}  "
              + " ".join(f"{m.by_difficulty[d]:.2f}" for d in sorted(m.by_difficulty)))
    return 0


def _train(args) -> int:
    from swarm.logging import configure_logging
    from swarm.cluster.training import train_many
    from swarm.training import load_recipe

    recipes = [load_recipe(p) for p in args.recipes]  # every recipe checked before any training starts
    configure_logging()
    for result in train_many(recipes, args.address):
        print(f"{result.model_dir}  (report: {result.model_dir.parent / 'report.md'})")
    return 0


def _probe(args) -> int:
    from swarm.training.probe import train_probe
    from swarm.logging import configure_logging
    from swarm.training import load_recipe

    recipes = [load_recipe(p) for p in args.recipes]  # every recipe checked before any work starts
    regions = None
    if args.regions is not None:
        from swarm.assess.regions import RegionMap

        regions = RegionMap.load(args.regions)
    configure_logging()
    for recipe in recipes:
        out = train_probe(recipe, regions)
        print(f"{out}  (report: {out / 'report.md'})")
    return 0


def _regions(args) -> int:
    from swarm.assess.regions import RegionMap, read_queries

    if args.out.exists() and not args.overwrite:
        raise ValueError(f"{args.out} exists; pass --overwrite to replace it")
    if (args.queries is None) == (args.recipes is None):
        raise ValueError("give a queries file or --recipes (one of the two)")
    if args.queries is not None:
        texts = read_queries(args.queries)
    else:
        from swarm.training import load_recipe
        from swarm.training.items import training_prompts

        recipes = [load_recipe(p) for p in args.recipes]
        texts = list(dict.fromkeys(t for r in recipes for t in training_prompts(r)))
    print(f"embedding {len(texts)} queries and fitting {args.k} regions ...", file=sys.stderr, flush=True)
    regions, of = RegionMap.fit_texts(texts, args.k, args.seed)
    try:
        regions.save(args.out)
    except OSError as exc:
        raise ValueError(f"{args.out}: cannot write ({exc.strerror or exc})") from None
    sizes = [int((of == r).sum()) for r in range(regions.k)]
    print(f"{args.out}: {regions.k} regions of {len(texts)} queries, {' / '.join(map(str, sizes))} (digest {regions.digest})")
    return 0


def _ray_cli() -> str:
    return shutil.which("ray") or str(Path(sys.executable).parent / "ray")


def _ensure_local_cluster() -> str:
    """Reuse a running local Ray cluster, or start one that outlives this command."""
    from swarm.api import running_cluster

    if running_cluster() is None:
        print("starting a local Ray cluster (ray start --head) ...", flush=True)
        started = subprocess.run(
            [_ray_cli(), "start", "--head", "--disable-usage-stats", "--include-dashboard=false"], capture_output=True, text=True,
        )
        if started.returncode != 0:
            raise SwarmError(f"could not start a local Ray cluster: {started.stderr.strip().splitlines()[-1:]}")
    return "auto"


if __name__ == "__main__":
    sys.exit(main())
