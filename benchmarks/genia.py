"""GENIA (nested biomedical entities) as the span head's JSONL: the real nested corpus of docs/span_head.md.

Source: the GENIA term corpus 3.02 (Kim et al., 2003, GENIA Project License: use and redistribution with attribution)
as split and tokenised by the public repository yhcc/CNN_Nested_NER (`preprocess/outputs/genia/*.jsonlines`, the
split of Finkel and Manning 2009 used by most nested-NER papers; five types: DNA, RNA, protein, cell_line,
cell_type). Nothing of it is in this repository; tests never read it.

    # online: the files at the pinned commit from GitHub
    python benchmarks/genia.py --output ../shared/data/genia
    # from a local clone (git directory or work tree) of yhcc/CNN_Nested_NER
    python benchmarks/genia.py --source /path/to/CNN_Nested_NER --output ../shared/data/genia

Each `<split>.jsonlines` row `{"tokens", "entity_mentions": [{"start", "end", "entity_type"}]}` becomes a row
`{"tokens", "entities": [{"start", "end", "label"}], "document_id"}` (word spans, end exclusive, as the kit reads
them); nothing is dropped or changed, and the script checks every span lies inside its sentence. Where a split is
missing (the snapshot this project could reach held dev and test, not the 14 MB train file), `--dev_as_train` writes
`dev_train.jsonl` and `dev_validation.jsonl` from the dev split, cut between documents (the last tenth of its
documents validate), so a run can train, select and test on GENIA without the train file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.pinned_source import read_pinned

COMMIT = "d1c9fae196e2d7692f3d5afd86694dd933b08d71"
REPOSITORY = "yhcc/CNN_Nested_NER"
SPLITS = ("train", "dev", "test")
MEMBER = "preprocess/outputs/genia/{split}.jsonlines"


def read_split(source: str | None, split: str) -> str | None:
    """The split's text from GitHub (no `source`), a git directory (bare or not) or a work tree; None if absent."""
    return read_pinned(REPOSITORY, COMMIT, MEMBER.format(split=split), source)


def convert_row(row: dict, where: str) -> dict:
    """One GENIA row as the kit's nested JSONL row (word spans kept exactly)."""
    tokens = row["tokens"]
    entities = []
    for mention in row["entity_mentions"]:
        start, end = mention["start"], mention["end"]
        if not 0 <= start < end <= len(tokens):
            raise ValueError(f"{where}: entity {mention} lies outside the sentence's {len(tokens)} words")
        entities.append({"start": start, "end": end, "label": mention["entity_type"]})
    return {"tokens": tokens, "entities": entities, "document_id": row["doc_id"]}


def statistics(rows: list[dict]) -> dict:
    """Sentences, entities, entities overlapping another, longest entity in words."""
    entities = nested = longest = 0
    for row in rows:
        spans = [(e["start"], e["end"]) for e in row["entities"]]
        entities += len(spans)
        longest = max([longest, *(end - start for start, end in spans)])
        nested += sum(any(o != s and o[0] < s[1] and s[0] < o[1] for o in spans) for s in spans)
    return {"sentences": len(rows), "entities": entities, "overlapping_another": nested, "longest_entity": longest}


def write(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as stream:
        for row in rows:
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{path}: {json.dumps(statistics(rows))}")


def split_by_documents(rows: list[dict], share: float = 0.1) -> tuple[list[dict], list[dict]]:
    """The rows of the first (1 - share) of the documents, in order, and the rest (no document in both)."""
    documents = list(dict.fromkeys(row["document_id"] for row in rows))
    held = set(documents[len(documents) - max(1, round(share * len(documents))) :])
    return [r for r in rows if r["document_id"] not in held], [r for r in rows if r["document_id"] in held]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", help="a clone of yhcc/CNN_Nested_NER (git directory or work tree); else GitHub")
    parser.add_argument("--output", required=True)
    parser.add_argument("--dev_as_train", action="store_true", help="also dev_train.jsonl / dev_validation.jsonl")
    args = parser.parse_args(argv)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    converted = {}
    for split in SPLITS:
        text = read_split(args.source, split)
        if text is None:
            print(f"{split}: not in the source, not written")
            continue
        lines = [line for line in text.splitlines() if line.strip()]
        converted[split] = [
            convert_row(json.loads(line), f"{split}.jsonlines line {n}") for n, line in enumerate(lines, 1)
        ]
        write(output / f"{split}.jsonl", converted[split])
    if args.dev_as_train and "dev" in converted:
        train, validation = split_by_documents(converted["dev"])
        write(output / "dev_train.jsonl", train)
        write(output / "dev_validation.jsonl", validation)


if __name__ == "__main__":
    main()
