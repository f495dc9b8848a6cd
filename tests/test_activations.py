"""Tests of the noisy activation functions against the float64 references of reference.py."""

import functools
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.test_util import check_grads
from scipy import stats

import noisy_jax
from noisy_jax._src import noise
from tests import reference
from tests.residuals import saved_residuals

KINDS = noisy_jax.activations.KINDS
MODES = noisy_jax.activations.MODES
OUTPUT_MODES = ("nan", "nah")
MODE_KIND = list(itertools.product(MODES, KINDS))
# NANIL's two scales: Eq. 9 as written, and the reference code's softplus form. Tests of
# NANIL name one, so that they do not depend on the library's default.
NANIL_SCALES = ("paper", "reference")
MODE_SCALE = [(mode, scale) for mode in MODES
              for scale in (NANIL_SCALES if mode == "nanil" else (None,))]
MODE_KIND_SCALE = [(mode, kind, scale) for mode, scale in MODE_SCALE for kind in KINDS]


def _inputs(kind, n=257):
  """A grid over both saturated tails and the linear part, kinks included."""
  xt = reference.x_t(kind)
  return np.concatenate([np.linspace(-3 * xt, 3 * xt, n - 4), [-xt, xt, 0.0, 40.0]]).astype(
      np.float32)


def _reference_draw(key, shape):
  # clone: the library consumes `key` itself; the reference reads the same draw.
  return np.asarray(noise.standard_normal(jax.random.clone(key), shape, jnp.float32))


def _scale_option(nanil_scale):
  """The ``nanil_scale`` keyword (library and reference.py) for NANIL; none for other modes."""
  return {} if nanil_scale is None else {"nanil_scale": nanil_scale}


class ActivationTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*KINDS)
  def test_activation_linearization_saturation(self, kind):
    x = _inputs(kind)
    h = self.variant(functools.partial(noisy_jax.activations.activation, kind=kind))(x)
    u = self.variant(functools.partial(noisy_jax.activations.linearization, kind=kind))(x)
    delta = self.variant(functools.partial(noisy_jax.activations.saturation, kind=kind))(x)
    np.testing.assert_allclose(h, reference.h(x.astype(np.float64), kind), atol=1e-6)
    np.testing.assert_allclose(u, reference.u(x.astype(np.float64), kind), atol=1e-6)
    np.testing.assert_allclose(delta, reference.h(x, kind) - reference.u(x, kind), atol=1e-5)
    if kind.startswith("hard"):
      unsaturated = np.abs(x) <= reference.x_t(kind)
      np.testing.assert_array_equal(np.asarray(delta)[unsaturated], 0.0)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*MODE_KIND_SCALE)
  def test_matches_reference_with_same_draw(self, mode, kind, nanil_scale):
    x = _inputs(kind).reshape(1, -1).repeat(3, axis=0)
    p = np.random.default_rng(0).uniform(-1, 1, x.shape[-1]).astype(np.float32)
    c, alpha = 0.7, 1.15
    key = jax.random.key(3)
    xi = _reference_draw(key, x.shape)
    fn = functools.partial(noisy_jax.noisy_activation, mode=mode, kind=kind,
                           **_scale_option(nanil_scale))
    got = self.variant(fn)(x, key, p, c, alpha)
    want = reference.noisy(x, xi, p, c, alpha, mode, kind, **_scale_option(nanil_scale))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*MODE_KIND)
  def test_deterministic_is_eq13_expectation(self, mode, kind):
    x = _inputs(kind)
    p, c, alpha = 0.8, 2.0, 0.9
    fn = functools.partial(noisy_jax.noisy_activation, mode=mode, kind=kind, deterministic=True)
    got = self.variant(lambda x, p, c, alpha: fn(x, None, p, c, alpha))(x, p, c, alpha)
    np.testing.assert_allclose(got, reference.expectation(x, p, c, alpha, mode, kind),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", OUTPUT_MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_mean_over_keys_equals_deterministic_output(mode, kind):
  x = jnp.asarray([-3.0, -1.5, 0.3, 2.5, 5.0]) * reference.x_t(kind)
  p, c, alpha = 1.0, 3.0, 1.1
  keys = jax.random.split(jax.random.key(7), 40_000)
  samples = jax.vmap(lambda k: noisy_jax.noisy_activation(x, k, p, c, alpha, mode, kind=kind))(keys)
  expected = noisy_jax.noisy_activation(x, None, p, c, alpha, mode, kind=kind, deterministic=True)
  standard_error = samples.std(0) / np.sqrt(len(keys)) + 1e-7
  assert np.all(np.abs(samples.mean(0) - expected) <= 4 * standard_error)


@pytest.mark.parametrize("mode", OUTPUT_MODES)
def test_injected_noise_distribution_in_saturation(mode):
  # In saturation phi = mean + d(x) sigma(x) eps, so (phi - mean) / (d sigma) recovers eps.
  n = 200_000
  x = jnp.full((n,), 3.0)
  p, c, alpha = 1.0, 1.0, 1.0
  phi = noisy_jax.noisy_hard_tanh(x, jax.random.key(11), p, c, alpha, mode)
  mean = reference.expectation(3.0, p, c, alpha, "nan", "hard_tanh")
  scale = reference.direction(3.0, alpha) * reference.sigma(3.0, p, c, "hard_tanh")
  eps = (np.asarray(phi, np.float64) - mean) / scale
  dist = stats.halfnorm if mode == "nah" else stats.norm
  assert stats.kstest(eps, dist.cdf).pvalue > 0.01
  se_mean = np.sqrt(dist.var() / n)
  assert abs(eps.mean() - dist.mean()) < 4 * se_mean
  se_var = dist.var() * np.sqrt(2.0 / n) * 2  # generous: kurtosis of half-normal > normal's
  assert abs(eps.var() - dist.var()) < 4 * se_var


@pytest.mark.parametrize("mode", OUTPUT_MODES)
def test_alpha_one_keeps_the_noise_on(mode):
  x = jnp.full((1000,), 2.5)
  noisy = noisy_jax.noisy_hard_tanh(x, jax.random.key(0), 1.0, 1.0, 1.0, mode)
  assert float(noisy.std()) > 0.01


@pytest.mark.parametrize("mode, nanil_scale", MODE_SCALE)
def test_unsaturated_hard_tanh_is_exactly_linear_for_output_and_nanis(mode, nanil_scale):
  x = jnp.linspace(-0.99, 0.99, 101)
  y = noisy_jax.noisy_hard_tanh(x, jax.random.key(0), 0.5, 5.0, 1.2, mode,
                                **_scale_option(nanil_scale))
  if mode in ("nan", "nah", "nanis") or nanil_scale == "paper":
    # sigma(x) = 0 (Eq. 9 at Delta = 0) or no noise for |x| < x_t
    np.testing.assert_array_equal(y, x)
  else:  # nani, and NANIL's reference scale (c softplus(0) = c log 2), noise everywhere
    assert not np.allclose(y, x)


def _check_grads_every_mode(kind):
  # float64, orders 1 and 2, forward and reverse: a slope off by 1e-4 (0.2501 for 0.25)
  # fails, which float32 at 2e-2 let through. check_grads multiplies atol and rtol by
  # the output's size: 1e-8 is 3e-7 on the 30 tangents, 1e-8 on a cotangent projection.
  # Every mode (NANIL with both scales) is one row of one jitted function: check_grads
  # compiles 13 programs, and one program of six modes compiles in half the time of six.
  # The key-reuse checker is off here only: reverse over reverse regenerates the noise
  # from the same key inside one trace, as designed (the backward pass recomputes it).
  with jax.enable_x64(True), jax.debug_key_reuse(False):
    # Points off the kinks |x| = x_t and x = 0, by at least 0.35 with the noise of
    # the input-noise modes added.
    x = jnp.asarray([-2.7, -1.6, 0.37, 1.45, 2.9], jnp.float64) * reference.x_t(kind)
    p = jnp.asarray([0.3, -0.6, 0.9, 0.5, -0.2], jnp.float64)
    key = jax.random.key(5)

    @jax.jit
    def fn(x, p):  # row i: MODE_SCALE[i]
      return jnp.stack([
          noisy_jax.noisy_activation(x, jax.random.clone(key), p, 0.1, 1.1, mode, kind=kind,
                                     **_scale_option(nanil_scale))
          for mode, nanil_scale in MODE_SCALE])

    assert fn(x, p).dtype == jnp.float64
    check_grads(fn, (x, p), order=2, modes=("fwd", "rev"), eps=1e-5, atol=1e-8, rtol=1e-8)


class GradientTest(chex.TestCase):

  # The smooth kinds run the same check under `make test-slow` (test_check_grads_smooth_kinds).
  @parameterized.parameters("hard_tanh", "hard_sigmoid")
  def test_check_grads_away_from_kinks(self, kind):
    _check_grads_every_mode(kind)

  @parameterized.parameters("nan", "nah")
  def test_exact_gradients_at_kinks_and_in_saturation(self, mode):
    x = jnp.asarray([-1.0, 1.0, -4.0, 3.0])
    p = jnp.asarray([0.5, -0.5, 0.7, -0.9])
    c, alpha = 2.0, 1.15
    key = jax.random.key(9)
    xi = _reference_draw(key, x.shape).astype(np.float64)
    eps = np.abs(xi) if mode == "nah" else xi
    fn = lambda x, p: noisy_jax.noisy_hard_tanh(x, key, p, c, alpha, mode)
    dx, dp = jax.jacrev(fn, argnums=(0, 1))(x, p)
    dx, dp = np.diag(dx), np.diag(dp)
    xs, ps = np.asarray(x, np.float64), np.asarray(p, np.float64)
    delta = reference.hard_tanh(xs) - xs
    g = reference.sigmoid(ps * delta)
    d = reference.direction(xs, alpha)
    # phi = alpha h + (1 - alpha) u + d c (g(p Delta) - 0.5)^2 eps; h' = 1 on [-1, 1], else 0.
    h_prime = (np.abs(xs) <= 1).astype(np.float64)
    dsigma_ddelta = 2 * c * (g - 0.5) * g * (1 - g)
    want_dx = alpha * h_prime + (1 - alpha) + d * eps * dsigma_ddelta * ps * (h_prime - 1)
    want_dp = d * eps * dsigma_ddelta * delta
    np.testing.assert_allclose(dx, want_dx, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dp, want_dp, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(dx[:2], 1.0)  # kinks: the linear regime's slope
    assert np.all(dx[2:] != 1 - alpha) and np.all(dp[2:] != 0)  # Eq. 10: noise gradient flows

  def test_hard_activation_gradients_at_kinks(self):
    grad_tanh = jax.vmap(jax.grad(noisy_jax.hard_tanh))
    grad_sigmoid = jax.vmap(jax.grad(noisy_jax.hard_sigmoid))
    np.testing.assert_array_equal(grad_tanh(jnp.asarray([-1.0, 1.0, -1.001, 1.001])),
                                  [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(grad_sigmoid(jnp.asarray([-2.0, 2.0, -2.001, 2.001])),
                                  [0.25, 0.25, 0.0, 0.0])

  @parameterized.parameters(*MODE_SCALE)
  def test_backward_keeps_only_inputs_not_the_noise(self, mode, nanil_scale):
    x = jnp.ones((64, 32)) * 2.0
    p = jnp.zeros((32,))
    key = jax.random.key(0)
    loss = lambda x, p: noisy_jax.noisy_hard_tanh(x, key, p, 0.5, 1.1, mode,
                                                  **_scale_option(nanil_scale)).sum()
    residuals = saved_residuals(loss, x, p)
    big = [r for r in residuals if r[1] == x.shape]
    assert len(big) == 1 and "argument" in big[0][2], residuals  # x itself, no noise buffer
    # Nothing computed is kept: only the arguments and constants (c, alpha, the key).
    assert all(("argument" in r[2]) or ("literal" in r[2]) or ("constant" in r[2])
               for r in residuals), residuals


def test_no_retrace_when_c_alpha_p_change():
  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(x, key, p, c, alpha):
    return noisy_jax.noisy_hard_sigmoid(x, key, p, c, alpha, "nah")

  x = jnp.linspace(-5, 5, 16)
  keys = jax.random.split(jax.random.key(0), 4)
  schedule = noisy_jax.schedules.noise_annealing()  # c as an annealed runtime value
  outputs = []
  for i, (t, alpha) in enumerate([(0, 1.1), (200, 1.0), (4000, 0.9), (10**7, 1.2)]):
    outputs.append(step(x, keys[i], jnp.full((16,), 0.1 * i), schedule(t), jnp.float32(alpha)))
  assert not np.allclose(outputs[0], outputs[3])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("mode", MODES)
def test_dtype_is_preserved(dtype, mode):
  x = jnp.linspace(-4, 4, 33, dtype=dtype)
  p = jnp.zeros((33,), jnp.float32)
  y = noisy_jax.noisy_hard_tanh(x, jax.random.key(0), p, mode=mode)
  assert y.dtype == dtype
  gx, gp = jax.grad(lambda x, p: noisy_jax.noisy_hard_tanh(x, jax.random.key(1), p,
                                                           mode=mode).astype(jnp.float32).sum(),
                    argnums=(0, 1))(x, p)
  assert gx.dtype == dtype and gp.dtype == jnp.float32
  assert noisy_jax.hard_sigmoid(x).dtype == dtype and noisy_jax.hard_tanh(x).dtype == dtype
  assert noisy_jax.noisy_hard_tanh(x, mode=mode, deterministic=True).dtype == dtype


def test_vmap_over_keys_gives_independent_noise():
  x = jnp.full((4096,), 3.0)
  keys = jax.random.split(jax.random.key(0), 8)
  y = jax.vmap(lambda k: noisy_jax.noisy_hard_tanh(x, k, 1.0, 1.0, 1.0))(keys)
  z = y - y.mean(1, keepdims=True)
  corr = np.corrcoef(np.asarray(z))
  off_diagonal = corr[~np.eye(8, dtype=bool)]
  assert np.abs(off_diagonal).max() < 0.1  # 4 / sqrt(4096) ~ 0.06
  # vmap equals calling per key.
  one = noisy_jax.noisy_hard_tanh(x, jax.random.clone(keys)[3], 1.0, 1.0, 1.0)
  np.testing.assert_allclose(y[3], one, rtol=1e-6)


@pytest.mark.parametrize("mode, nanil_scale", MODE_SCALE)
@pytest.mark.parametrize("kind", KINDS)
def test_no_nan_on_degenerate_input(mode, nanil_scale, kind):
  x = jnp.asarray([0.0, -0.0, 1e-30, -1e30, 1e30, 3e38, -3e38])
  for p, c in [(0.0, 0.0), (1e6, 30.0), (-1e6, 30.0)]:
    loss = lambda x: noisy_jax.noisy_activation(x, jax.random.key(0), p, c, 1.0, mode,
                                                kind=kind, **_scale_option(nanil_scale))
    y, g = loss(x), jax.grad(lambda x: loss(x).sum())(x)
    assert np.all(np.isfinite(y[:5])) and not np.any(np.isnan(y)) and not np.any(np.isnan(g))


def test_p_init_is_uniform_on_minus_one_one():
  p = noisy_jax.p_init(jax.random.key(0), (100_000,))
  assert p.dtype == jnp.float32 and float(p.min()) >= -1 and float(p.max()) <= 1
  assert stats.kstest(np.asarray(p), stats.uniform(-1, 2).cdf).pvalue > 0.01


def test_reference_defaults_are_used():
  x = jnp.linspace(-5, 5, 11)
  for mode, kind in MODE_KIND:
    c, alpha = noisy_jax.activations.reference_defaults(mode, kind)
    key = jax.random.key(2)
    got = noisy_jax.noisy_activation(x, jax.random.clone(key), mode=mode, kind=kind)
    want = noisy_jax.noisy_activation(x, key, 1.0, c, alpha, mode, kind=kind)
    np.testing.assert_array_equal(got, want)
  assert noisy_jax.activations.reference_defaults("nan", "hard_tanh") == (0.5, 1.15)
  assert noisy_jax.activations.reference_defaults("nah", "sigmoid") == (0.15, 1.1)
  assert noisy_jax.activations.reference_defaults("nani", "tanh")[0] == 0.05


def test_nanil_reference_scale_option():
  x = jnp.asarray([-3.0, 0.5, 2.0])
  key = jax.random.key(4)
  xi = _reference_draw(key, x.shape)
  got = noisy_jax.noisy_activation(x, key, 0.7, 0.25, mode="nanil", nanil_scale="reference")
  delta = reference.hard_tanh(np.asarray(x, np.float64)) - np.asarray(x, np.float64)
  scale = 0.25 * np.log1p(np.exp(0.7 * np.abs(delta) / (np.abs(xi) + 1e-10)))
  np.testing.assert_allclose(got, reference.hard_tanh(np.asarray(x) + scale * xi), rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(mode="nax"), ValueError, "mode='nax'.*'nan', 'nah'"),
        (dict(kind="relu"), ValueError, "kind='relu'.*'hard_tanh'"),
        (dict(nanil_scale="x"), ValueError, "nanil_scale"),
        (dict(noise_impl="philox"), ValueError, "noise_impl='philox'.*'hash', 'jax'"),
        (dict(key=None), ValueError, "key is required.*deterministic=True"),
        (dict(c=-1.0), ValueError, "c must be finite and >= 0"),
        (dict(c=float("nan")), ValueError, "c must be finite"),
        (dict(alpha=float("inf")), ValueError, "alpha must be finite"),
        (dict(p=np.ones(3)), ValueError, r"p of shape \(3,\) does not broadcast"),
        (dict(c=np.ones((2, 4))), ValueError, r"c of shape \(2, 4\)"),
        (dict(x=np.arange(4)), TypeError, "x must be a floating-point array.*astype"),
        (dict(key=np.arange(3)), TypeError, "key must be a PRNG key"),
        (dict(key="batch"), ValueError, "single PRNG key"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs, error, match):
  args = dict(x=np.ones(4, np.float32), key=jax.random.key(0), p=1.0, c=None, alpha=None)
  if isinstance(kwargs.get("key"), str):
    kwargs = dict(key=jax.random.split(jax.random.key(0), 2))
  args.update(kwargs)
  with pytest.raises(error, match=match):
    noisy_jax.noisy_activation(**args)


def test_traced_c_is_not_validated_but_works():
  x = jnp.ones(3) * 4
  y = jax.jit(lambda c: noisy_jax.noisy_hard_tanh(x, jax.random.key(0), 1.0, c))(1.0)
  np.testing.assert_allclose(y, noisy_jax.noisy_hard_tanh(x, jax.random.key(0), 1.0, 1.0),
                             rtol=1e-6)
  assert not np.allclose(y, 1.0)  # saturated and noisy


def test_jax_random_noise_impl_matches_reference():
  x = _inputs("hard_tanh")
  key = jax.random.key(8)
  xi = np.asarray(jax.random.normal(jax.random.clone(key), x.shape, jnp.float32))
  got = noisy_jax.noisy_hard_tanh(x, key, 0.5, 0.7, 1.1, "nah", noise_impl="jax")
  want = reference.noisy(x, xi, 0.5, 0.7, 1.1, "nah", "hard_tanh")
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ("tanh", "sigmoid"))
def test_check_grads_smooth_kinds(kind):
  _check_grads_every_mode(kind)
