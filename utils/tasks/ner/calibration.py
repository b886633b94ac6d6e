"""NER's units for calibration (`TaskCalibration`, docs/calibration.md): one per predicted entity, right when the
gold has the same span with the same type. An entity's score is the mean of its words' tag probabilities (as
`entity_record` has always written it); calibration maps that score through the map chosen on validation
(temperature, temperature and bias on its log-odds (Platt scaling), or isotonic regression), so it reads as the
probability that the entity is right. `abstain_entities` applies --min_confidence to a result."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from datasets import Dataset

from utils.core.calibration import BELOW_MIN_CONFIDENCE, CalibrationUnits, SplitScores, binary_logits, is_abstained
from utils.core.labels import LabelSpace
from utils.core.task import LoadedData, TaskCalibration
from utils.tasks.ner.iob import OUTSIDE, tags_to_spans
from utils.tasks.ner.outputs import entity_mean


def entity_confidence(word_scores: Sequence[float]) -> float:
    """An entity's uncalibrated score: the mean probability of its words' predicted tags."""
    return entity_mean(word_scores)


def ner_scores(prediction: Any, raw: Dataset, labels: LabelSpace, data: LoadedData) -> SplitScores | None:
    """A split's predicted entities as binary units (None: the split has no gold tags, or the model is the span head,
    whose span probabilities are not calibrated yet)."""
    if "ner_tags" not in raw.column_names or not hasattr(prediction, "tag_words"):
        return None
    tagged = prediction.tag_words(raw["tokens"], raw["document_id"])
    scores, right = [], []
    for (tags, word_scores), gold_tags in zip(tagged, raw["ner_tags"], strict=True):
        gold = set(tags_to_spans(gold_tags))
        for span in tags_to_spans(tags):
            scores.append(entity_confidence(word_scores[span.start : span.end]))
            right.append(span in gold)
    count = len(scores)
    units = CalibrationUnits(
        binary_logits(scores).reshape(count, 2),
        np.zeros(count, dtype=np.int64),
        np.asarray([0 if ok else 1 for ok in right], dtype=np.int64),
        classes=False,
    )
    return SplitScores(units)


NER_CALIBRATION = TaskCalibration(unit="entity", kept_metric="precision", scores=ner_scores, bias=True)


def abstain_entities(result: dict[str, Any], min_confidence: float, mode: str) -> dict[str, Any]:
    """Entities scored below --min_confidence: withheld (dropped, their words tagged O in `"tags"`) or, with `mode`
    'flag', kept with `"abstained": true`; counted in `"below_min_confidence"` either way."""
    entities = result.get("entities", [])
    low = [is_abstained(entity.get("score"), min_confidence) for entity in entities]
    if mode == "flag":
        flagged = [{**e, "abstained": True} if out else e for e, out in zip(entities, low, strict=True)]
        return {**result, "entities": flagged, BELOW_MIN_CONFIDENCE: sum(low)}
    kept = [e for e, out in zip(entities, low, strict=True) if not out]
    withheld = {**result, "entities": kept, BELOW_MIN_CONFIDENCE: sum(low)}
    if "tags" in result:  # pre-split words: entity start/end are word indices
        tags = list(result["tags"])
        for entity in (e for e, out in zip(entities, low, strict=True) if out):
            tags[entity["start"] : entity["end"]] = [OUTSIDE] * (entity["end"] - entity["start"])
        withheld["tags"] = tags
    return withheld
