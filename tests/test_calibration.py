"""The maths of calibration (utils/core/calibration.py): temperature, ECE, Brier, risk-coverage, split conformal,
per-label thresholds; exact small cases and properties."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from utils.core.calibration import (
    MAPS,
    Calibration,
    CalibrationUnits,
    bin_index,
    binary_logits,
    brier_score,
    check_min_confidence,
    choose_map,
    confidences,
    conformal_threshold,
    cross_validated_ece,
    expected_calibration_error,
    fit_map,
    fit_temperature,
    fit_temperature_and_bias,
    isotonic_value,
    label_sets,
    label_thresholds,
    micro_f1,
    negative_log_likelihood,
    risk_coverage,
    scaled_probability,
    softmax,
)
from utils.core.errors import ConfigError


def calibration_keys(kept: str = "accuracy") -> set[str]:
    """The calibration stage's keys (utils/training/calibration.py): the chosen map, each candidate's cross-validated
    ECE (temperature+bias for NER's binary entity units, whose `kept` metric is precision), the temperature, ECE/Brier
    before and after on validation and test, and the test's risk-coverage table (also used by the end-to-end tests'
    key sets; `calibration_bias` comes with the temperature+bias map: `bias_key`)."""
    measures = ("calibration_units", "ece_before_calibration", "ece", "brier_before_calibration", "brier")
    binary = ("temperature_bias", "isotonic") if kept == "precision" else ()
    maps = ("identity", "temperature", *binary)
    keys = {"calibration_temperature", "calibration_map"} | {f"eval_cross_validated_ece_{name}" for name in maps}
    keys |= {f"{prefix}_{name}" for prefix in ("eval", "predict") for name in measures}
    return keys | {f"predict_{name}_at_coverage_{c}" for name in (kept, "min_confidence") for c in (100, 95, 90, 80)}


def bias_key(results: dict) -> set[str]:
    """`calibration_bias`, present exactly when the temperature+bias map was chosen, and
    `calibration_isotonic_points` exactly when the isotonic map was."""
    return {"temperature+bias": {"calibration_bias"}, "isotonic": {"calibration_isotonic_points"}}.get(
        results["calibration_map"], set()
    )


def units_of(logits, gold) -> CalibrationUnits:
    logits = np.asarray(logits, dtype=np.float64)
    return CalibrationUnits(logits, logits.argmax(axis=1), np.asarray(gold))


# ---------------------------------------------------------------- ECE, Brier, bins


def test_bins_are_right_closed_and_zero_goes_first():
    assert bin_index(np.array([0.0, 1 / 15, 1 / 15 + 1e-9, 0.5, 1.0])).tolist() == [0, 0, 1, 7, 14]


def test_expected_calibration_error_by_hand():
    # bin of 0.9 (two units, one right): |0.5 - 0.9| * 2/4; bin of 0.6 (two right): |1 - 0.6| * 2/4
    confidence = np.array([0.9, 0.9, 0.6, 0.6])
    correct = np.array([1.0, 0.0, 1.0, 1.0])
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    assert brier_score(confidence, correct) == pytest.approx((0.01 + 0.81 + 0.16 + 0.16) / 4)
    assert expected_calibration_error(np.zeros(0), np.zeros(0)) == 0.0


@given(
    st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=60),
)
def test_ece_is_bounded_and_zero_for_perfect_bins(rows):
    confidence = np.array([c for c, _ in rows])
    correct = np.array([float(r) for _, r in rows])
    ece = expected_calibration_error(confidence, correct)
    assert 0 <= ece <= 1 + 1e-12
    # every unit sure and right, or every unit at 0 and wrong: calibrated exactly
    assert expected_calibration_error(np.ones(len(rows)), np.ones(len(rows))) == 0.0
    assert expected_calibration_error(np.zeros(len(rows)), np.zeros(len(rows))) == 0.0
    assert 0 <= brier_score(confidence, correct) <= 1


# ---------------------------------------------------------------- temperature


def test_temperature_recovers_a_known_scale():
    """Labels drawn from softmax(z); the model's logits are 3 z (over-confident): the fit is close to 3."""
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, size=(4000, 3))
    gold = draw_labels(rng, softmax(true_logits))
    temperature = fit_temperature(units_of(3 * true_logits, gold))
    assert temperature == pytest.approx(3.0, rel=0.08)
    before, right = confidences(units_of(3 * true_logits, gold))
    after, _ = confidences(units_of(3 * true_logits, gold), temperature)
    assert expected_calibration_error(after, right) < expected_calibration_error(before, right)


