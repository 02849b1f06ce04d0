"""Final answers from free-form responses, and the normalisation verifiers compare them under.

`extract_answer(response, kind)` looks for the final answer in this order:

1. explicit answers: the shared template "The answer is: X" (any case; also "answer is X",
   "the correct answer is X", and "Answer: X" / "Final answer: X" but not "To find the answer:
   ..." in running text; markdown bold, quotes, $...$ and a trailing period stripped; an empty
   one takes the next line), LaTeX ``\\boxed{X}`` and reasoning-gym's
   ``<answer>X</answer>``; if there are none, GSM8K's "#### X" lines. The LAST one that reads as
   an answer of the kind wins (a number for numeric, a letter for choice); when explicit answers
   exist but none reads, there is no answer (no guessing from the reasoning);
2. otherwise a fallback by kind:
   - numeric: nothing when the text ends in a loop (a span repeated 4 times, typical of a small
     model cut off at its token limit); else, on the last line that holds a number, the number of
     its last conclusion sentence ("So, ...", "Therefore, ..."), else its last result statement
     ("= N", "is N", "equals N", not followed by an operator), else its last number;
   - choice: the last option letter in the forms "(B)", "option B", "B is the correct answer", or
     a line that starts "B." / "B)" / "B:" / is just "B" (a response whose lines list two or
     more options is an echoed option list, not a choice; an uppercase letter followed by a word,
     "A dolphin", is the article); else a last line naming exactly one option's text;
   - exact and reasoning_gym: the last non-empty line.

In a numeric explicit answer the number comes from its first sentence: the one after the last
"=", else the last result statement, else the first number ("47 pencils" gives 47, "3 x 12 = 36"
gives 36, "5. Check: 2 + 3 = 5" gives 5, the ratio "2:3" none).
A rejection (`swarm.prompts.is_rejection`) or an empty response has no answer.

`normalize_number` reads one number: thousands commas ("1,234"), a currency sign ($ EUR GBP JPY),
a sign (also U+2212), a fraction ("1/2", "\\frac{1}{2}"), an exponent, a hedge in front ("about",
"approximately", "~") and any trailing unit without digits ("12 apples", "5 km/h", "50%"). The
percent sign is a unit: "50%" reads 50, not 0.5, as GSM8K writes percentages. A decimal comma
("3,5"), number words ("forty") and expressions ("10 - 3") read as None.
`normalize_text` is SQuAD's: lower case, no punctuation, no articles (a, an, the), single spaces.
"""

from __future__ import annotations

import re
import string
import unicodedata
from decimal import Decimal, InvalidOperation

from swarm.prompts import is_rejection
from swarm.tasks.base import VerifierKind

KINDS = ("numeric", "choice", "exact", "reasoning_gym")
LETTERS = "ABCDEFGHIJ"

_NUM = r"(?<![\w.,/:])(?P<num>[-\u2212]?[$\u20ac\u00a3\u00a5]?[-\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?%?)(?![\d:]|[/.,]\d)"
_NUMBER = re.compile(_NUM)
_RESULT = re.compile(r"(?:=|\b(?:is|are|was|equals|equal to|makes|gives)\b)\s*(?:about |approximately |roughly )?" + _NUM
                     + r"(?!\s*[-+*/\u00d7\u00f7^x]\s*[$]?\d)", re.IGNORECASE)
_TEMPLATE = re.compile(r"(?=(?:\banswer\b\**\s*is\b|(?:^[ \t>#*_-]*(?:the\s+)?|\bfinal\s+)(?:correct\s+|final\s+)?answer\b\**\s*:)"
                       r"\s*:?\**[ \t]*(?P<ans>[^\n]*)(?:\n\s*(?P<next>[^\n]*))?)", re.IGNORECASE | re.MULTILINE)
