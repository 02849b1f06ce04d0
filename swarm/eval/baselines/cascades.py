"""Driver-side cascades: the query goes to the cheapest agent, which must answer; a scorer
judges the (query, answer) pair, and a rejected answer sends the query on to the next agent
(the last agent's answer always counts). Every call is a real call to the swarm, and its tokens
and model-seconds count in the query's measured cost.

- FrugalGPT: a learned scorer per agent (logistic regression over the all-MiniLM-L6-v2 embedding
  of "query answer"), trained on the agents' forced answers to the training items; the accept
  thresholds per agent are chosen, for each alpha, to maximise utility on the training items,
  scored with cross-validated predictions (so the thresholds do not trust an overfitted scorer).
- AutoMix: each agent verifies its own answer with a prompt (AutoMix's self-verification),
  asked of the same agent; the answer is kept when the agent says yes.

In the records, an answer the scorer kept is the agent's "answer" and one it vetoed a "reject" (the
last agent's is "forced"), so answer rates and self-assessment F1 describe the cascade's external
scorer the way they describe a swarm agent's own decisions.

(The untrained token-confidence cascade is the swarm itself with the `confidence` policy:
`swarm.eval.harness.SelfRouting` on a topology like topologies/quickstart.yaml.)
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from swarm.client import Answer
from swarm.eval.embed import embed
from swarm.eval.harness import agent_costs, ask_agent, steps_of, to_record
from swarm.eval.records import Record, Step
from swarm.prompts import says_yes
from swarm.tasks.base import TaskItem

VERIFY_PROMPT = "Question: {question}\nProposed answer: {answer}\nIs the proposed answer correct? Reply with only 'yes' or 'no'."


class DriverCascade(abc.ABC):
    """Shared loop: ask agents cheapest first, keep an answer when `accept` says so."""

    name = "cascade"

    @abc.abstractmethod
    def accept(self, swarm, agent: str, items: list[TaskItem], answers: list, alpha: float) -> tuple[list[bool], list[list[Step]]]:
        """Which of this agent's answers to keep, and the extra calls that deciding cost."""

    def run(self, swarm, items, alpha) -> list[Record]:
        costs = agent_costs(swarm)
        ladder = list(costs)
        spent: dict[str, list[Step]] = {i.id: [] for i in items}
        waited: dict[str, float] = {i.id: 0.0 for i in items}
        out: dict[str, Record] = {}
        left = list(items)
        for n, agent in enumerate(ladder):
            answers = ask_agent(swarm, agent, [i.prompt for i in left], alpha)
            last = n == len(ladder) - 1
            ok = [isinstance(a, Answer) for a in answers]
            keep, extra = ([True] * len(left), [[] for _ in left]) if last else self.accept(swarm, agent, left, answers, alpha)
            onward = []
            for item, a, good, k, more in zip(left, answers, ok, keep, extra, strict=True):
                if last or (good and k):
                    r = to_record(item, self.name, alpha, a, costs, spent[item.id] + more, waited[item.id])
                    if not last:  # the scorer's accept is this cascade's "answer" decision for the agent
                        r = replace(r, steps=[*r.steps[:-1], replace(r.steps[-1], decision="answer")])
                    out[item.id] = r
                else:  # the scorer's veto: recorded as the agent's "reject" (self-assessment F1 then scores the scorer)
                    spent[item.id] += [replace(st, decision="reject") if st.decision == "forced" else st for st in steps_of(a)] + more
                    waited[item.id] += getattr(a, "latency_s", 0.0)
                    onward.append(item)
            left = onward
        return [out[i.id] for i in items]


