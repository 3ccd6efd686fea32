"""Images whose bytes do not say what they mean are refused in one line."""

import numpy as np
import pytest

from sirst_synth.convert import to_gray_u8
from sirst_synth.errors import DataError


def test_16_bit_images():
    real = np.array([[0, 65535], [32768, 257]], np.uint16)
    assert to_gray_u8(real).tolist() == [[0, 255], [128, 1]]
    with pytest.raises(DataError, match="never exceed 255"):
        to_gray_u8(np.array([[0, 200], [17, 255]], np.uint16))  # 8-bit data in 16 bits
    assert to_gray_u8(np.zeros((2, 2), np.uint16)).sum() == 0  # black is black


def test_float_images():
    assert to_gray_u8(np.array([[0.0, 1.0], [0.5, 0.25]], np.float32)).tolist() == [
        [0, 255],
        [128, 64],
    ]
    for bad in (np.array([[280.0, 300.5]], np.float32), np.array([[np.nan, 0.5]], np.float32)):
        with pytest.raises(DataError, match="outside \\[0, 1\\]"):
            to_gray_u8(bad)
