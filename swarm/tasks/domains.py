"""In-domain and out-of-domain: the one definition that training and evaluation share.

In-domain families train the agents' self-awareness (and give the in-domain test); out-of-domain
families are held out of self-awareness training and serve only as the out-of-domain test (base
models may have seen them). Three suites:

- paper: the paper's sets through `datasets` (needs the Hub): in GSM8K, ARC, MMLU, RACE,
  OpenbookQA, DROP, CosmosQA; out SQuAD, HellaSwag, HeadQA.
- offline: real benchmarks that work with no network. In: the same kinds as the paper's in-domain
  set (math word problems, school-subject multiple choice, yes/no reasoning, arithmetic): GSM8K,
  MMLU, BIG-bench strategyqa and arithmetic. Out: open-ended knowledge and "is this knowable"
  questions that match no in-domain format: FreshQA, BIG-bench qa_wikidata and known_unknowns.
- testbed: the testbed ladder's own families (swarm.tasks.testbed_families, which names `rev` its
  out-of-domain family). In: add, sub, sum, max. Out: rev.
- procedural: reasoning-gym families at graded difficulty. In: arithmetic word and expression
  tasks (basic_arithmetic, chain_sum, products, leg_counting, gsm_symbolic). Out: symbol and
  string manipulation and number theory (letter_counting, number_sorting, spell_backward, gcd).

A benchmark keeps its group whichever loader produced it: "gsm8k" and "mmlu/<subject>" items are
in-domain from the packaged files and from the Hub alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from swarm.tasks.base import Split, TaskItem
from swarm.tasks.loaders import UnknownTask, load, rg_difficulties
from swarm.tasks.testbed_families import IN_DOMAIN_FAMILIES as TESTBED_IN_DOMAIN
from swarm.tasks.testbed_families import OOD_FAMILIES as TESTBED_OOD

Group = Literal["in", "out"]
GROUPS: tuple[Group, ...] = ("in", "out")


@dataclass(frozen=True)
class Suite:
    """The loader names (see swarm.tasks.loaders.load) in and out of domain."""

    in_domain: tuple[str, ...]
    out_of_domain: tuple[str, ...]

    def families(self, group: Group) -> tuple[str, ...]:
        if group not in GROUPS:
            raise UnknownTask("domain group", group, GROUPS)
        return self.in_domain if group == "in" else self.out_of_domain


SUITES: dict[str, Suite] = {
    "paper": Suite(
        in_domain=("hf/gsm8k", "hf/arc", "hf/mmlu", "hf/race", "hf/openbookqa", "hf/drop", "hf/cosmosqa"),
        out_of_domain=("hf/squad", "hf/hellaswag", "hf/headqa"),
    ),
    "offline": Suite(
        in_domain=("gsm8k", "mmlu", "bigbench/strategyqa", "bigbench/arithmetic"),
        out_of_domain=("freshqa", "bigbench/qa_wikidata", "bigbench/known_unknowns"),
    ),
    "procedural": Suite(
        in_domain=("rg/basic_arithmetic", "rg/chain_sum", "rg/products", "rg/leg_counting", "rg/gsm_symbolic"),
        out_of_domain=("rg/letter_counting", "rg/number_sorting", "rg/spell_backward", "rg/gcd"),
    ),
    "testbed": Suite(
        in_domain=tuple(f"testbed/{f}" for f in TESTBED_IN_DOMAIN),
        out_of_domain=tuple(f"testbed/{f}" for f in TESTBED_OOD),
    ),
}


def benchmark(name_or_domain: str) -> str:
    """The benchmark a loader name or an item's domain belongs to: 'hf/arc' -> 'arc',
    'mmlu/anatomy' -> 'mmlu', 'rg/chain_sum', 'bigbench/strategyqa' and 'testbed/add' stay as they are."""
    name = name_or_domain.removeprefix("hf/")
    head, _, rest = name.partition("/")
    if head in ("rg", "bigbench", "testbed") and rest:
        return f"{head}/{rest.split('/')[0]}"
    return head


def _groups() -> dict[str, Group]:
    out: dict[str, Group] = {}
    for suite in SUITES.values():
        for group in GROUPS:
            for name in suite.families(group):
                key = benchmark(name)
                if out.setdefault(key, group) != group:  # the definition must not contradict itself
                    raise AssertionError(f"{key} is both in and out of domain")
    return out


BENCHMARK_GROUP: dict[str, Group] = _groups()
IN_DOMAIN: frozenset[str] = frozenset(k for k, g in BENCHMARK_GROUP.items() if g == "in")
OUT_OF_DOMAIN: frozenset[str] = frozenset(k for k, g in BENCHMARK_GROUP.items() if g == "out")


def domain_group(item_or_domain: TaskItem | str) -> Group:
    """'in' or 'out' for an item (by its domain), a domain string or a loader name."""
    domain = item_or_domain.domain if isinstance(item_or_domain, TaskItem) else item_or_domain
    key = benchmark(domain)
    if key not in BENCHMARK_GROUP:
        raise UnknownTask("benchmark", domain, sorted(BENCHMARK_GROUP))
    return BENCHMARK_GROUP[key]


def is_in_domain(item_or_domain: TaskItem | str) -> bool:
    return domain_group(item_or_domain) == "in"


def families(group: Group, suite: str = "offline") -> tuple[str, ...]:
    if suite not in SUITES:
        raise UnknownTask("domain suite", suite, sorted(SUITES))
    return SUITES[suite].families(group)


def group_items(
    group: Group,
    suite: str = "offline",
    split: Split | None = None,
    seed: int = 0,
    per_family: int | None = None,
    rg_per_level: int = 100,
) -> list[TaskItem]:
    """Every family's items of one group and split, family after family.

    Fixed sets give all their items of the split, or the first `per_family` in seeded order.
    Reasoning-gym families give `rg_per_level` distinct items of the split at each of their
    levels (fewer where a level has fewer), or `per_family` in all spread evenly over the levels.
    """
    items: list[TaskItem] = []
    for name in families(group, suite):
        if name.startswith("rg/"):
            levels = rg_difficulties(name.removeprefix("rg/"))
            n = rg_per_level if per_family is None else -(-per_family // len(levels))
            family_items = [
                it for level in levels for it in load(name, difficulty=level, n=n, seed=seed, split=split, if_short="truncate")
            ]
            items += family_items if per_family is None else family_items[:per_family]
        else:
            items += load(name, split=split, seed=seed, limit=per_family)
    return items


def in_domain_items(split: Split | None = None, suite: str = "offline", **kwargs) -> list[TaskItem]:
    """In-domain items (for self-awareness training and the in-domain test)."""
    return group_items("in", suite, split, **kwargs)


def out_of_domain_items(split: Split | None = None, suite: str = "offline", **kwargs) -> list[TaskItem]:
    """Out-of-domain items (held out of self-awareness training; the out-of-domain test)."""
    return group_items("out", suite, split, **kwargs)