_TAG = re.compile(r"<answer>(?P<ans>.*?)</answer>", re.IGNORECASE | re.DOTALL)
_HASHES = re.compile(r"^[ \t]*####[ \t]*(?P<ans>[^\n]+)", re.MULTILINE)
_CONCLUSION = re.compile(r"^\W*(?:so|therefore|thus|hence|in total|in conclusion|overall|altogether|finally)\b", re.IGNORECASE)
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")
_LOOP = re.compile(r"(.{6,80}?)(?:\s*\1){3,}", re.DOTALL)
_LETTER_LINE = re.compile(r"^[ \t>*_-]*\(?(?P<l>[A-J])(?:[.):]\**(?=\s|$)|\)?\**[ \t]*$)", re.MULTILINE)
_LETTER_SAID = re.compile(r"(?i:\b(?:option|choice|letter)\s*)\(?(?P<l>[A-J])\b|\((?P<p>[A-J])\)"
                          r"|\b(?P<s>[A-J])\)?\s+(?i:is\s+(?:the\s+)?(?:correct|right|best|answer))")
_LETTER_START = re.compile(r"^\(?(?P<l>[A-J])(?:[.):,]|\)?$)|^(?i:option|choice)\s*\(?(?P<o>[A-J])\b")
_NUMBER_TEXT = re.compile(
    r"(?i:about|approximately|approx\.?|around|roughly|~|\u2248)?\s*(?P<s1>[-+]?)\s*(?:[$\u20ac\u00a3\u00a5]|(?i:usd|eur)\b)?\s*(?P<s2>[-+]?)\s*"
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?P<exp>[eE][-+]?\d+)?(?:\s*/\s*(?P<den>\d+(?:\.\d+)?))?(?P<unit>[^\d=]*)")


def normalize_number(text: str | None) -> Decimal | None:
    """The number a short answer states, or None (see the module docstring for what is read)."""
    if text is None:
        return None
    s = clean(text).replace("\u2212", "-").replace("\\%", "%").replace("\\$", "$").replace("{,}", "").replace("\\,", "")
    s = s.rsplit("=", 1)[-1].strip()
    m = _NUMBER_TEXT.fullmatch(s)
    if not m:
        return None
    try:
        value = Decimal(m["num"].replace(",", "") + (m["exp"] or ""))
        if m["den"] is not None:
            den = Decimal(m["den"])
            if den == 0:
                return None
            value /= den
    except InvalidOperation:
        return None
    return -value if "-" in m["s1"] + m["s2"] else value


