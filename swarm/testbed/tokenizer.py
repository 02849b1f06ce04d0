"""A character-level tokenizer built locally (no download). It is a fast Qwen2Tokenizer (a
PreTrainedTokenizerFast) because transformers 5's AutoTokenizer rebuilds the tokenizer of a qwen2
model directory as Qwen2Tokenizer (byte-level pre-tokenizer) whatever class was saved: a plain
character vocabulary then loses its spaces and newlines. Its chat template turns chat
messages into the testbed's training format:

    Q: 23+58=
    A: 3+8+0=11,2+5+1=8. The answer is: 81</s>

A system message is dropped, except the scenario instruction of `swarm.prompts` (the one that
allows a rejection), which becomes a short prefix carrying alpha: ``a=0.50 Q: 23+58=``. A
character-level model cannot afford the instruction's 300 characters on every query, and
alpha is all of it that varies.
"""

from __future__ import annotations

import string

PAD, EOS, UNK, BOS = "<pad>", "</s>", "<unk>", "<s>"
CHARS = string.digits + string.ascii_letters + " \n+-*/=(),.:;!?'\"<>_#%$&[]{}|^~@`\\"

# The generation prompt ends "A: " so a reply starts with its first character ("The ..." or "I don't know!").
ALPHA_MARK = "Cost weight alpha = "  # how swarm.prompts.scenario_instruction begins (checked by a test)
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' and m['content'].startswith('" + ALPHA_MARK + "') %}"
    "{{ 'a=' + m['content'][" + str(len(ALPHA_MARK)) + ":" + str(len(ALPHA_MARK) + 4) + "] + ' ' }}"
    "{% elif m['role'] == 'user' %}{{ 'Q: ' + m['content'] + '\n' }}"
    "{% elif m['role'] == 'assistant' %}{{ 'A: ' + m['content'] + eos_token + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'A: ' }}{% endif %}"
)


def build_tokenizer():
    """A Qwen2Tokenizer (byte-level, as transformers' AutoTokenizer rebuilds it for a qwen2 model
    directory) whose vocabulary is single characters and which has no merges: one token per
    character. Characters outside `CHARS` are dropped."""
    from transformers import Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_char = bytes_to_unicode()
    vocab = {tok: i for i, tok in enumerate([PAD, EOS, UNK, BOS])}
    for ch in CHARS:
        vocab.setdefault(byte_char[ord(ch)], len(vocab))
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=UNK, pad_token=PAD, eos_token=EOS, bos_token=BOS,
                         padding_side="left", model_max_length=256)
    tok.chat_template = CHAT_TEMPLATE
    return tok
