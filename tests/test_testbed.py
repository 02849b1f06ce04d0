"""The testbed ladder: the quick ladder trains (once per machine, into the cache; see conftest),
each rung loads as a normal transformers directory, accuracy rises with size on the held-out set,
the cache answers at once, and a model answers through TransformersBackend, graded by `verify`."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from pathlib import Path

import pytest

from swarm.backends.base import GenerationRequest
from swarm.prompts import ANSWER_TEMPLATE, Renderer, build_messages, user_turn
from swarm.specs import TransformersBackendSpec
from swarm.tasks.verify import verify
from swarm.tasks.testbed_families import DIFFICULTIES, make_item, reply_text, training_stream
from swarm.testbed import FAMILIES, OOD_FAMILIES, build_ladder, held_out
from swarm.testbed.tokenizer import build_tokenizer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def ladder(quick_ladder):
    return quick_ladder


# -- fast checks, no training ------------------------------------------------------------------

def test_generators_are_deterministic_and_held_out_is_disjoint_from_training():
    a, b = held_out(0, 50), held_out(0, 50)
    assert [i.prompt for i in a] == [i.prompt for i in b]
    cells = {(i.domain, i.difficulty) for i in a}
    assert len(cells) == len(FAMILIES) * len(DIFFICULTIES)
    assert all(sum(1 for i in a if (i.domain, i.difficulty) == c) == 50 for c in cells)
    exclude = {i.prompt for i in a}
    stream = training_stream(0, exclude)
    train = [next(stream) for _ in range(3000)]
    assert not exclude & {i.prompt for i in train}
    assert [i.prompt for i in train[:50]] == [i.prompt for i in itertools.islice(training_stream(0, exclude), 50)]
    for item in a[:: 37]:
        assert verify(item, ANSWER_TEMPLATE.format(answer=item.gold))
        assert not verify(item, ANSWER_TEMPLATE.format(answer=int(item.gold) + 1))


def test_unknown_family_or_difficulty_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown testbed task family 'mul'"):
        make_item("mul", 1, random.Random(0))
    with pytest.raises(ValueError, match="unknown difficulty 7"):
        make_item("add", 7, random.Random(0))


def test_chat_template_renders_the_training_format():
    tok = build_tokenizer()
    messages = build_messages("23+58=", 0.5, allow_reject=False)
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == Renderer(tok).text(user_turn("23+58=")) == "Q: 23+58=\nA: "
    ids = tok(text + "The answer is: 81", add_special_tokens=False).input_ids
    assert tok.decode(ids) == text + "The answer is: 81"


def test_chat_template_carries_alpha_of_the_scenario_instruction():
    # self-awareness training and the self_aware policy both prompt through swarm.prompts
    tok = build_tokenizer()
    for alpha in (0.0, 0.2, 0.5, 0.8, 1.0):
        text = tok.apply_chat_template(build_messages("7-3=", alpha, allow_reject=True), tokenize=False, add_generation_prompt=True)
        assert text == f"a={alpha:.2f} Q: 7-3=\nA: "
    other = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "7-3="}]
    assert tok.apply_chat_template(other, tokenize=False, add_generation_prompt=True) == "Q: 7-3=\nA: "


def test_tokenizer_survives_a_round_trip_through_a_model_directory(tmp_path):
    # transformers 5's AutoTokenizer rebuilds a qwen2 directory's tokenizer as Qwen2Tokenizer;
    # a plain character vocabulary lost its spaces and newlines there.
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    from swarm.testbed.ladder import QUICK_RUNGS, _config

    tok = build_tokenizer()
    Qwen2ForCausalLM(_config(QUICK_RUNGS[0], tok)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "Q: count a in abcab=\nA: The answer is: 2"
    assert again(text).input_ids == tok(text).input_ids
    assert again.decode(again(text).input_ids) == text
    assert again.chat_template == tok.chat_template


def test_training_is_deterministic_given_the_seed():
    import torch

    from swarm.testbed.ladder import Rung, _train

    tok = build_tokenizer()
    rung = Rung("tiny", hidden=16, layers=1, heads=2, steps=5, lr=1e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the ladder's worker processes
    try:
        a, b, c = (_train(rung, tok, seed, set()).state_dict() for seed in (0, 0, 1))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_unwritable_cache_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="not writable"):
        build_ladder(blocker / "ladder", quick=True)


# -- the quick ladder --------------------------------------------------------------------------

def test_quick_ladder_saves_loadable_models(ladder):
    # Its build time (about 265 s on 2 free cores) is reported by the build, not asserted here.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert len(ladder.models) >= 4
    params = [m.params for m in ladder.models]
    assert params == sorted(set(params)), f"parameter counts not strictly rising: {params}"
    for m in ladder.models:
        model = AutoModelForCausalLM.from_pretrained(m.path)
        tok = AutoTokenizer.from_pretrained(m.path)
        assert type(model).__name__ == "Qwen2ForCausalLM"
        assert sum(p.numel() for p in model.parameters()) == m.params
        assert tok.chat_template and tok.eos_token_id == model.config.eos_token_id
    costs = [m.cost for m in ladder.models]
    assert costs[0] == 0.1 and costs[-1] == 0.9 and costs == sorted(costs)


def test_report_files(ladder):
    from pathlib import Path

    out = Path(ladder.out_dir)
    data = json.loads((out / "report.json").read_text())
    assert data["ood_families"] == list(OOD_FAMILIES)
    for m in data["models"]:
        assert set(m["accuracy"]) == set(FAMILIES)
        assert all(set(cells) == {"1", "2", "3", "4"} for cells in m["accuracy"].values())
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(n >= 200 for cells in data["eval_items"].values() for n in cells.values())


def test_accuracy_rises_with_size(ladder):
    # 200 held-out items per family x difficulty: 1,000 per difficulty and model, a standard error
    # of at most 1.6 points per difficulty, so the ordering below is not noise.
    overall = [m.overall for m in ladder.models]
    small, large = ladder.models[0], ladder.models[-1]
    assert large.overall >= small.overall + 0.30, overall
    for d in map(str, DIFFICULTIES):
        by_size = [m.by_difficulty[d] for m in ladder.models]
        assert all(hi >= lo - 0.03 for lo, hi in zip(by_size, by_size[1:])), (d, by_size)
        assert large.by_difficulty[d] >= small.by_difficulty[d] + 0.20, (d, by_size)
    # the smallest solves easy items only; the largest most of the hard ones
    assert small.by_difficulty["1"] >= small.by_difficulty["4"] + 0.10, small.by_difficulty
    assert small.by_difficulty["4"] <= 0.15 and large.by_difficulty["4"] >= 0.60, (small.by_difficulty, large.by_difficulty)


def test_second_call_is_cached(ladder):
    started = time.monotonic()
    again = build_ladder(ladder.out_dir, quick=True, seed=0)
    assert time.monotonic() - started < 2.0
    assert again.cached and again.settings_hash == ladder.settings_hash
    assert [m.overall for m in again.models] == [m.overall for m in ladder.models]


def test_model_answers_through_transformers_backend_graded_by_verify(ladder):
    from swarm.backends.transformers import TransformersBackend
    from swarm.testbed.ladder import _encode, _evaluate, _pairs

    best = ladder.models[-1]
    # easy items of the families the quick ladder's largest model does best on, plus a few others
    test = held_out(0, 200)
    items = [i for fam in ("sum", "max", "add", "count") for i in test if i.domain == f"testbed/{fam}" and i.difficulty == 1][::25][:32]
    model_dir = best.path
    backend = TransformersBackend(TransformersBackendSpec(kind="transformers", model=model_dir, max_new_tokens=80), "tb")

    async def scenario():
        await backend.start()
        try:
            return await asyncio.gather(*(backend.generate(GenerationRequest(
                item.id, item.prompt, 0.5, False, build_messages(item.prompt, 0.5, allow_reject=False)))
                for item in items))
        finally:
            await backend.close()

    replies = asyncio.run(asyncio.wait_for(scenario(), 120))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    solved = _evaluate(model, _encode(tok, _pairs(tok, items)))
    graded = [verify(item, reply.text) for item, reply in zip(items, replies)]
    assert sum(graded) >= len(items) // 4, [r.text for r in replies]
    for item, reply, ok, tf in zip(items, replies, graded, solved):
        assert "The answer is:" in reply.text, reply.text
        if tf:  # teacher-forced exact match is greedy decoding of the gold reply
            assert ok and reply.text == reply_text(item), (item.prompt, reply.text)
    # the report's accuracy (teacher-forced) and the verifier on real greedy replies agree
    assert sum(g == t for g, t in zip(graded, solved)) >= len(items) - 2, list(zip(graded, solved))


def test_the_ladder_matches_the_committed_accuracies(ladder):
    """The build is reproducible (pinned versions, pinned CPU math): a fresh build, which CI makes
    every run, matches benchmarks/results/ladder_quick.json within 0.01 overall per rung and 0.02
    in every family x difficulty cell."""
    expected = json.loads((Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "ladder_quick.json").read_text())
    assert expected["settings_hash"] == ladder.settings_hash, "the ladder's settings changed: rerun python benchmarks/ladder.py"
    got = {m.name: m for m in ladder.models}
    assert list(got) == [m["name"] for m in expected["models"]]
    for want in expected["models"]:
        model = got[want["name"]]
        assert abs(model.overall - want["overall"]) <= 0.01, (model.name, model.overall, want["overall"])
        for family, cells in want["accuracy"].items():
            for d, acc in cells.items():
                assert abs(model.accuracy[family][d] - acc) <= 0.02, (model.name, family, d, model.accuracy[family][d], acc)


def test_a_file_lock_makes_its_folder(tmp_path):
    # the testbed probes' lock lies in a folder nothing has made yet on a fresh cache
    from swarm.offline import file_lock

    lock = tmp_path / "probes" / "deeper" / ".tb-l.lock"
    with file_lock(lock):
        assert lock.is_file()
