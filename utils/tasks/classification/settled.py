"""What loading classification data settles, kept apart from the user's arguments."""

from __future__ import annotations

from dataclasses import dataclass

from utils.core.task import LoadedData


@dataclass(frozen=True)
class ClassificationSettled:
    """What loading settles: the problem type (from the training labels unless --problem_type says), and the label
    order when the data decides it (GLUE's own order; zero-shot's label names), else None (--label_list or the
    training labels, `build_classification_labels`)."""

    problem_type: str
    label_names: tuple[str, ...] | None = None


def settled_label_names(data: LoadedData) -> list[str] | None:
    """The label order loading settled, else --label_list's."""
    return list(data.settled.label_names) if data.settled.label_names else data.args.label_names
