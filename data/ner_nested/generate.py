"""Writes this folder's nested NER sample (train/validation/test.jsonl, and label_studio.json: 60 more sentences
as a Label Studio export with nested spans), written for the span head's tests and
zero-setup runs: template sentences whose organisations and people hold a location or another entity inside them
("the University of Toronto", "the mayor of Lyon"), beside flat ones. Deterministic: `python generate.py`."""

import json
import random
from pathlib import Path

CITIES = ["Toronto", "Lyon", "Boston", "Kyoto", "Madrid", "Oslo", "Dublin", "Lagos", "Perth", "Quito", "Turin", "Graz"]
COUNTRIES = ["Canada", "France", "Japan", "Spain", "Norway", "Ireland", "Nigeria", "Chile", "Peru", "Austria"]
PEOPLE = ["Ana Silva", "John Park", "Mira Novak", "Omar Haddad", "Lena Berg", "Tom Reyes", "Ines Costa", "Raj Mehta"]
VERBS = ["announced", "opened", "closed", "expanded", "criticised", "praised", "funded", "visited"]


def sentence(rng: random.Random) -> dict:
    city, country, person, verb = rng.choice(CITIES), rng.choice(COUNTRIES), rng.choice(PEOPLE), rng.choice(VERBS)
    pattern = rng.randrange(6)
    entities = []
    if pattern == 0:  # ORG holding a LOC, then a flat PER
        words = ["The", "University", "of", city, verb, "a", "lab", "with", *person.split(), "."]
        entities = [(1, 4, "ORG"), (3, 4, "LOC"), (8, 10, "PER")]
    elif pattern == 1:  # PER (a role) holding a LOC
        words = ["The", "mayor", "of", city, verb, "the", "plan", "on", "Monday", "."]
        entities = [(0, 4, "PER"), (3, 4, "LOC")]
    elif pattern == 2:  # ORG holding a LOC, and a flat LOC
        words = ["Bank", "of", country, "staff", "in", city, verb, "the", "report", "."]
        entities = [(0, 3, "ORG"), (2, 3, "LOC"), (5, 6, "LOC")]
    elif pattern == 3:  # flat only
        words = [*person.split(), verb, "a", "school", "in", city, ",", country, "."]
        entities = [(0, 2, "PER"), (6, 7, "LOC"), (8, 9, "LOC")]
    elif pattern == 4:  # a PER holding an ORG holding a LOC (depth 2), and a flat PER
        words = ["The", "chair", "of", "the", city, "Council", ",", *person.split(), ",", verb, "it", "."]
        entities = [(0, 6, "PER"), (3, 6, "ORG"), (4, 5, "LOC"), (7, 9, "PER")]
    else:  # ORG whose name is a LOC plus a word
        words = [city, "Airport", verb, "a", "terminal", "for", country, "flights", "."]
        entities = [(0, 2, "ORG"), (0, 1, "LOC"), (6, 7, "LOC")]
    return {"tokens": words, "entities": [{"start": s, "end": e, "label": label} for s, e, label in entities]}


def label_studio_task(number: int, row: dict) -> dict:
    """A Label Studio export task of a row: the words joined by spaces, each entity a `labels` result."""
    offsets, position = [], 0
    for word in row["tokens"]:
        offsets.append((position, position + len(word)))
        position += len(word) + 1
    text = " ".join(row["tokens"])
    result = []
    for i, entity in enumerate(row["entities"]):
        start, end = offsets[entity["start"]][0], offsets[entity["end"] - 1][1]
        value = {"start": start, "end": end, "text": text[start:end], "labels": [entity["label"]]}
        result.append({"value": value, "id": f"r{i}", "from_name": "label", "to_name": "text", "type": "labels"})
    return {"id": number, "data": {"text": text}, "annotations": [{"id": number, "result": result}]}


def main() -> None:
    rng = random.Random(31)
    here = Path(__file__).parent
    for split, count in (("train", 120), ("validation", 30), ("test", 30)):
        rows = [sentence(rng) for _ in range(count)]
        (here / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    tasks = [label_studio_task(number, sentence(rng)) for number in range(1, 61)]
    (here / "label_studio.json").write_text(json.dumps(tasks, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