@settings(max_examples=40)
@given(
    # no subnormal logits: dividing one by a temperature may round it to 0 and tie it with another
    arrays(
        np.float64, st.tuples(st.integers(2, 30), st.integers(2, 5)), elements=st.floats(-8, 8, allow_subnormal=False)
    ),
    st.data(),
)
def test_temperature_minimises_nll_and_keeps_the_argmax(logits, data):
    gold = np.array(
        data.draw(st.lists(st.integers(0, logits.shape[1] - 1), min_size=len(logits), max_size=len(logits)))
    )
    units = units_of(logits, gold)
    temperature = fit_temperature(units)
    assert 0.05 - 1e-6 <= temperature <= 20 + 1e-3
    best = negative_log_likelihood(logits, gold, temperature)
    for other in (0.05, 0.5, 1.0, 2.0, 20.0):
        assert best <= negative_log_likelihood(logits, gold, other) + 1e-6
    assert ((logits / temperature).argmax(axis=1) == logits.argmax(axis=1)).all()  # what the predictors decode


@given(st.floats(1e-4, 1 - 1e-4), st.floats(0.1, 10))
def test_binary_units_match_scaled_probabilities(p, temperature):
    """An entity's score as logits [log-odds, 0]: softmax at T is the score with its log-odds divided by T."""
    logits = binary_logits([p])
    assert softmax(logits, temperature)[0, 0] == pytest.approx(scaled_probability(p, temperature), abs=1e-9)
    assert scaled_probability(p, 1.0) == p


def test_temperature_and_bias_recover_a_known_platt_map():
    """Right with probability sigmoid(s / 2 - 1) for a score of log-odds s: the fit finds T = 2 and bias -1, and the
    scaled probabilities match the binary units' confidences."""
    rng = np.random.default_rng(1)
    log_odds = rng.normal(2, 2, size=20_000)
    right = rng.random(20_000) < 1 / (1 + np.exp(-(log_odds / 2 - 1)))
    logits = np.stack([log_odds, np.zeros_like(log_odds)], axis=1)
    units = CalibrationUnits(logits, np.zeros(20_000, dtype=int), (~right).astype(int), classes=False)
    temperature, bias = fit_temperature_and_bias(units)
    assert temperature == pytest.approx(2.0, rel=0.1) and bias == pytest.approx(-1.0, abs=0.1)
    confidence, _ = confidences(units, temperature, bias)
    probability = 1 / (1 + np.exp(-log_odds[:5]))
    assert confidence[:5] == pytest.approx([scaled_probability(p, temperature, bias) for p in probability], abs=1e-6)


# ---------------------------------------------------------------- choosing the map


def platt_units(rng, count: int, scale: float, shift: float) -> CalibrationUnits:
    """Binary units whose score of log-odds s is right with probability sigmoid(s / scale + shift)."""
    log_odds = rng.normal(2, 2, size=count)
    right = rng.random(count) < 1 / (1 + np.exp(-(log_odds / scale + shift)))
    logits = np.stack([log_odds, np.zeros_like(log_odds)], axis=1)
    return CalibrationUnits(logits, np.zeros(count, dtype=int), (~right).astype(int), classes=False)


def test_a_map_that_pays_on_held_out_units_is_chosen():
    """Over-confident texts get a temperature; entities whose scores are both too sharp and too high get the bias
    too; each choice has the lowest cross-validated ECE of the candidates, and is then fitted on all units."""
    rng = np.random.default_rng(2)
    true_logits = rng.normal(0, 2, size=(3000, 3))
    texts = units_of(3 * true_logits, draw_labels(rng, softmax(true_logits)))
    chosen, figures = choose_map(texts, bias=True)  # multi-class units: no bias candidate
    assert chosen == "temperature" and set(figures) == {"identity", "temperature"}
    assert figures["temperature"] < figures["identity"]
    entities = platt_units(rng, 5000, scale=2.0, shift=-1.0)
    chosen, figures = choose_map(entities, bias=True)
    assert set(figures) == set(MAPS) and figures[chosen] == min(figures.values())
    assert figures["temperature+bias"] < figures["temperature"] < figures["identity"]
    assert fit_map(entities, "temperature+bias") == (*fit_temperature_and_bias(entities), None)
    assert choose_map(entities, bias=False)[0] == "temperature"


