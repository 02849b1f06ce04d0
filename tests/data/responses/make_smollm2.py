"""Regenerate smollm2.jsonl: real SmolLM2-135M-Instruct responses for the extraction tests.

    .venv/bin/python tests/data/responses/make_smollm2.py          # writes smollm2.raw.jsonl

Greedy decoding through the transformers backend, with the shared answer prompt
(`build_messages(question, 0.5, allow_reject=False)`), up to 256 new tokens. Each row of
smollm2.jsonl carries `expected` (the answer a careful reader takes from the response, checked by
hand: a number as written, an option letter, or null when the response gives none),
`expected_correct` and a `note`. This script copies those from smollm2.jsonl for the responses
that came out unchanged, and marks the others "UNCHECKED": check them by hand, then move
smollm2.raw.jsonl over smollm2.jsonl. (Greedy output is stable on one machine; other hardware or
library versions may change some text.)
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from swarm.backends.base import GenerationRequest
from swarm.backends.transformers import TransformersBackend
from swarm.prompts import build_messages
from swarm.specs import TransformersBackendSpec

HERE = Path(__file__).parent
MAX_TOKENS = 256

# (id, verifier, question, gold); multiple-choice questions list their options in the prompt.
QUESTIONS: list[tuple[str, str, str, str]] = [
    ("gsm-1", "numeric", "Tom has 3 boxes of pencils. Each box holds 12 pencils. He gives away 8 pencils. How many pencils does he have left?", "28"),
    ("gsm-2", "numeric", "A bakery sells cupcakes for $2 each. Maria buys 7 cupcakes and pays with a $20 bill. How much change does she get, in dollars?", "6"),
    ("gsm-3", "numeric", "Sam reads 15 pages a day. How many pages does he read in 2 weeks?", "210"),
    ("gsm-4", "numeric", "A farmer has 24 cows and 3 times as many chickens. How many animals does the farmer have in total?", "96"),
    ("gsm-5", "numeric", "Lisa earns $12 an hour and works 35 hours a week. How much does she earn in a week, in dollars?", "420"),
    ("gsm-6", "numeric", "A train travels at 60 miles per hour for 2.5 hours. How many miles does it travel?", "150"),
    ("gsm-7", "numeric", "There are 30 students in a class. Two fifths of them are boys. How many girls are in the class?", "18"),
    ("gsm-8", "numeric", "John bought a shirt for $25 and a pair of jeans that cost twice as much. How much did he spend in total, in dollars?", "75"),
    ("gsm-9", "numeric", "A pizza is cut into 8 slices. If 3 friends each eat 2 slices, how many slices are left?", "2"),
    ("gsm-10", "numeric", "Emma saves $5 every week. How many weeks does it take her to save $65?", "13"),
    ("gsm-11", "numeric", "A garden is 12 meters long and 5 meters wide. What is its area in square meters?", "60"),
    ("gsm-12", "numeric", "A store had 1,200 apples. It sold 450 on Monday and 375 on Tuesday. How many apples are left?", "375"),
    ("arith-1", "numeric", "What is 17 + 25?", "42"),
    ("arith-2", "numeric", "What is 9 times 8?", "72"),
    ("arith-3", "numeric", "What is 144 divided by 12?", "12"),
    ("arith-4", "numeric", "What is 1000 - 387?", "613"),
    ("arith-5", "numeric", "Compute 3.5 * 4.", "14"),
    ("arith-6", "numeric", "What is 15% of 200?", "30"),
    ("arith-7", "numeric", "What is -7 + 3?", "-4"),
    ("arith-8", "numeric", "What is 23 * 47?", "1081"),
    ("arith-9", "numeric", "What is 2 + 2?", "4"),
    ("arith-10", "numeric", "What is 10 + 5?", "15"),
    ("mc-1", "choice", "Which planet is known as the Red Planet?\nA. Venus\nB. Mars\nC. Jupiter\nD. Saturn", "B"),
    ("mc-2", "choice", "What is the chemical symbol for gold?\nA. Ag\nB. Gd\nC. Au\nD. Go", "C"),
    ("mc-3", "choice", "How many legs does a spider have?\nA. 6\nB. 8\nC. 10\nD. 12", "B"),
    ("mc-4", "choice", "Which gas do plants absorb from the air for photosynthesis?\nA. Oxygen\nB. Nitrogen\nC. Carbon dioxide\nD. Helium", "C"),
    ("mc-5", "choice", "Who wrote 'Romeo and Juliet'?\nA. William Shakespeare\nB. Charles Dickens\nC. Jane Austen\nD. Mark Twain", "A"),
    ("mc-6", "choice", "What is the largest ocean on Earth?\nA. Atlantic Ocean\nB. Indian Ocean\nC. Arctic Ocean\nD. Pacific Ocean", "D"),
    ("mc-7", "choice", "What is the boiling point of water at sea level in degrees Celsius?\nA. 90\nB. 100\nC. 110\nD. 120", "B"),
    ("mc-8", "choice", "Which organ pumps blood through the human body?\nA. Lungs\nB. Liver\nC. Heart\nD. Kidneys", "C"),
    ("mc-9", "choice", "What is 6 x 7?\n(A) 36\n(B) 42\n(C) 48\n(D) 54", "B"),
    ("mc-10", "choice", "Which of these is a mammal?\nA. Shark\nB. Eagle\nC. Dolphin\nD. Frog", "C"),
    ("mc-11", "choice", "Which is the smallest prime number?\nA. 0\nB. 1\nC. 2\nD. 3", "C"),
    ("mc-12", "choice", "In which continent is Egypt?\nA. Asia\nB. Africa\nC. Europe\nD. South America", "B"),
    ("mc-13", "choice", "What color is the sky on a clear day?\nA. Green\nB. Blue\nC. Red\nD. Yellow", "B"),
    ("mc-14", "choice", "What is the capital of France?\nA. Paris\nB. London\nC. Berlin\nD. Madrid", "A"),
    ("mc-15", "choice", "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6", "B"),
]


async def main() -> None:
    spec = TransformersBackendSpec(kind="transformers", model="offline:smollm2-135m-instruct", max_new_tokens=MAX_TOKENS, max_batch=8)
    backend = TransformersBackend(spec, "fixture")
    await backend.start()
    try:
        requests = [GenerationRequest(query_id=qid, query=q, alpha=0.5, allow_reject=False, messages=build_messages(q, 0.5, allow_reject=False))
                    for qid, _, q, _ in QUESTIONS]
        generations = await asyncio.gather(*(backend.generate(r) for r in requests))
    finally:
        await backend.close()
    checked_path = HERE / "smollm2.jsonl"
    checked = {r["id"]: r for r in map(json.loads, checked_path.read_text().splitlines())} if checked_path.exists() else {}
    unchecked = 0
    with (HERE / "smollm2.raw.jsonl").open("w") as fh:
        for (qid, verifier, question, gold), gen in zip(QUESTIONS, generations, strict=True):
            row = {"id": qid, "verifier": verifier, "question": question, "gold": gold, "response": gen.text, "finish_reason": gen.finish_reason}
            old = checked.get(qid)
            if old and old["response"] == gen.text and old["gold"] == gold:
                row.update(expected=old["expected"], expected_correct=old["expected_correct"], note=old["note"])
            else:
                row.update(expected=None, expected_correct=False, note="UNCHECKED")
                unchecked += 1
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(QUESTIONS)} responses to smollm2.raw.jsonl; {unchecked} to check by hand")


if __name__ == "__main__":
    asyncio.run(main())
