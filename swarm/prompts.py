"""The prompts every agent and every training run share: the scenario instruction, the answer
template, the reject phrase and the verbalized self-check. Inference (policies) and training
write prompts only through this module, so a trained agent sees at inference exactly what it
was trained on.
"""

from __future__ import annotations

import re

SCENARIOS: dict[str, float] = {"performance_first": 0.2, "balance": 0.5, "cost_first": 0.8}
REJECT_PHRASE = "I don't know!"
ANSWER_TEMPLATE = "The answer is: {answer}"
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
