"""Hypothesis fuzzing of the pure core: random shapes, dtypes, channels, masks and parameters."""

import math

import numpy as np
import pytest
from conftest import noise_prone_regions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skimage.measure import label as sk_label
from skimage.measure import regionprops

from bench.reference_metrics import reference_counts
from sirst_synth.blend import blend, displace
from sirst_synth.convert import to_binary_mask, to_gray_u8
from sirst_synth.errors import DataError, UsageError
from sirst_synth.metrics import MetricTotals, score_image
from sirst_synth.noise import ACCEPTED, scan_regions
from sirst_synth.rotate import check_window_size
from sirst_synth.synth import synthesize
from sirst_synth.targets import components

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 2**32 - 1)
shapes = st.tuples(st.integers(1, 40), st.integers(1, 40))


def _mask(rng, shape, density):
    return (rng.random(shape) < density).astype(np.uint8)


@FUZZ
@given(
    shapes,
    st.sampled_from(["uint8", "uint16", "float32", "bool", "int32"]),
    st.sampled_from([None, 1, 2, 3, 4, 5]),
    seeds,
)
def test_decode_conversion(shape, dtype, channels, seed):
    rng = np.random.default_rng(seed)
    full = shape if channels is None else (*shape, channels)
    arr = (rng.random(full) * 300).astype(dtype) if dtype != "bool" else rng.random(full) > 0.5
    try:
        gray = to_gray_u8(arr)
    except DataError as exc:
        # documented: only gray, BGR and BGRA are images; 16-bit data within 0..255 and
        # floats outside [0, 1] are ambiguous
        ambiguous = "ambiguous" in str(exc)
        assert channels in (2, 5) or (ambiguous and dtype in ("uint16", "float32"))
        return
    assert gray.shape == shape and gray.dtype == np.uint8
    try:
        m = to_binary_mask(arr)
    except DataError as exc:
        assert "levels, not two" in str(exc)  # random values: many levels, refused
        return
    assert m.shape == shape and set(np.unique(m)) <= {0, 1}
    two = (arr > arr.max() / 2).astype(arr.dtype) * arr.max() if dtype != "bool" else arr
    assert to_binary_mask(two).shape == shape


