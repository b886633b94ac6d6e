"""The label space: label order, label2id/id2label, and reconciliation with a fine-tuned model's own labels."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from utils.core.errors import ConfigError

_DEFAULT_NAME = re.compile(r"^LABEL_\d+$")


@dataclass(frozen=True)
class LabelSpace:
    """Ordered label names; the index of a name is its id in the model's output layer."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.names:
            raise ConfigError("The label set is empty: the training data holds no labels.")
        if len(set(self.names)) != len(self.names):
            raise ConfigError(f"Duplicate labels in {list(self.names)}.")

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.label2id

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))


def fine_tuned_labels(config) -> list[str] | None:
    """The labels a model was fine-tuned on, or None for a base model (no labels, or transformers' LABEL_i)."""
    id2label = getattr(config, "id2label", None) or {}
    names = [id2label[i] for i in sorted(id2label, key=int)]
    if not names or all(_DEFAULT_NAME.match(str(name)) for name in names):
        return None
    return [str(name) for name in names]


def build_label_space(
    data_labels: Iterable[str],
    order: Sequence[str] | None = None,
    model_labels: Sequence[str] | None = None,
    sort_key=None,
) -> LabelSpace:
    """Decide the label order: `--label_list` if given, else the fine-tuned model's own order (so its head is
    reused, or grown by the data's new labels, appended sorted by `sort_key`), else the data's labels sorted by
    `sort_key`. Every label in the data is in the result."""
    seen = set(data_labels)
    if order:
        missing = sorted(seen - set(order))
        if missing:
            raise ConfigError(f"--label_list lacks labels found in the data: {missing}. Add them to --label_list.")
        return LabelSpace(tuple(order))
    if model_labels:  # continued fine-tuning: old labels keep their ids, new ones are appended (the head grows)
        extra = sorted(seen - set(model_labels), key=sort_key)
        return LabelSpace(tuple(model_labels) + tuple(extra))
    return LabelSpace(tuple(sorted(seen, key=sort_key)))


def run_label_space(
    training_labels: Iterable[str] | None, label_list: Sequence[str] | None, config, sort_key=None
) -> LabelSpace:
    """The label space of a run from its training labels (None: no training split), `--label_list` and the model's
    config (a fine-tuned model's labels); without any of them there is nothing to predict."""
    model_labels = fine_tuned_labels(config)
    if training_labels is None and not (model_labels or label_list):
        raise ConfigError(
            "No training data and the model was never fine-tuned (its config has no label names): "
            "train first, or point --model_name_or_path at a fine-tuned model."
        )
    return build_label_space(training_labels or (), label_list, model_labels, sort_key=sort_key)


def unseen_labels(
    rows: Iterable[Iterable[str]],
    locations: Iterable[str],
    labels: LabelSpace,
    show: Callable[[str], str] = str,
    locate: Callable[[str, int], str] | None = None,
) -> tuple[int, str]:
    """Labels outside the label space: (occurrences, "name (Nx, first at location), ..."), or (0, "").
    `locate(row location, index)`: where the index-th label of a row stands (NER: the word's own line)."""
    unknown: Counter = Counter()
    first: dict[str, str] = {}
    for names, location in zip(rows, locations):
        for index, name in enumerate(names):
            if name not in labels:
                unknown[name] += 1
                first.setdefault(name, locate(location, index) if locate else location)
    summary = ", ".join(f"{show(name)} ({n}x, first at {first[name]})" for name, n in unknown.most_common())
    return sum(unknown.values()), summary