def step_units(rng, count: int) -> CalibrationUnits:
    """Binary units whose score is right 30% of the time below 0.7 and 97% above: no sigmoid of it fits."""
    score = rng.uniform(0.35, 1.0, size=count)
    right = rng.random(count) < np.where(score < 0.7, 0.3, 0.97)
    return CalibrationUnits(binary_logits(score), np.zeros(count, dtype=int), (~right).astype(int), classes=False)


def test_isotonic_is_chosen_where_no_sigmoid_fits_and_applied_alike_everywhere():
    """A step-shaped score: isotonic regression has the lowest held-out ECE; its points are non-decreasing, kept in
    the saved config, and give each unit the same calibrated score through `confidences` (the stage's measures) and
    `scaled_probability` (what predict.py, serve.py and the ONNX backends write)."""
    rng = np.random.default_rng(5)
    units = step_units(rng, 4000)
    chosen, figures = choose_map(units, bias=True)
    assert chosen == "isotonic" and figures["isotonic"] < figures["temperature+bias"]
    fitted = fit_map(units, chosen)
    assert fitted.temperature == 1.0 and fitted.bias is None
    xs, ys = fitted.points
    assert xs == sorted(xs) and ys == sorted(ys) and ys[0] >= 0.0 and ys[-1] <= 1.0
    low, high = isotonic_value(np.array([0.5, 0.9]), fitted.points)
    assert low == pytest.approx(0.3, abs=0.06) and high == pytest.approx(0.97, abs=0.03)
    saved = Calibration(method="temperature", unit="entity", chosen=chosen, isotonic=fitted.points)
    assert Calibration.from_config(SimpleNamespace(calibration=saved.to_dict())) == saved and saved.changes_scores
    after, _ = confidences(units, *fitted)
    raw, _ = confidences(units)
    assert after[:50] == pytest.approx([scaled_probability(p, 1.0, None, fitted.points) for p in raw[:50]], abs=1e-12)
    assert expected_calibration_error(after, 1 - units.gold) < 0.02 < expected_calibration_error(raw, 1 - units.gold)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(40, 400))
def test_the_identity_is_kept_when_no_fit_lowers_held_out_ece(seed, count):
    """Scores that are already calibrated, on few units (the README sample's 143 entities): a fitted map is kept
    only when its held-out ECE is below the scores' own, and the identity map changes no confidence."""
    units = platt_units(np.random.default_rng(seed), count, scale=1.0, shift=0.0)
    chosen, figures = choose_map(units, bias=True)
    assert figures["identity"] == pytest.approx(expected_calibration_error(*confidences(units)))
    assert figures[chosen] <= figures["identity"]
    if chosen == "identity":
        assert fit_map(units, chosen) == (1.0, None, None) and not Calibration().changes_scores
    assert cross_validated_ece(units, "temperature") == cross_validated_ece(units, "temperature")  # seeded folds


def test_fitted_maps_need_as_many_units_as_folds():
    units = platt_units(np.random.default_rng(3), 3, scale=1.0, shift=0.0)
    assert choose_map(units, bias=True)[0] == "identity"
    assert math.isinf(cross_validated_ece(units, "temperature+bias"))


# ---------------------------------------------------------------- risk-coverage


def test_risk_coverage_keeps_the_most_confident():
    confidence = np.array([0.99, 0.6, 0.95, 0.7, 0.9, 0.8, 0.85, 0.75, 0.65, 0.55])
    correct = np.array([1, 0, 1, 0, 1, 1, 1, 1, 0, 0], dtype=float)
    rows = risk_coverage(confidence, correct, (1.0, 0.5, 0.2))
    assert [row["kept"] for row in rows] == [10, 5, 2]
    assert [row["accuracy"] for row in rows] == [0.6, 1.0, 1.0]
    assert [row["min_confidence"] for row in rows] == [0.55, 0.8, 0.95]


