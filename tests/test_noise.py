"""Tests of the fused counter-based noise generator (noisy_jax/_src/noise.py).

Statistical checks use fixed keys and 10^6 samples; each bound is a fixed number of
standard errors, so a failure is a real defect, not bad luck.
"""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from noisy_jax._src import noise

N = 10**6
CORRELATION_BOUND = 0.005  # 5 standard errors of a correlation over 10^6 pairs


def _draw(seed, shape=(N,), dtype=jnp.float32, **kwargs):
  return np.asarray(noise.standard_normal(jax.random.key(seed), shape, dtype, **kwargs))


def _draw_from(key, shape=(N,)):
  return np.asarray(noise.standard_normal(key, shape, jnp.float32))


def _corr(a, b):
  return np.corrcoef(np.ravel(a), np.ravel(b))[0, 1]


# NumPy reference of the documented algorithm ------------------------------------
# Its constants are copied from the publications, not read from noise.py: a changed
# constant in the module must fail here.

# M. Giles, "Approximating the erfinv function" (GPU Computing Gems Jade Edition, 2011),
# the single-precision version: erfinv(v) = v p(w), w = -log((1 - v)(1 + v)), p a
# polynomial in w - 2.5 for w < 5 and in sqrt(w) - 3 otherwise; highest degree first.
_GILES_CENTRAL = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06,
                  0.00021858087, -0.00125372503, -0.00417768164, 0.246640727, 1.50140941)
_GILES_TAIL = (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844,
               0.00573950773, -0.0076224613, 0.00943887047, 1.00167406, 2.83297682)


def _lowbias32(x):
  """C. Wellons' lowbias32 ("Prospecting for hash functions", 2018), as published."""
  x = x ^ (x >> np.uint32(16))
  x = x * np.uint32(0x7FEB352D)
  x = x ^ (x >> np.uint32(15))
  x = x * np.uint32(0x846CA68B)
  return x ^ (x >> np.uint32(16))


def _reference_bits(seed_words, index, high=None):
  """M(M(i + s0) ^ s1); a second index word j enters as s1 + j * 0x9E3779B9."""
  with np.errstate(over="ignore"):
    second = seed_words[1] if high is None else seed_words[1] + high * np.uint32(0x9E3779B9)
    return _lowbias32(_lowbias32(index + seed_words[0]) ^ second)


def _reference_uniform(bits):
  """(2m + 1 - 2^23) / 2^23 for the top 23 bits m, in float64."""
  top = (bits >> np.uint32(9)).astype(np.float64)
  return (2 * top + 1 - 2**23) / 2**23


def _giles_erfinv(v):
  v = np.asarray(v, np.float64)
  w = -np.log((1 - v) * (1 + v))
  central = w < 5.0
  s = np.where(central, w - 2.5, np.sqrt(w) - 3.0)
  p = np.polyval(_GILES_CENTRAL, s)
  p[~central] = np.polyval(_GILES_TAIL, s[~central])
  return p * v


def _reference_normal(bits):
  """The documented normal of the bits: sqrt(2) erfinv(v) with Giles' polynomials."""
  return np.sqrt(2.0) * _giles_erfinv(_reference_uniform(bits))


def test_bits_and_normals_match_numpy_reference():
  seed_words = np.asarray(jax.random.bits(jax.random.key(7), (2,), jnp.uint32))
  bits = np.asarray(noise.random_bits(jax.random.key(7), (4096,)))
  want = _reference_bits(seed_words, np.arange(4096, dtype=np.uint32))
  np.testing.assert_array_equal(bits, want)  # integer part: exact on every backend
  xi = _draw(7, (4096,))
  # The float32 normals are within 2.7e-7 (relative) of the reference on all 2^23 uniforms.
  np.testing.assert_allclose(xi, _reference_normal(want), rtol=5e-7, atol=1e-7)


def test_normals_follow_giles_over_both_tails_and_the_centre():
  # The uniform takes 2^23 values: all of both tails (w >= 5 is the 14,154 values at each
  # end, so the tail polynomial and the split at w = 5 are all covered) and every 64th
  # of the rest.
  top = np.unique(np.concatenate([np.arange(2**15), np.arange(0, 2**23, 64),
                                  np.arange(2**23 - 2**15, 2**23)])).astype(np.uint32)
  bits = top << np.uint32(9)
  z = np.asarray(jax.jit(lambda b: noise._normal_from_symmetric_uniform(
      noise._symmetric_uniform(b)))(jnp.asarray(bits)), np.float64)
  # The enumerated ends reach into the central polynomial's range: no tail uniform is left out.
  edges = _reference_uniform(np.asarray([2**15 - 1, 2**23 - 2**15], np.uint32) << np.uint32(9))
  assert np.all(-np.log((1 - edges) * (1 + edges)) < 5.0)
  want = _reference_normal(bits)
  exact = np.sqrt(2.0) * special.erfinv(_reference_uniform(bits))
  np.testing.assert_allclose(z, want, rtol=5e-7, atol=1e-7)
  # The reference is Giles' approximation (1.3e-7 from erfinv), and the library's
  # normals are within 4e-7 of the exact quantile.
  np.testing.assert_allclose(want, exact, rtol=2e-7, atol=0)
  np.testing.assert_allclose(z, exact, rtol=5e-7, atol=1e-7)


