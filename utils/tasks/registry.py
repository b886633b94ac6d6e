"""Every task, as its `Task` record: what serving (utils/serving/) picks from to load a saved model (by
`Task.architecture_suffix`), so that it knows no task by name and a new task is one more entry here."""

from __future__ import annotations

from utils.core.task import Task
from utils.tasks.classification.task import CLASSIFICATION_TASK
from utils.tasks.ner.task import NER_TASK

TASKS: tuple[Task, ...] = (NER_TASK, CLASSIFICATION_TASK)
