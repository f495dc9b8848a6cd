"""Every golden number (tests/golden.py) is reproduced on the CPU: bit for bit on the
machine that wrote the file, within ``golden.CROSS_MACHINE_TOLERANCE`` elsewhere."""

import jax
import numpy as np
import pytest

from tests import golden

_STORED = np.load(golden.PATH)
_SAME_MACHINE = (golden.MACHINE_KEY in _STORED.files
                 and str(_STORED[golden.MACHINE_KEY]) == golden.machine())

pytestmark = pytest.mark.skipif(
    jax.default_backend() != "cpu",
    reason="the golden numbers were computed by XLA:CPU; other backends round differently")


def _params():
  for name in golden.CASES:
    marks = () if name in golden.FAST else (pytest.mark.slow,)
    yield pytest.param(name, id=name, marks=marks)


@pytest.mark.parametrize("name", list(_params()))
def test_bit_identical(name):
  got = golden.compute(name)
  stored = {k for k in _STORED.files if k.startswith(f"{name}:")}
  assert set(got) == stored, f"arrays added {set(got) - stored}, missing {stored - set(got)}"
  for key, value in got.items():
    expected = golden._bits_if_exotic(_STORED[key])
    assert value.dtype == expected.dtype and value.shape == expected.shape, key
    if _SAME_MACHINE or value.dtype.kind != "f":
      np.testing.assert_array_equal(value, expected, err_msg=key, strict=True)
      assert value.tobytes() == expected.tobytes(), f"{key}: same values, other bits (-0.0?)"
    else:  # another vector unit may round differently (tests/golden.py)
      scale = np.max(np.abs(expected.astype(np.float64))) or 1.0
      np.testing.assert_allclose(
          value, expected, rtol=0, atol=golden.CROSS_MACHINE_TOLERANCE * scale,
          err_msg=f"{key} (another machine than the file's: {golden.machine()})")
