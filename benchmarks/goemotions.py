"""GoEmotions (multi-label emotions of Reddit comments) as the kit's multi-label JSONL: the larger multi-label set of
docs/calibration.md, where `--threshold auto` is measured against the fixed 0.5.

Source: GoEmotions (Demszky et al., 2020; data CC BY 4.0 by Google), 27 emotions + neutral, its published
train/dev/test split (43,410 / 5,426 / 5,427 comments), as the public repository monologg/GoEmotions-pytorch
(Apache-2.0) keeps it in `data/original/` (`text<TAB>label ids<TAB>comment id`, ids into `labels.txt`). Nothing of
it is in this repository; tests never read it.

    # online: the files at the pinned commit from GitHub
    python benchmarks/goemotions.py --output ../shared/data/goemotions
    # from a local clone (git directory or work tree) of monologg/GoEmotions-pytorch
    python benchmarks/goemotions.py --source /path/to/GoEmotions-pytorch --output ../shared/data/goemotions

Each row becomes `{"text", "labels": [names], "id"}` in `train.jsonl`, `validation.jsonl` and `test.jsonl`; the text
is kept byte for byte (its `[NAME]` / `[RELIGION]` placeholders included) and a row with a malformed label field or
an unknown label id stops the conversion with its line number instead of being dropped.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.pinned_source import read_pinned

REPOSITORY = "monologg/GoEmotions-pytorch"
COMMIT = "b75f9d3a8b76bc1060687925b04ca98a1b8ea66b"
MEMBER = "data/original/{name}"
SPLITS = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}


def convert_line(line: str, names: list[str], where: str) -> dict:
    """One `text<TAB>ids<TAB>id` line as a multi-label row; ValueError naming `where` when it is malformed."""
    fields = line.split("\t")
    if len(fields) != 3:
        raise ValueError(f"{where}: {len(fields)} tab-separated fields, expected text, label ids and comment id")
    text, ids, comment = fields
    try:
        labels = [names[int(i)] for i in ids.split(",")]
    except (ValueError, IndexError):
        raise ValueError(f"{where}: label ids {ids!r} are not comma-separated ids below {len(names)}") from None
    return {"text": text, "labels": labels, "id": comment}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", help="a clone of monologg/GoEmotions-pytorch (git directory or work tree)")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    labels_text = read_pinned(REPOSITORY, COMMIT, MEMBER.format(name="labels.txt"), args.source)
    if labels_text is None:
        raise SystemExit("labels.txt: not in the source; nothing written")
    names = labels_text.split()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    for split, name in SPLITS.items():
        text = read_pinned(REPOSITORY, COMMIT, MEMBER.format(name=name), args.source)
        if text is None:
            raise SystemExit(f"{name}: not in the source; nothing more written")
        rows = [convert_line(line, names, f"{name} line {n}") for n, line in enumerate(text.split("\n"), 1) if line]
        with (output / f"{split}.jsonl").open("w", encoding="utf-8") as stream:
            stream.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        counts = Counter(len(row["labels"]) for row in rows)
        print(f"{output / f'{split}.jsonl'}: {len(rows)} rows, labels per row {dict(sorted(counts.items()))}")


if __name__ == "__main__":
    main()
