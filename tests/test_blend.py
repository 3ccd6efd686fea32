import math

import numpy as np
import pytest

from sirst_synth.blend import blend, displace, resize_patch
from sirst_synth.errors import UsageError


def test_blend_hand_computed_pixels():
    image = np.array([[100, 200], [0, 255]], np.uint8)
    noise = np.array([[0, 255], [255, 0]], np.uint8)
    # 0.9*100 = 90; 25.5 + 180 = 205.5 -> 206; 25.5 -> 26; 229.5 -> 230 (round half up)
    assert blend(image, noise, 0.1).tolist() == [[90, 206], [26, 230]]


def test_blend_extremes_are_image_and_noise():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (7, 5), dtype=np.uint8)
    noise = rng.integers(0, 256, (7, 5), dtype=np.uint8)
    assert np.array_equal(blend(image, noise, 0.0), image)
    assert np.array_equal(blend(image, noise, 1.0), noise)
    assert blend(image, noise, 0.5).dtype == np.uint8


def test_displace_resizes_patch_to_image_size():
    image = np.full((6, 9), 100, np.uint8)
    patch = np.full((2, 3), 200, np.uint8)
    assert resize_patch(patch, (6, 9)).shape == (6, 9)
    # constant patch stays constant under bilinear resize: 0.1*200 + 0.9*100 = 110
    assert np.all(displace(image, patch, 0.1) == 110)


def test_the_patch_is_resized_bilinearly_not_by_nearest():
    # 1 x 2 -> 1 x 4 at pixel centres: x = 0.25, 0.75 of the way -> 0, 25, 75, 100
    # (nearest would give 0, 0, 100, 100)
    patch = np.array([[0, 100]], np.uint8)
    assert resize_patch(patch, (1, 4)).tolist() == [[0, 25, 75, 100]]
    image = np.zeros((1, 4), np.uint8)
    assert displace(image, patch, 1.0).tolist() == [[0, 25, 75, 100]]


@pytest.mark.parametrize("alpha", [-0.1, 1.01, math.nan, math.inf])
def test_bad_alpha_is_refused_once_by_the_recipe(alpha):
    """The recipe checks alpha when it is built; blend() trusts it (no check per call)."""
    from sirst_synth.recipe import SynthRecipe

    with pytest.raises(
        UsageError, match=r"--alpha \(recipe key 'alpha'\) must be a number in \[0, 1\]"
    ):
        SynthRecipe(alpha=alpha)
