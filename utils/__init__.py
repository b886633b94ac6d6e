"""Shared fine-tuning pipeline behind `run_ner.py` and `run_classification.py`."""
