"""The tool-neutral shape of an annotated (or pre-annotated) text, and the checks every tool's spans get."""

from __future__ import annotations

from dataclasses import dataclass

from utils.core.errors import DataError

#: --data_format values of annotation-tool exports (utils/core/annotations/loading.py reads them).
ANNOTATION_FORMATS = ("label-studio", "doccano", "brat")


@dataclass(frozen=True)
class Span:
    """A labelled character span of a text, `text[start:end]`; `score` is the model's for a pre-annotation."""

    start: int
    end: int
    label: str
    score: float | None = None

    def describe(self, text: str) -> str:
        """How an error or log line names the span: offsets, label and the characters it covers."""
        return f"span [{self.start}, {self.end}) {self.label} {text[max(self.start, 0) : max(self.end, 0)]!r}"


@dataclass(frozen=True)
class Choice:
    """A label chosen for a whole text (classification); `score` is the model's for a pre-annotation."""

    label: str
    score: float | None = None


@dataclass(frozen=True)
class AnnotatedText:
    """One record of an annotation file: the text, its spans (NER) and choices (classification), where it came from
    (`location`: file and record or line, for error messages) and its document (brat: the file).

    `uncertainty` and `score` are set on pre-annotations the model wrote (predict.py), None on human annotations."""

    text: str
    spans: tuple[Span, ...] = ()
    choices: tuple[Choice, ...] = ()
    location: str = ""
    document: str = ""
    score: float | None = None
    uncertainty: float | None = None


def make_span(
    start: object,
    end: object,
    label: object,
    text: str,
    location: str,
    quoted: str | None = None,
    score: float | None = None,
) -> Span:
    """A span read from a file, checked: integer offsets inside the text, start before end, a label, and (where the
    tool writes it) the quoted text equal to the text between the offsets."""
    if isinstance(start, bool) or isinstance(end, bool) or not isinstance(start, int) or not isinstance(end, int):
        raise DataError(
            f"span [{start!r}, {end!r}) {label!r}: offsets must be integers (character positions); fix "
            "the span in the tool and export again.",
            source=location,
        )
    if not isinstance(label, str) or not label.strip():
        raise DataError(
            f"span [{start}, {end}): the label {label!r} must be a non-empty name; label the span.", source=location
        )
    label = label.strip()
    if not 0 <= start < end <= len(text):
        raise DataError(
            f"span [{start}, {end}) {label} is outside the text (length {len(text)}) or empty; the "
            "offsets must satisfy 0 <= start < end <= length. Fix or delete the span in the tool and "
            "export again.",
            source=location,
        )
    if quoted is not None and text[start:end] != quoted:
        raise DataError(
            f"span [{start}, {end}) {label}: the export quotes {quoted!r} but the text there is "
            f"{text[start:end]!r}; the offsets do not match the text (were they counted in UTF-16 units "
            "or bytes, or was the text edited after annotation?). Fix the offsets or re-export.",
            source=location,
        )
    return Span(start, end, label, score)


def make_choice(label: object, location: str, score: float | None = None) -> Choice:
    """A chosen label read from a file, checked to be a non-empty name."""
    if not isinstance(label, str) or not label.strip():
        raise DataError(
            f"the choice {label!r} must be a non-empty label name; fix it in the tool and export again.",
            source=location,
        )
    return Choice(label.strip(), score)


def code_point_offsets(
    start: object, end: object, text: str, quoted: str | None, converted: list[str] | None = None, location: str = ""
) -> tuple[object, object]:
    """A span's offsets in characters (code points, as Python counts). Label Studio counts offsets in UTF-16 code
    units, as JavaScript does, so every character outside the Basic Multilingual Plane (an emoji, many CJK
    extension characters) before a span shifts it by one: when the text at the offsets differs from the text the
    export quotes, and reading the offsets as UTF-16 units gives exactly the quoted text, they are converted (and
    recorded in `converted`). Anything else is returned unchanged, for `make_span` to check."""
    if (
        quoted is None
        or isinstance(start, bool)
        or isinstance(end, bool)
        or not isinstance(start, int)
        or not isinstance(end, int)
        or not 0 <= start < end
    ):
        return start, end
    if end <= len(text) and text[start:end] == quoted:
        return start, end
    units = text.encode("utf-16-le")
    if 2 * end > len(units):
        return start, end
    try:
        before, piece = units[: 2 * start].decode("utf-16-le"), units[2 * start : 2 * end].decode("utf-16-le")
    except UnicodeDecodeError:  # an offset inside a surrogate pair: not UTF-16 offsets either
        return start, end
    if piece != quoted:
        return start, end
    if converted is not None:
        converted.append(location)
    return len(before), len(before) + len(piece)
