"""experiments/normalization/study.py's measures: the brightness shift and the bootstrap."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from conftest import REPO

SPEC = importlib.util.spec_from_file_location(
    "normalization_study", REPO / "experiments" / "normalization" / "study.py")
study = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(study)


def test_brightness_shift_is_the_mean_difference_per_channel(rng):
    original = rng.integers(20, 230, size=(8, 6, 3), dtype=np.uint8)
    darker = (original.astype(np.int16) + np.array([-10, 0, 7])).astype(np.uint8)
    np.testing.assert_allclose(study.brightness_shift(original, darker), [-10.0, 0.0, 7.0])
    assert study.brightness_shift(original, original).tolist() == [0.0, 0.0, 0.0]


def test_bootstrap_interval_is_the_mean_within_percentiles_of_resampled_means(rng):
    assert study.bootstrap_interval(np.full(20, 1.5), resamples=100) == (1.5, 1.5, 1.5)
    values = rng.normal(2.0, 1.0, size=400)
    mean, low, high = study.bootstrap_interval(values, resamples=2000, seed=3)
    assert mean == pytest.approx(values.mean()) and low < mean < high
    # About the normal interval, mean ± 1.96 standard errors.
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    assert high - low == pytest.approx(2 * half, rel=0.1)
    assert study.bootstrap_interval(values, resamples=2000, seed=3) == (mean, low, high)
    assert study.bootstrap_interval(values, resamples=2000, seed=4) != (mean, low, high)