@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=50), st.floats(0.01, 1))
def test_risk_coverage_keeps_at_least_the_coverage(rows, coverage):
    confidence = np.array([c for c, _ in rows])
    correct = np.array([float(r) for _, r in rows])
    (row,) = risk_coverage(confidence, correct, (coverage,))
    assert row["kept"] >= coverage * len(rows) - 1e-9 and row["kept"] <= len(rows)
    # what --min_confidence at that value keeps is at least as many units
    assert (confidence >= row["min_confidence"]).sum() >= row["kept"]


# ---------------------------------------------------------------- conformal sets


def test_conformal_threshold_is_the_finite_sample_quantile():
    # 9 units, alpha 0.2: rank ceil(10 * 0.8) = 8 of the sorted scores 1 - p(gold)
    probabilities = np.array([[p, 1 - p] for p in (0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.55, 0.3, 0.2)])
    units = units_of(np.log(probabilities), np.zeros(9, dtype=int))
    assert conformal_threshold(units, 1.0, 0.2) == pytest.approx(0.7)
    assert conformal_threshold(units, 1.0, 0.05) == 1.0  # rank 10 of 9: every label
    with pytest.raises(ValueError):
        conformal_threshold(units, 1.0, 1.0)


def draw_labels(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One label per row drawn from its probabilities."""
    return (rng.random((len(probabilities), 1)) > probabilities.cumsum(axis=1)).sum(axis=1)


@settings(max_examples=20)
@given(st.integers(0, 10_000), st.sampled_from([0.05, 0.1, 0.2]))
def test_conformal_sets_cover_exchangeable_data(seed, alpha):
    """Validation and test drawn alike: the test coverage is at least 1 - alpha up to sampling noise (the
    guarantee is on average over validation draws; 5000 + 5000 units: one standard deviation is under 0.009, the
    margin 0.04)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, size=(10_000, 4))
    gold = draw_labels(rng, softmax(logits))
    threshold = conformal_threshold(units_of(logits[:5000], gold[:5000]), 1.0, alpha)
    members = label_sets(softmax(logits[5000:]), threshold)
    assert members[np.arange(5000), gold[5000:]].mean() >= 1 - alpha - 0.04
    assert members.any(axis=1).all()


# ---------------------------------------------------------------- per-label thresholds


def test_label_thresholds_by_hand():
    # label 0 is on for the rows scoring 0.3 and 0.4 (under 0.5); label 1 is right at 0.5
    probabilities = np.array([[0.4, 0.9], [0.3, 0.8], [0.1, 0.2], [0.05, 0.1]])
    gold = np.array([[1, 1], [1, 1], [0, 0], [0, 0]], dtype=bool)
    cuts = label_thresholds(probabilities, gold)
    assert micro_f1(probabilities > 0.5, gold) == pytest.approx(2 * 2 / (2 + 4))
    assert micro_f1(probabilities > cuts, gold) == 1.0
    assert cuts[0] == pytest.approx(0.2)


@settings(max_examples=40)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 25), st.integers(1, 4)), elements=st.floats(0, 1)),
    st.data(),
)
def test_label_thresholds_never_score_below_the_start(probabilities, data):
    gold = data.draw(arrays(np.bool_, probabilities.shape))
    cuts = label_thresholds(probabilities, gold)
    assert micro_f1(probabilities > cuts, gold) >= micro_f1(probabilities > 0.5, gold) - 1e-12


# ---------------------------------------------------------------- the stored record, options


def test_calibration_record_round_trips_through_a_config():
    class Config:
        calibration: ClassVar[dict] = {
            "method": "temperature",
            "unit": "text",
            "temperature": 1.5,
            "thresholds": {"a": 0.3},
        }

    fitted = Calibration.from_config(Config())
    assert fitted == Calibration("temperature", "text", 1.5, thresholds={"a": 0.3})
    assert fitted.to_dict() == Config.calibration
    assert Calibration.from_config(object()) == Calibration()


def test_min_confidence_must_be_a_probability():
    check_min_confidence(None)
    check_min_confidence(0.9)
    for bad in (1.5, -0.1, math.nan):
        with pytest.raises(ConfigError, match=r"--min_confidence .*: must be a probability in \[0, 1\]"):
            check_min_confidence(bad)
