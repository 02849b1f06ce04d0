"""The prompts every agent and every training run share: the scenario instruction, the answer
template, the reject phrase, the verbalized self-check, and `Renderer`, which turns messages
into the text (and tokens) a model continues. Inference (policies, every backend) and training
write and render prompts only through this module, so a trained agent sees at inference exactly
what it was trained on (`tests/test_prompt_golden.py` holds them to recorded bytes).
"""

from __future__ import annotations

import re
from typing import Any, Literal

SCENARIOS: dict[str, float] = {"performance_first": 0.2, "balance": 0.5, "cost_first": 0.8}
ScenarioName = Literal["performance_first", "balance", "cost_first"]
GAMMA = 0.5  # the paper's exponent of the rejection reward
REJECT_PHRASE = "I don't know!"
ANSWER_TEMPLATE = "The answer is: {answer}"
ANSWER_RE = re.compile(re.escape(ANSWER_TEMPLATE.split("{answer}")[0].strip()), re.IGNORECASE)  # a reply in the template
_YES = re.compile(r"^\W*(yes|y|true|sure|i can)\b", re.IGNORECASE)


def scenario_alpha(scenario: str | float | None = None, alpha: float | None = None) -> float:
    """Resolve a scenario name or an alpha into alpha in [0, 1]; default Balance."""
    if alpha is None and isinstance(scenario, (int, float)):
        alpha = float(scenario)
    elif alpha is None and scenario is not None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r} (expected one of: {', '.join(SCENARIOS)}, or alpha=<0..1>)")
        alpha = SCENARIOS[scenario]
    alpha = 0.5 if alpha is None else float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    return alpha


def scenario_label(alpha: float) -> str:
    """'balance (alpha 0.5)' for a named scenario's alpha, else 'alpha 0.35'."""
    name = next((n for n, a in SCENARIOS.items() if round(alpha, 6) == a), None)
    return f"{name} (alpha {alpha:g})" if name else f"alpha {alpha:g}"


def reject_reward(alpha: float, gamma: float = GAMMA) -> float:
    """What a clean rejection earns in the paper's reward, (1 - alpha) ** gamma (a correct answer
    earns 1, a wrong one 0): an agent whose chance of answering correctly is p should answer
    exactly when p exceeds it."""
    return (1.0 - alpha) ** gamma


def default_thresholds() -> dict[str, float]:
    """A confidence policy's default thresholds per named scenario: the rejection reward, rounded."""
    return {name: round(reject_reward(alpha), 3) for name, alpha in SCENARIOS.items()}


def answer_instruction() -> str:
    return "Answer the question. Give your reasoning, then the final answer as '" + ANSWER_TEMPLATE.format(answer="<answer>") + "'."


def scenario_instruction(alpha: float, allow_reject: bool = True, reject_phrase: str = REJECT_PHRASE) -> str:
    if not allow_reject:
        return answer_instruction()
    return (
        f"Cost weight alpha = {alpha:.2f} (0 means only accuracy matters, 1 means cost matters most). "
        f"If you are not confident that you can answer correctly, reply exactly '{reject_phrase}' and nothing else. "
        "Otherwise give your reasoning, then the final answer as '" + ANSWER_TEMPLATE.format(answer="<answer>") + "'."
    )


def build_messages(query: str, alpha: float, allow_reject: bool, reject_phrase: str = REJECT_PHRASE) -> list[dict[str, str]]:
    """The self-aware agent's prompt: the scenario instruction, then the query."""
    return [
        {"role": "system", "content": scenario_instruction(alpha, allow_reject, reject_phrase)},
        {"role": "user", "content": query},
    ]


def self_check_messages(query: str) -> list[dict[str, str]]:
    """The verbalized policy's question to the model about itself."""
    return [
        {"role": "system", "content": "Decide whether you can answer the user's question correctly. Reply with only 'yes' or 'no'."},
        {"role": "user", "content": query},
    ]


def fold(text: str) -> str:
    """Text as the reject phrase is compared: leading space, case and typographic apostrophes ignored."""
    return text.lstrip().replace("\u2019", "'").casefold()


def is_rejection(text: str, reject_phrase: str = REJECT_PHRASE) -> bool:
    """Does a reply start with the reject phrase? Every policy and backend decides it here."""
    return fold(text).startswith(fold(reject_phrase).rstrip())


def says_yes(text: str) -> bool:
    return bool(_YES.match(text.strip()))


def render_plain(messages: list[dict[str, str]]) -> str:
    """A prompt for a model with no chat template (a base model)."""
    parts = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(parts) + "\n\nAssistant:"


def user_turn(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


class TemplateRefused(ValueError):
    """The model's chat template raised on these messages (and merging the system turn did not help)."""


class Renderer:
    """Messages -> the text a model's reply continues, and its token ids, for one tokenizer.

    With a chat template (the tokenizer's own, unless `use_template` is False): the template with
    a generation prompt; a template that refuses a system role (it raises) gets the system text
    merged into the first user turn, from then on. Without one: `render_plain`. Token ids of a
    templated prompt carry no extra special tokens (the template wrote them); those of a plain
    prompt get the tokenizer's usual ones (a BOS, where the model has one)."""

    def __init__(self, tokenizer: Any, use_template: bool = True) -> None:
        self.tokenizer = tokenizer
        self.templated = use_template and bool(getattr(tokenizer, "chat_template", None))
        self.merge_system = False

    def text(self, messages: list[dict[str, str]]) -> str:
        if not self.templated:
            return render_plain(messages)
        try:
            return self.tokenizer.apply_chat_template(merge_system(messages) if self.merge_system else messages,
                                                      tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # noqa: BLE001 - templates raise their own error types
            if self.merge_system or not any(m["role"] == "system" for m in messages):
                raise TemplateRefused(f"the model's chat template refused the prompt: {exc}") from None
            self.merge_system = True  # e.g. "System role not supported"
            return self.text(messages)

    def encode(self, text: str) -> list[int]:
        """Token ids of rendered text (or of rendered text and a reply after it)."""
        return list(self.tokenizer.encode(text, add_special_tokens=not self.templated))

    def prompt(self, messages: list[dict[str, str]]) -> tuple[list[int], str]:
        """(token ids, text) of the prompt."""
        text = self.text(messages)
        return self.encode(text), text

    def reply_prefix(self, reply: str) -> str:
        """A reply as it follows the prompt: a plain prompt ends 'Assistant:', so a space first."""
        return reply if self.templated else " " + reply


def merge_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """For chat templates without a system role: the system text goes before the first user message."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if not system:
        return rest
    for m in rest:
        if m["role"] == "user":
            m["content"] = f"{system}\n\n{m['content']}"
            return rest
    return [{"role": "user", "content": system}, *rest]