def normalize_text(text: str | None) -> str:
    """SQuAD's answer normalisation: lower case, punctuation and articles removed, spaces collapsed."""
    if not text:
        return ""
    s = "".join(c for c in text.lower() if not (unicodedata.category(c).startswith("P") or c in string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def clean(text: str) -> str:
    """An answer without its decoration: \\boxed{}, markdown, $...$, quotes, trailing punctuation;
    \\frac{a}{b} becomes a/b."""
    s = text.strip()
    boxed = _boxed(s)
    if boxed:
        s = boxed[-1][1]
    s = re.sub(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"\1/\2", re.sub(r"\*\*|__|`", "", s)).strip()
    for left, right in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ('"', '"'), ("'", "'"), ("\u201c", "\u201d")):
        if len(s) > len(left) + len(right) and s.startswith(left) and s.endswith(right):
            s = s[len(left): -len(right)].strip()
    return re.sub(r"[\s.!;,:]+$", "", s).strip()


def parse_options(prompt: str) -> dict[str, str]:
    """Options listed one a line as "A. text", "A) text", "(A) text" or "A: text"; {} if fewer than two."""
    found = dict(re.findall(r"^[ \t]*\(?([A-J])[.):][ \t]+(\S[^\n]*?)[ \t]*$", prompt, re.MULTILINE))
    return found if len(found) >= 2 else {}


def extract_answer(response: str | None, kind: VerifierKind, options: dict[str, str] | None = None) -> str | None:
    """The final answer a response gives: a number as written ("1,234", "-4", "1/2"), an option
    letter, or a string; None when it gives none. `options` (letter -> text) lets a choice answer
    given as the option's text count as that letter."""
    if kind not in KINDS:
        raise ValueError(f"unknown answer kind {kind!r} (expected one of: {', '.join(KINDS)})")
    if not response or not response.strip() or is_rejection(response):
        return None
    explicit = _explicit(response)
    if explicit:
        for content in reversed(explicit):
            if (answer := _read(content, kind, options)) is not None:
                return answer
        return None
    if kind == "numeric":
        return _numeric_fallback(response)
    if kind == "choice":
        return _choice_fallback(response, options or {})
    lines = [line for line in response.splitlines() if clean(line)]
    return clean(lines[-1]) if lines else None


def _boxed(text: str) -> list[tuple[int, str]]:
    """(position, content) of each \\boxed{...}, braces matched."""
    found = []
    for m in re.finditer(r"\\boxed\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            found.append((m.start(), text[m.end(): i - 1].strip()))
    return found


def _explicit(text: str) -> list[str]:
    """The contents of the templates, \\boxed{} and <answer> tags in order; else of the "#### X" lines."""
    found = [(m.start(), m["ans"] if clean(m["ans"]) else (m["next"] or "")) for m in _TEMPLATE.finditer(text)]
    found += _boxed(text) + [(m.start(), m["ans"]) for m in _TAG.finditer(text)]
    return [content for _, content in sorted(found, key=lambda f: f[0])] or _HASHES.findall(text)


def _read(answer: str, kind: VerifierKind, options: dict[str, str] | None) -> str | None:
    """An explicit answer's content in the kind's terms."""
    s = clean(answer)
    if kind == "numeric":
        s = _SENTENCES.split(s)[0]  # "5. Check: 2 + 3 = 5" is 5
        return _sentence_number(s.rsplit("=", 1)[-1] if "=" in s else s)
    if kind == "choice":
        if re.fullmatch(r"\(?[a-j]\)?", s):  # "The answer is: b" (a lone lower-case letter)
            return s.strip("()").upper()
        m = _LETTER_START.search(s) or _LETTER_SAID.search(s)
        if m:
            return next(g for g in m.groups() if g)
        return _match_option(s, options or {})
    return s or None


def _sentence_number(sentence: str) -> str | None:
    results = list(_RESULT.finditer(sentence))
    if results:
        return results[-1]["num"]
    first = _NUMBER.search(sentence)
    return first["num"] if first else None


def _numeric_fallback(text: str) -> str | None:
    if any(any(c.isalnum() for c in m[1]) for m in _LOOP.finditer(text[-600:])):
        return None
    lines = [line for line in text.splitlines() if _NUMBER.search(line)]
    if not lines:
        return None
    for sentence in reversed(_SENTENCES.split(lines[-1])):
        if _CONCLUSION.match(sentence) and (number := _sentence_number(sentence)):
            return number
    for pattern in (_RESULT, _NUMBER):
        found = list(pattern.finditer(lines[-1]))
        if found:
            return found[-1]["num"]
    return None


def _choice_fallback(text: str, options: dict[str, str]) -> str | None:
    lines = list(_LETTER_LINE.finditer(text))
    if len({m["l"] for m in lines}) >= 2:  # an echoed option list: blank those lines out
        for m in lines:
            end = text.find("\n", m.start())
            end = len(text) if end < 0 else end
            text = text[: m.start()] + " " * (end - m.start()) + text[end:]
        lines = []
    found = [(m.start(), m["l"]) for m in lines]
    found += [(m.start(), m["l"] or m["p"] or m["s"]) for m in _LETTER_SAID.finditer(text)]
    if found:
        return max(found)[1]
    last = [line for line in text.splitlines() if line.strip()]
    return _match_option(last[-1], options) if last and options else None


def _match_option(text: str, options: dict[str, str]) -> str | None:
    """The letter of the option `text` names: equal after normalisation, or the only one it contains."""
    said = normalize_text(text)
    if not said:
        return None
    named = {letter: normalize_text(option) for letter, option in options.items()}
    equal = [letter for letter, option in named.items() if option == said]
    if equal:
        return equal[0]
    inside = [letter for letter, option in named.items() if option and f" {option} " in f" {said} "]
    return inside[0] if len(inside) == 1 else None
