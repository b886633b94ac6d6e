"""Entity scores of span predictions (the span head, nested or flat): an entity is right when its start, end and
type all equal a gold entity's. Overall, per type, per nesting depth (how many gold entities contain it), and the
recall of nested entities (those that overlap another gold entity), which BIO tagging cannot reach."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from utils.tasks.ner.iob import Span
from utils.tasks.ner.span_decoding import is_nested, nesting_depth


def _prf(true_positives: int, predicted: int, gold: int) -> tuple[float, float, float]:
    precision = true_positives / predicted if predicted else 0.0
    recall = true_positives / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def span_metrics(gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]]) -> dict[str, float]:
    """`precision`, `recall`, `f1`; per type `<TYPE>_precision|recall|f1|support`; per depth d (of the gold entity;
    a wrong prediction's among the predictions) `depth<d>_precision|recall|f1|support`; `nested_recall` and
    `nested_support` over the gold entities that overlap another."""
    counts: Counter = Counter()
    for gold_spans, predicted_spans in zip(gold, predicted, strict=True):
        gold_set, predicted_set = set(gold_spans), set(predicted_spans)
        gold_list, predicted_list = sorted(gold_set, key=_order), sorted(predicted_set, key=_order)
        gold_depth = dict(zip(gold_list, nesting_depth(gold_list)))
        for span, depth, nested in zip(gold_list, nesting_depth(gold_list), is_nested(gold_list)):
            hit = span in predicted_set
            for key in ("all", f"type:{span.label}", f"depth:{depth}"):
                counts[(key, "gold")] += 1
                counts[(key, "tp")] += hit
            if nested:
                counts[("nested", "gold")] += 1
                counts[("nested", "tp")] += hit
        for span, own_depth in zip(predicted_list, nesting_depth(predicted_list)):
            depth = gold_depth.get(span, own_depth)  # a right entity counts at its gold depth
            for key in ("all", f"type:{span.label}", f"depth:{depth}"):
                counts[(key, "predicted")] += 1
    metrics: dict[str, float] = {}
    keys = sorted({"all"} | {key for key, _ in counts if key != "nested"}, key=lambda k: (k != "all", k))
    for key in keys:
        precision, recall, f1 = _prf(counts[(key, "tp")], counts[(key, "predicted")], counts[(key, "gold")])
        prefix = "" if key == "all" else key.split(":", 1)[1] + "_"
        prefix = f"depth{prefix}" if key.startswith("depth:") else prefix
        metrics.update({f"{prefix}precision": precision, f"{prefix}recall": recall, f"{prefix}f1": f1})
        if key != "all":
            metrics[f"{prefix}support"] = counts[(key, "gold")]
    metrics["nested_support"] = counts[("nested", "gold")]
    metrics["nested_recall"] = (
        counts[("nested", "tp")] / counts[("nested", "gold")] if counts[("nested", "gold")] else 0.0
    )
    return metrics


def _order(span: Span) -> tuple:
    return (span.start, -span.end, span.label)
