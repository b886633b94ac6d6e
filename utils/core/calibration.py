"""Scores a user can act on: the maths of calibration, shared by every task (docs/calibration.md).

A task hands its validation and test predictions over as `CalibrationUnits`: one row of logits per unit (a text, a
predicted entity, a text's label), the class whose probability is the unit's confidence, and the class that is right.
A binary unit (is this entity right?) is the two logits `[log-odds, 0]`, so one temperature, one expected calibration
error and one risk-coverage table serve texts and entities alike. What is fitted (`Calibration`) is saved in the
model's config.json under `CALIBRATION_KEY`, so every backend reading that config applies the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

from utils.core.errors import ConfigError

#: The config.json key of a fitted `Calibration`.
CALIBRATION_KEY = "calibration"
#: Equal-width confidence bins of the expected calibration error (the usual 15 of Guo et al., 2017).
ECE_BINS = 15
#: The coverages of the risk-coverage table.
COVERAGES = (1.0, 0.95, 0.9, 0.8)
#: A probability's log-odds are taken of it clipped to [EPSILON, 1 - EPSILON] (a rounded 1.0 is not infinitely sure).
EPSILON = 1e-6
#: Temperatures searched (their inverse is the variable: the NLL is convex in it).
TEMPERATURE_RANGE = (0.05, 20.0)
METHODS = ("temperature", "none")
#: The maps `--calibration temperature` chooses among, simplest first (a tie keeps the simpler one); the last two are
#: for binary units only (NER entities): Platt scaling, and isotonic regression (a monotone piecewise-linear map of the
#: score, Zadrozny and Elkan 2002), which fits a score whose miscalibration is not sigmoid-shaped.
MAPS = ("identity", "temperature", "temperature+bias", "isotonic")
BINARY_MAPS = ("temperature+bias", "isotonic")
#: Folds of the cross-validation on the validation units that chooses the map.
SELECTION_FOLDS = 5
ABSTAIN_MODES = ("withhold", "flag")
#: The result key where a task's `abstain` counts the units of a result below --min_confidence (withheld or flagged).
BELOW_MIN_CONFIDENCE = "below_min_confidence"


@dataclass(frozen=True)
class CalibrationUnits:
    """A split's units: `logits` (n, k), `predicted` (n,) the class whose probability is the confidence, `gold` (n,)
    the right class. `classes`: the k columns are the task's labels (label sets apply), not right/wrong."""

    logits: np.ndarray
    predicted: np.ndarray
    gold: np.ndarray
    classes: bool = True

    def __len__(self) -> int:
        return len(self.gold)


@dataclass(frozen=True)
class SplitScores:
    """A split's predictions for calibration: its units, and (multi-label) every text's logit per label with the
    gold 0/1 matrix, for choosing per-label thresholds."""

    units: CalibrationUnits
    label_logits: np.ndarray | None = None
    label_gold: np.ndarray | None = None


@dataclass(frozen=True)
class Calibration:
    """What was fitted on validation and is applied at prediction time (config.json's `calibration`)."""

    method: str = "none"  # "temperature" or "none"
    unit: str = ""  # what one confidence is about: "text", "entity", "label"
    temperature: float = 1.0
    bias: float | None = None  # binary units (NER entities): added to the scaled log-odds (Platt scaling)
    conformal_alpha: float | None = None
    conformal_threshold: float | None = None  # a label is in the set when 1 - its probability is at most this
    thresholds: dict[str, float] | None = field(default=None)  # multi-label: per-label cut-offs (`--threshold auto`)
    chosen: str | None = None  # which of MAPS the cross-validation chose
    isotonic: list[list[float]] | None = None  # the isotonic map: [scores, calibrated scores], interpolated between

    @property
    def changes_scores(self) -> bool:
        """Whether the fitted map moves any score (the identity does not)."""
        return self.temperature != 1.0 or bool(self.bias) or self.isotonic is not None

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_config(cls, config: Any) -> Calibration:
        """A saved model's calibration (none when its config holds none)."""
        stored = getattr(config, CALIBRATION_KEY, None)
        if not isinstance(stored, Mapping):
            return cls()
        known = {name: stored[name] for name in cls.__dataclass_fields__ if name in stored}
        return cls(**known)


