"""Strict JSON reading that every loader shares (tables, JSONL, annotation-tool exports): what the `datasets` loader
would mangle or fail on obscurely is an error naming the source."""

from __future__ import annotations

import json

from utils.core.errors import DataError


def unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object whose keys are unique (`json` keeps the last of two silently; `pyarrow` fails obscurely)."""
    record = dict(pairs)
    if len(record) < len(pairs):
        seen = [key for key, _ in pairs]
        raise ValueError(f"the key {next(k for k in seen if seen.count(k) > 1)!r} appears twice in one object")
    return record


def int64(text: str) -> int:
    """A JSON integer that fits a 64-bit column (a longer one would silently become an approximate float)."""
    value = int(text)
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"the integer {text[:24]}... does not fit in 64 bits; write it as a string")
    return value


def parse_json(text: str, source: str) -> object:
    """`json.loads`, refusing what the `datasets` loader would mangle or fail on obscurely (duplicate keys, huge
    integers, lone UTF-16 surrogates, deep nesting); every failure names the source."""
    try:
        value = json.loads(text, object_pairs_hook=unique_keys, parse_int=int64)
        if "\\u" in text:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    except json.JSONDecodeError as err:
        raise DataError(
            f"not valid JSON ({err.msg} at line {err.lineno} column {err.colno}).", source=source
        ) from None
    except UnicodeEncodeError as err:
        raise DataError(
            f"the escape {err.object[err.start]!a} is half of a UTF-16 surrogate pair (a cut "
            "emoji?), which is not text; remove it or add its other half.",
            source=source,
        ) from None
    except (ValueError, RecursionError) as err:
        raise DataError(f"not usable JSON ({err}).", source=source) from None
    return value