class FrugalGPT(DriverCascade):
    name = "frugalgpt"
    GRID = (0.0, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 1.01)  # 0 accepts everything, 1.01 nothing

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.thresholds: dict[float, dict[str, float]] = {}

    @staticmethod
    def _text(item: TaskItem, answer: str) -> str:
        return f"{item.prompt} {answer}"

    def fit(self, items: Sequence[TaskItem], answers: Mapping[str, Mapping[str, str]], labels: Mapping[str, Mapping[str, bool]],
            costs: dict[str, float]):
        """`answers[agent][item id]`: the agent's forced answer on a training item; `labels` its correctness."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        self.costs, self.ladder = costs, list(costs)
        self.models, self._cv = {}, {}
        for agent in self.ladder[:-1]:
            x = embed([self._text(i, answers[agent][i.id]) for i in items])
            y = np.array([labels[i.id][agent] for i in items], dtype=int)
            folds = min(5, int(np.bincount(y, minlength=2).min()))  # stratified folds need that many of the rarer label
            if folds < 2:  # (nearly) always right or always wrong in training: a constant scorer at the base rate
                self.models[agent] = float(y.mean())
                self._cv[agent] = np.full(len(y), float(y.mean()))
                continue
            model = LogisticRegression(max_iter=2000, C=1.0)
            cv = StratifiedKFold(folds, shuffle=True, random_state=self.seed)
            self._cv[agent] = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
            self.models[agent] = model.fit(x, y)
        self._y = {a: np.array([labels[i.id][a] for i in items], dtype=float) for a in self.ladder}
        return self

    MAX_COMBOS = 50_000  # beyond this many threshold combinations (a ladder of 7+), coordinate ascent instead

    def thresholds_for(self, alpha: float) -> dict[str, float]:
        """The accept thresholds that maximise mean (correct - alpha x cost) on the training items:
        every combination of GRID values on a short ladder; on a long one (len(GRID) ** agents past
        MAX_COMBOS) coordinate ascent from the best single threshold shared by all, one agent's
        threshold at a time over GRID, until a pass changes nothing."""
        if alpha not in self.thresholds:
            k = len(self.ladder) - 1
            if len(self.GRID) ** k <= self.MAX_COMBOS:
                best = max(itertools.product(self.GRID, repeat=k), key=lambda c: self._train_utility(c, alpha))
            else:
                best = max(((t,) * k for t in self.GRID), key=lambda c: self._train_utility(c, alpha))
                for _ in range(20):
                    before = best
                    for j in range(k):
                        best = max((best[:j] + (t,) + best[j + 1:] for t in self.GRID), key=lambda c: self._train_utility(c, alpha))
                    if best == before:
                        break
            self.thresholds[alpha] = dict(zip(self.ladder[:-1], best, strict=True))
        return self.thresholds[alpha]

    def _train_utility(self, combo: tuple[float, ...], alpha: float) -> float:
        taken = np.zeros(len(self._y[self.ladder[0]]), dtype=bool)
        gain = np.zeros_like(taken, dtype=float)
        for agent, t in zip(self.ladder, (*combo, -1.0), strict=True):
            take = ~taken & (self._cv.get(agent, np.ones_like(gain)) >= t)
            gain[take] = self._y[agent][take] - alpha * self.costs[agent]
            taken |= take
        return float(gain.mean())

    def score(self, agent: str, items: list[TaskItem], texts: list[str]) -> np.ndarray:
        model = self.models[agent]
        if isinstance(model, float):
            return np.full(len(items), model)
        return model.predict_proba(embed([self._text(i, t) for i, t in zip(items, texts, strict=True)]))[:, 1]

    def accept(self, swarm, agent, items, answers, alpha):
        t = self.thresholds_for(alpha)[agent]
        p = self.score(agent, items, [getattr(a, "text", "") for a in answers])
        return [bool(x >= t) for x in p], [[] for _ in items]


class AutoMix(DriverCascade):
    name = "automix"

    def accept(self, swarm, agent, items, answers, alpha):
        texts = [VERIFY_PROMPT.format(question=i.prompt, answer=getattr(a, "text", "")) for i, a in zip(items, answers, strict=True)]
        verdicts = ask_agent(swarm, agent, texts, alpha)
        keep = [isinstance(v, Answer) and says_yes(v.text) for v in verdicts]
        extra = [[Step(s.agent, "verify", s.seconds, s.tokens) for s in steps_of(v)] for v in verdicts]
        return keep, extra