def binary_logits(probabilities: Sequence[float] | np.ndarray) -> np.ndarray:
    """Probabilities of being right as binary units' logits `[log-odds, 0]` (temperature 1 gives them back)."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, 1 - EPSILON)
    return np.stack([np.log(p) - np.log1p(-p), np.zeros_like(p)], axis=1)


class FittedMap(NamedTuple):
    """One of MAPS fitted: a temperature, a bias added to the scaled log-odds (binary units), or the isotonic map's
    points (binary units: a score's calibrated value is interpolated between them, clipped at the ends)."""

    temperature: float = 1.0
    bias: float | None = None
    points: list[list[float]] | None = None


def isotonic_value(probability: float | np.ndarray, points: Sequence[Sequence[float]]) -> np.ndarray:
    """The isotonic map at `probability`: linear between its points, its end values beyond them."""
    return np.interp(probability, points[0], points[1])


def scaled_probability(
    probability: float, temperature: float, bias: float | None = None, points: Sequence[Sequence[float]] | None = None
) -> float:
    """A probability of being right, its log-odds divided by `temperature` (1: unchanged, above 1: less sure), plus
    `bias`; with the isotonic map's `points`, that map's value instead."""
    if points is not None:
        return float(isotonic_value(float(probability), points))
    if temperature == 1.0 and not bias:
        return float(probability)
    p = min(max(float(probability), EPSILON), 1 - EPSILON)
    return 1.0 / (1.0 + math.exp(-((math.log(p) - math.log1p(-p)) / temperature + (bias or 0.0))))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of `logits / temperature`, in float64."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled = scaled - scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


def negative_log_likelihood(logits: np.ndarray, gold: np.ndarray, temperature: float) -> float:
    """Mean NLL of the right classes under `logits / temperature`."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    top = scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(scaled - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_norm - scaled[np.arange(len(gold)), gold]))


def fit_temperature(units: CalibrationUnits) -> float:
    """The temperature minimising the validation NLL (bounded search over its inverse; 1.0 without units)."""
    if len(units) == 0:
        return 1.0
    from scipy.optimize import minimize_scalar

    low, high = TEMPERATURE_RANGE

    def loss(temperature: float) -> float:
        return negative_log_likelihood(units.logits, units.gold, temperature)

    found = minimize_scalar(
        lambda inverse: loss(1.0 / inverse), bounds=(1.0 / high, 1.0 / low), method="bounded", options={"xatol": 1e-6}
    )
    # the bounded search never evaluates the bounds themselves: an optimum there is taken exactly
    return float(min((1.0 / found.x, low, high), key=loss))


def fit_temperature_and_bias(units: CalibrationUnits) -> tuple[float, float]:
    """Binary units (`[log-odds, 0]`): the temperature and bias minimising the validation NLL of
    sigmoid(log-odds / T + bias) (Platt scaling; monotone, so no unit changes side of another)."""
    from scipy.optimize import minimize

    log_odds = units.logits[:, 0] - units.logits[:, 1]
    right = (units.gold == 0).astype(np.float64)

    def loss(parameters: np.ndarray) -> float:
        z = parameters[0] * log_odds + parameters[1]
        return float(np.mean(np.logaddexp(0, -z) * right + np.logaddexp(0, z) * (1 - right)))

    low, high = TEMPERATURE_RANGE
    found = minimize(loss, np.array([1.0, 0.0]), method="L-BFGS-B", bounds=[(1 / high, 1 / low), (-20, 20)])
    return float(1.0 / found.x[0]), float(found.x[1])


def fit_isotonic(units: CalibrationUnits) -> list[list[float]]:
    """Binary units: the non-decreasing map from score to frequency of being right that fits the validation units
    best in squared error (pool-adjacent-violators, scikit-learn's), as its points rounded to 6 decimals."""
    from sklearn.isotonic import IsotonicRegression

    score, right = confidences(units)
    fitted = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(score, right)
    return [np.round(fitted.X_thresholds_, 6).tolist(), np.round(fitted.y_thresholds_, 6).tolist()]


def fit_map(units: CalibrationUnits, name: str) -> FittedMap:
    """Map `name` (one of MAPS) fitted on `units`: temperature and bias by NLL, the isotonic map by squared error."""
    if name == "identity" or len(units) == 0:
        return FittedMap()
    if name == "temperature":
        return FittedMap(fit_temperature(units))
    if name == "isotonic":
        return FittedMap(points=fit_isotonic(units))
    return FittedMap(*fit_temperature_and_bias(units))


def units_subset(units: CalibrationUnits, chosen: np.ndarray) -> CalibrationUnits:
    return CalibrationUnits(units.logits[chosen], units.predicted[chosen], units.gold[chosen], units.classes)


def cross_validated_ece(units: CalibrationUnits, name: str, folds: int = SELECTION_FOLDS, seed: int = 0) -> float:
    """The ECE of every unit's confidence under map `name` fitted on the other folds (seeded random folds), so a map
    is judged on units it was not fitted on. The identity map fits nothing: its plain ECE."""
    if name == "identity" or len(units) < folds:
        return expected_calibration_error(*confidences(units)) if name == "identity" else math.inf
    fold = np.random.default_rng(seed).permutation(len(units)) % folds
    confidence, right = np.zeros(len(units)), np.zeros(len(units))
    for held_out in range(folds):
        held = fold == held_out
        fitted = fit_map(units_subset(units, ~held), name)
        confidence[held], right[held] = confidences(units_subset(units, held), *fitted)
    return expected_calibration_error(confidence, right)


def choose_map(units: CalibrationUnits, bias: bool) -> tuple[str, dict[str, float]]:
    """The map of MAPS with the lowest cross-validated ECE (`bias`: the BINARY_MAPS are candidates for binary units),
    and every candidate's figure. A fit that does not lower the ECE on held-out units is not kept: on few units a
    fit can raise it."""
    names = [name for name in MAPS if name not in BINARY_MAPS or (bias and not units.classes)]
    figures = {name: cross_validated_ece(units, name) for name in names}
    return min(names, key=lambda name: (figures[name], names.index(name))), figures


def confidences(
    units: CalibrationUnits,
    temperature: float = 1.0,
    bias: float | None = None,
    points: Sequence[Sequence[float]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each unit's confidence (its predicted class's probability) and whether it is right (1.0 or 0.0); `bias`
    (binary units) is added to the first logit after scaling; `points` (binary units): the isotonic map of the
    unscaled confidence."""
    if len(units) == 0:
        return np.zeros(0), np.zeros(0)
    if points is not None:
        score, right = confidences(units)
        return isotonic_value(score, points), right
    logits = units.logits
    if bias:
        logits = logits.copy()
        logits[:, 0] += bias * temperature  # softmax divides by the temperature
    probabilities = softmax(logits, temperature)
    rows = np.arange(len(units))
    return probabilities[rows, units.predicted], (units.predicted == units.gold).astype(np.float64)


def bin_index(confidence: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """Equal-width bins over [0, 1]: bin b holds (b/bins, (b+1)/bins], bin 0 also holds 0."""
    return np.clip(np.ceil(np.asarray(confidence) * bins).astype(int) - 1, 0, bins - 1)


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Per bin: its range, how many units fall in it, their mean confidence and their accuracy (empty bins: 0)."""
    index = bin_index(confidence, bins)
    rows = []
    for b in range(bins):
        chosen = index == b
        count = int(chosen.sum())
        rows.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "count": count,
                "confidence": float(confidence[chosen].mean()) if count else 0.0,
                "accuracy": float(correct[chosen].mean()) if count else 0.0,
            }
        )
    return rows


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over bins of (units in the bin / units) * |accuracy - mean confidence| (0 without units)."""
    total = len(confidence)
    if total == 0:
        return 0.0
    rows = reliability(confidence, correct, bins)
    return float(sum(row["count"] / total * abs(row["accuracy"] - row["confidence"]) for row in rows))


def brier_score(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Mean squared gap between the confidence and being right (top-label Brier; 0 without units)."""
    return float(np.mean((confidence - correct) ** 2)) if len(confidence) else 0.0


def risk_coverage(
    confidence: np.ndarray, correct: np.ndarray, coverages: Sequence[float] = COVERAGES
) -> list[dict[str, float]]:
    """For each coverage c: keep the ceil(c * n) most confident units; their accuracy, and the confidence of the
    least sure one kept (the --min_confidence giving at least that coverage). Ties keep the earlier unit."""
    order = np.argsort(-np.asarray(confidence), kind="stable")
    rows = []
    for coverage in coverages:
        kept = min(len(order), math.ceil(coverage * len(order) - 1e-9))
        chosen = order[:kept]
        rows.append(
            {
                "coverage": coverage,
                "kept": kept,
                "accuracy": float(correct[chosen].mean()) if kept else 0.0,
                "min_confidence": float(confidence[chosen].min()) if kept else 1.0,
            }
        )
    return rows


def conformal_threshold(units: CalibrationUnits, temperature: float, alpha: float) -> float:
    """Split conformal: the ceil((n + 1)(1 - alpha))-th smallest score 1 - p(right label) on validation. A label is
    in a text's set when its score is at most this; on exchangeable data the set holds the right label with
    probability at least 1 - alpha. Too few units for that level: 1.0 (every label)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    n = len(units)
    rank = math.ceil((n + 1) * (1 - alpha))
    if rank > n:
        return 1.0
    probabilities = softmax(units.logits, temperature)
    scores = np.sort(1.0 - probabilities[np.arange(n), units.gold])
    return float(scores[rank - 1])


def label_sets(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """Which labels are in each row's conformal set (score 1 - p at most `threshold`); never empty: the likeliest
    label is always in (it only makes sets bigger, so the coverage guarantee holds)."""
    members = (1.0 - probabilities) <= threshold + 1e-12
    members[np.arange(len(probabilities)), probabilities.argmax(axis=1)] = True
    return members


def micro_f1(predicted: np.ndarray, gold: np.ndarray) -> float:
    """Micro-averaged F1 of 0/1 matrices (0 when nothing is predicted or gold)."""
    tp = float(np.logical_and(predicted, gold).sum())
    denominator = float(predicted.sum() + gold.sum())
    return 2 * tp / denominator if denominator else 0.0


def label_thresholds(probabilities: np.ndarray, gold: np.ndarray, start: float = 0.5, rounds: int = 3) -> np.ndarray:
    """Per-label cut-offs (a label is on when its probability is above its cut-off) maximising micro-F1 on these
    rows: coordinate ascent from `start` for every label, each label's cut-off moved only when the micro-F1 rises,
    so the result scores at least `start`'s micro-F1 on the rows it was chosen on."""
    probabilities, gold = np.asarray(probabilities, dtype=np.float64), np.asarray(gold, dtype=bool)
    thresholds = np.full(probabilities.shape[1], start, dtype=np.float64)
    for _ in range(rounds):
        changed = False
        for label in range(probabilities.shape[1]):
            on = probabilities > thresholds
            others = np.delete(np.arange(probabilities.shape[1]), label)
            tp_rest = float(np.logical_and(on[:, others], gold[:, others]).sum())
            predicted_rest, gold_total = float(on[:, others].sum()), float(gold.sum())
            best, best_f1 = thresholds[label], micro_f1(on, gold)
            for cut in candidate_cuts(probabilities[:, label]):
                mine = probabilities[:, label] > cut
                tp = tp_rest + float(np.logical_and(mine, gold[:, label]).sum())
                denominator = predicted_rest + float(mine.sum()) + gold_total
                f1 = 2 * tp / denominator if denominator else 0.0
                if f1 > best_f1 + 1e-12:
                    best, best_f1 = cut, f1
            if best != thresholds[label]:
                thresholds[label], changed = best, True
        if not changed:
            break
    return thresholds


def candidate_cuts(values: np.ndarray) -> list[float]:
    """Cut-offs between consecutive distinct values (midpoints), below the lowest and at the highest."""
    distinct = np.unique(values)
    cuts = [float(distinct[0]) / 2, *((distinct[:-1] + distinct[1:]) / 2).tolist(), float(distinct[-1])]
    return [round(cut, 6) for cut in cuts]


def is_abstained(confidence: float | None, min_confidence: float | None) -> bool:
    """Whether a unit is below --min_confidence (never without one, nor for a unit without a confidence)."""
    return min_confidence is not None and confidence is not None and confidence < min_confidence


def check_min_confidence(min_confidence: float | None) -> None:
    """--min_confidence is a probability."""
    if min_confidence is not None and not 0 <= min_confidence <= 1:
        raise ConfigError(f"--min_confidence {min_confidence}: must be a probability in [0, 1], such as 0.9.")
