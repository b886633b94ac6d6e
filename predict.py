"""Predict with a fine-tuned model: entities (NER) or labels (classification), one JSON line per input line.

    python predict.py --model outputs/ner --input texts.txt --output entities.jsonl
    echo "Angela Merkel visited Paris." | python predict.py --model outputs/ner --input -
    python predict.py --model outputs/ner --input test.conll --output -          # pre-split words: + tokens, tags
    python predict.py --model outputs/classification --input reviews.jsonl --text_field review
    python predict.py --model outputs/ner --input pool.txt --output_format label-studio --output tasks.json
    python predict.py --model outputs/ner --input pool.txt --select_uncertain 100 --output_format doccano \
        --output next_batch.jsonl                   # the 100 texts the model is least sure of, pre-annotated

The task comes from the model's config (the architecture it was saved with), and decides what the model takes and
gives (utils/tasks/*/predict.py). Inputs: one text per line, JSONL with a text field (or, for NER, a `tokens` list),
or (NER) a CoNLL file, one output per sentence. Output lines follow the input, empty lines giving empty results. A
model trained with --context_size sees the neighbouring sentences of the same document (CoNLL `-DOCSTART-` lines, a
JSONL `document_id`) as in training. The same predictions from Python: `utils.serving.predictor.Predictor`.
--output_format label-studio|doccano writes pre-annotations those tools import (utils/serving/annotation_output.py);
--select_uncertain N keeps the N inputs the model is least sure about, most uncertain first.
"""

from __future__ import annotations

from utils.core.errors import run_command
from utils.serving.arguments import PredictArguments, PredictorArguments, parse_script_args
from utils.serving.batch_prediction import predict_file


def main(argv: list[str] | None = None) -> dict:
    """Predict for every input; returns a summary (task, number of records, output, seconds)."""
    model, args = parse_script_args((PredictorArguments, PredictArguments), argv)
    return predict_file(model, args)


if __name__ == "__main__":
    run_command(main)