@FUZZ
@given(shapes, st.integers(1, 10), st.floats(0.01, 5000), st.floats(0.01, 300), seeds)
def test_noise_scan(shape, grid, sigma, mu, seed):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    if rng.random() < 0.5:
        img = (img // 64 * 64).astype(np.uint8)  # flat regions happen
    mask = _mask(rng, shape, 0.02)
    scan = scan_regions(img, mask, grid, sigma, mu)
    if shape[0] < grid or shape[1] < grid:
        assert scan.verdict.size == 0
        return
    assert scan.verdict.size == grid * grid
    assert np.all((scan.mean >= 0) & (scan.mean <= 255)) and np.all(scan.var >= 0)
    ok = scan.verdict == ACCEPTED
    assert np.all(
        (scan.var[ok] > 0) & (scan.var[ok] < sigma) & (scan.mean[ok] > 0) & (scan.mean[ok] < mu)
    )
    accepted = {(int(scan.rows[i]), int(scan.cols[i])) for i in np.flatnonzero(ok)}
    assert accepted == noise_prone_regions(img, mask, grid, sigma, mu)


@FUZZ
@given(shapes, shapes, st.floats(0, 1), seeds)
def test_blend_is_a_rounded_convex_combination(shape, pshape, alpha, seed):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    patch = rng.integers(0, 256, pshape, dtype=np.uint8)
    out = displace(img, patch, alpha)
    assert out.shape == shape and out.dtype == np.uint8
    noise = rng.integers(0, 256, shape, dtype=np.uint8)
    mixed = blend(img, noise, alpha)
    assert np.all(mixed >= np.minimum(img, noise)) and np.all(mixed <= np.maximum(img, noise))


@FUZZ
@given(st.one_of(st.floats(allow_nan=True), st.integers(-5, 5)))
def test_alpha_outside_unit_interval_is_refused(alpha):
    from sirst_synth.recipe import SynthRecipe

    img = np.zeros((3, 3), np.uint8)
    if math.isnan(alpha) or not 0 <= alpha <= 1:
        with pytest.raises(UsageError):
            SynthRecipe(alpha=alpha)
    else:
        assert SynthRecipe(alpha=alpha).alpha == alpha
        assert blend(img, img, alpha).shape == (3, 3)


@FUZZ
@given(shapes, st.floats(0, 0.3), st.sampled_from([1, 3, 5, 7]), st.floats(0, 1), seeds)
def test_synthesize_counts_and_ranges(shape, density, s, alpha, seed):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    mask = _mask(rng, shape, density)
    patch = rng.integers(0, 256, (max(1, shape[0] // 8), max(1, shape[1] // 8)), dtype=np.uint8)
    n = components(mask).count
    picks = tuple((t, a) for t in range(n) for a in (0, 90, 180, 270))
    if s > min(shape):
        if n:
            with pytest.raises(ValueError, match="is larger than the image"):
                synthesize(img, mask, patch, alpha, s, picks)
        return
    samples = synthesize(img, mask, patch, alpha, s, picks)
    assert len(samples) == 4 * n
    for smp in samples:
        assert smp.image.shape == shape and smp.mask.shape == shape and smp.image.dtype == np.uint8
        assert smp.mask.sum() == mask.sum()  # a rotation moves target pixels, never adds any


@FUZZ
@given(st.integers(-10, 10))
def test_window_size_rule(s):
    if s >= 1 and s % 2 == 1:
        assert check_window_size(s) == s
    else:
        with pytest.raises(ValueError, match="s must be an odd"):
            check_window_size(s)


@FUZZ
@given(shapes, st.floats(0, 0.6), seeds)
def test_components_equal_skimage(shape, density, seed):
    rng = np.random.default_rng(seed)
    mask = _mask(rng, shape, density)
    ours = components(mask)
    ref = regionprops(sk_label(mask > 0, connectivity=2))
    assert ours.count == len(ref)
    # in order: matching takes targets in this order, so the order is part of the contract
    assert ours.areas.tolist() == [int(r.area) for r in ref]
    assert [tuple(c) for c in ours.centroids.tolist()] == [
        tuple(map(float, r.centroid)) for r in ref
    ]


@pytest.mark.slow
@FUZZ
@given(shapes, st.floats(0, 0.3), st.floats(0, 0.3), seeds)
def test_metrics_equal_the_reference(shape, dp, dl, seed):
    rng = np.random.default_rng(seed)
    label = _mask(rng, shape, dl)
    pred = (
        _mask(rng, shape, dp)
        if rng.random() < 0.5
        else np.roll(label, rng.integers(-3, 4, 2), (0, 1))
    )
    s = score_image(pred, label)
    assert (s.targets, s.detected, s.fa_pixels, s.fa_pixels_dnanet) == reference_counts(pred, label)
    assert s.inter == int((pred & label).sum()) and s.union == int((pred | label).sum())
    t = MetricTotals()
    t.add(s)
    for mode in ("identity", "dnanet"):
        m = t.summary(mode)
        assert 0 <= m["IoU"] <= 1 and 0 <= m["Pd"] <= 1 and 0 <= m["Fa"] <= 1


@FUZZ
@given(
    st.tuples(st.integers(1, 120), st.integers(1, 120)),
    st.floats(0, 0.5),
    st.floats(0, 0.5),
    seeds,
    st.booleans(),
)
def test_native_and_python_paths_agree(shape, dp, dl, seed, strided):
    from sirst_synth.metrics import NATIVE

    if NATIVE is None:
        pytest.skip("the native metrics kernel is not built here")
    rng = np.random.default_rng(seed)
    label = _mask(rng, shape, dl) * rng.integers(1, 256)  # any non-zero value is target
    pred = _mask(rng, shape, dp).astype(bool)
    if strided:  # crops of larger maps: rows farther apart than their width, as the kernel walks
        h, w = shape
        label = np.pad(label.astype(np.uint8), ((1, 2), (3, 5)))[1 : 1 + h, 3 : 3 + w]
        pred = np.pad(pred, ((0, 1), (0, 9)))[:h, :w]
        assert pred.strides[0] == w + 9 and label.strides[0] == w + 8
    assert score_image(pred, label) == score_image(pred, label, native=False)


def test_native_kernel_is_built_where_a_compiler_exists():
    import shutil

    from sirst_synth.metrics import NATIVE

    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler on this machine: the Python metrics path runs")
    assert NATIVE is not None, (
        "sirst_synth/_kernel.c was not compiled at install (pip install -e .)"
    )