def test_extreme_bits_give_finite_symmetric_normals():
  top = np.array([0, 1, 2**22 - 1, 2**22, 2**23 - 2, 2**23 - 1], np.uint32)
  v = np.asarray(noise._symmetric_uniform(jnp.asarray(top << np.uint32(9))))
  assert np.all(np.abs(v) < 1) and np.all(v != 0)
  np.testing.assert_array_equal(v, -v[::-1])  # exactly symmetric
  z = np.asarray(jax.jit(lambda b: noise._normal_from_symmetric_uniform(
      noise._symmetric_uniform(b)))(jnp.asarray(top << np.uint32(9))))
  assert np.all(np.isfinite(z))
  np.testing.assert_array_equal(z, -z[::-1])
  np.testing.assert_allclose(z, _reference_normal(top << np.uint32(9)), rtol=1e-6, atol=1e-7)
  # the tail ends at Phi^-1(1 - 2^-24), like jax.random.normal in float32
  np.testing.assert_allclose(z[-1], stats.norm.isf(2.0**-24), rtol=1e-5)


# Distribution -------------------------------------------------------------------


def test_ks_normal_and_half_normal():
  xi = _draw(0)
  assert stats.kstest(xi, "norm").pvalue > 0.01
  assert stats.kstest(np.abs(_draw(1)), "halfnorm").pvalue > 0.01


def test_mean_and_variance_within_four_standard_errors():
  xi = _draw(2).astype(np.float64)
  assert abs(xi.mean()) < 4 / np.sqrt(N)
  assert abs(xi.var() - 1.0) < 4 * np.sqrt(2.0 / N)
  half = np.abs(_draw(3)).astype(np.float64)  # the NAH noise
  half_mean, half_var = np.sqrt(2 / np.pi), 1 - 2 / np.pi
  assert abs(half.mean() - half_mean) < 4 * np.sqrt(half_var / N)


def test_tails_have_normal_frequencies():
  xi = _draw(4)
  for threshold in (2.0, 3.0, 4.0):
    p = 2 * stats.norm.sf(threshold)
    count = np.sum(np.abs(xi) > threshold)
    assert abs(count - N * p) < 5 * np.sqrt(N * p * (1 - p)), (threshold, count)


def test_adjacent_elements_and_keys_uncorrelated():
  xi = _draw(5)
  for lag in (1, 2, 3, 1024):
    assert abs(_corr(xi[:-lag], xi[lag:])) < CORRELATION_BOUND, lag
  # consecutive seeds and split siblings
  assert abs(_corr(_draw(10), _draw(11))) < CORRELATION_BOUND
  first, second = jax.random.split(jax.random.key(12))
  a = noise.standard_normal(first, (N,), jnp.float32)
  b = noise.standard_normal(second, (N,), jnp.float32)
  assert abs(_corr(a, b)) < CORRELATION_BOUND
  # |xi| of neighbours: dependence that a linear correlation of xi would miss
  assert abs(_corr(np.abs(xi[:-1]), np.abs(xi[1:]))) < CORRELATION_BOUND


def test_fold_in_streams_are_independent_and_not_shifted_copies():
  key = jax.random.key(20)
  keys = [jax.random.fold_in(key, step) for step in range(4)]
  draws = [np.sort(noise.random_bits(k, (N,))) for k in keys]  # distinct within a stream
  normals = [_draw_from(jax.random.fold_in(key, step)) for step in range(4)]
  for a, b in itertools.combinations(range(4), 2):
    assert abs(_corr(normals[a], normals[b])) < CORRELATION_BOUND
    for lag in (1, 2):  # a stream is not a near-shift of another
      assert abs(_corr(normals[a][:-lag], normals[b][lag:])) < CORRELATION_BOUND
    # Two independent sets of 10^6 32-bit words share about 10^12 / 2^32 = 233 values;
    # overlapping streams would share ~10^6.
    shared = np.intersect1d(draws[a], draws[b], assume_unique=True).size
    assert shared < 233 + 6 * np.sqrt(233), shared


def test_no_pattern_across_rows_and_columns():
  xi = _draw(30, (1000, 1000)).astype(np.float64)
  for axis in (0, 1):
    means = xi.mean(axis=axis)
    # 1000 means of 1000 standard normals: 1000 * sum(mean^2) is chi-square(1000).
    statistic = 1000 * np.sum(means**2)
    assert stats.chi2.sf(statistic, 1000) > 1e-3 and stats.chi2.cdf(statistic, 1000) > 1e-3
    # neighbouring rows/columns: correlation of their means within 4 standard errors
    assert abs(_corr(means[:-1], means[1:])) < 4 / np.sqrt(1000)
  # element (i, j) against (i + 1, j): the flat-index stride of a row
  assert abs(_corr(xi[:-1], xi[1:])) < CORRELATION_BOUND


# Purity: a function of (key, element index) -------------------------------------


class PurityTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_same_key_same_noise(self):
    fn = self.variant(lambda key: noise.standard_normal(key, (64, 33), jnp.float32))
    first = fn(jax.random.key(40))
    np.testing.assert_array_equal(first, fn(jax.random.key(40)))
    np.testing.assert_array_equal(first, _draw(40, (64, 33)))  # eager == jit, bitwise

  def test_function_of_flat_index_not_shape(self):
    long = _draw(41, (4096,))
    np.testing.assert_array_equal(_draw(41, (64, 64)).ravel(), long)
    np.testing.assert_array_equal(_draw(41, (1000,)), long[:1000])  # prefix

  def test_vmap_over_keys_equals_stacked_draws(self):
    keys = jax.random.split(jax.random.key(42), 5)
    batched = jax.vmap(lambda k: noise.standard_normal(k, (7, 9), jnp.float32))(keys)
    stacked = jnp.stack([
        noise.standard_normal(k, (7, 9), jnp.float32)
        for k in jax.random.split(jax.random.key(42), 5)
    ])
    np.testing.assert_array_equal(batched, stacked)
    assert len({np.asarray(b).tobytes() for b in batched}) == 5  # per-key noise

  def test_raw_and_typed_keys_agree(self):
    raw = noise.standard_normal(jax.random.PRNGKey(43), (16,), jnp.float32)
    typed = noise.standard_normal(jax.random.wrap_key_data(jax.random.PRNGKey(43)), (16,),
                                  jnp.float32)
    np.testing.assert_array_equal(raw, typed)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_dtype_is_float32_noise_cast(dtype):
  xi = noise.standard_normal(jax.random.key(50), (256,), dtype)
  assert xi.dtype == dtype
  np.testing.assert_array_equal(xi, _draw(50, (256,)).astype(dtype))


def test_jax_impl_is_jax_random_normal():
  got = noise.standard_normal(jax.random.key(51), (8, 3), jnp.float32, noise_impl="jax")
  np.testing.assert_array_equal(got, jax.random.normal(jax.random.key(51), (8, 3)))
  assert not np.array_equal(got, _draw(51, (8, 3)))


def test_zero_size_and_scalar_shapes():
  assert noise.standard_normal(jax.random.key(52), (0, 5), jnp.float32).shape == (0, 5)
  scalar = noise.standard_normal(jax.random.key(53), (), jnp.float32)
  assert scalar.shape == () and np.isfinite(scalar)


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="noise_impl='philox'"):
    noise.standard_normal(jax.random.key(60), (3,), jnp.float32, noise_impl="philox")
  with pytest.raises(TypeError, match="dtype=int32"):
    noise.standard_normal(jax.random.key(61), (3,), jnp.int32)
  with pytest.raises(TypeError, match="PRNG key"):
    noise.standard_normal(jnp.zeros(3), (3,), jnp.float32)


def test_one_draw_consumes_the_key_once():
  key = jax.random.key(70)
  noise.standard_normal(key, (1000,), jnp.float32)  # first use: no complaint
  with pytest.raises(jax.errors.KeyReuseError):
    jax.random.normal(key, (3,))


def test_large_arrays_index_with_two_words(monkeypatch):
  # Pretend a word holds 2^6 values, so that a (16, 8, 8) array needs two words.
  monkeypatch.setattr(noise, "_MAX_WORD", 2**6)
  low, high = noise._index_words((16, 8, 8))
  assert high is not None
  pairs = set(zip(np.ravel(low).tolist(), np.ravel(high).tolist()))
  assert len(pairs) == 16 * 8 * 8  # every element its own counter
  bits = np.asarray(noise.random_bits(jax.random.key(80), (16, 8, 8)))
  assert np.unique(bits).size == bits.size
  seed_words = np.asarray(jax.random.bits(jax.random.key(80), (2,), jnp.uint32))
  index = np.arange(64, dtype=np.uint32).reshape(1, 8, 8)  # flat index over (8, 8)
  high = np.arange(16, dtype=np.uint32).reshape(16, 1, 1)  # index over the leading 16
  np.testing.assert_array_equal(bits, _reference_bits(seed_words, index, high))
  with pytest.raises(ValueError, match="noise_impl='jax'"):
    noise._index_words((2**13,))


@pytest.mark.skipif(not any(d.platform == "gpu" for d in jax.devices()),
                    reason="needs a GPU (run with JAX_PLATFORMS=cuda,cpu)")
def test_gpu_draw_matches_cpu():
  gpu, cpu = jax.devices("gpu")[0], jax.devices("cpu")[0]
  draws = {}
  for device in (gpu, cpu):
    with jax.default_device(device):
      key = jax.random.key(100)
      draws[device.platform] = (np.asarray(noise.random_bits(key, (2**20,))),
                                _draw(101, (2**20,)))
  np.testing.assert_array_equal(draws["gpu"][0], draws["cpu"][0])
  # log and sqrt may differ by an ulp between backends; the bits may not.
  np.testing.assert_allclose(draws["gpu"][1], draws["cpu"][1], rtol=1e-5, atol=1e-5)
