"""Degenerate and mistaken inputs: infinite x, a schedule passed as c, unchecked traced values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import noisy_jax
import noisy_jax.nn
import noisy_jax.nnx
from noisy_jax import rnn
from noisy_jax._src import noise
from tests import reference

MODES = noisy_jax.activations.MODES
KINDS = noisy_jax.activations.KINDS
INF = np.array([np.inf, -np.inf], np.float32)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ("nan", "nah"))
def test_infinite_x_gives_the_limit_of_eq12(mode, kind):
  p = np.array([0.5, -0.7], np.float32)
  key = jax.random.key(0)
  xi = np.asarray(noise.standard_normal(key, INF.shape, jnp.float32), np.float64)
  eps = np.abs(xi) if mode == "nah" else xi
  h = reference.h(INF.astype(np.float64), kind)
  for alpha in (0.9, 1.0, 1.15):
    # sigma -> c (sgn(p) / 2)^2 = c / 4 as Delta -> -+inf; d(x) is finite.
    noise_term = reference.direction(INF, alpha) * (0.5 / 4) * eps
    y = noisy_jax.noisy_activation(INF, jax.random.clone(key), p, 0.5, alpha, mode, kind=kind)
    y_test = noisy_jax.noisy_activation(INF, None, p, 0.5, alpha, mode, kind=kind,
                                        deterministic=True)
    assert not np.isnan(y).any() and not np.isnan(y_test).any()
    if alpha == 1.0:  # alpha h + (1 - alpha) u is h, not 0 * inf
      np.testing.assert_allclose(y, h + noise_term, rtol=1e-6)
      mean = noise_term / eps * (reference.HALF_NORMAL_MEAN if mode == "nah" else 0.0)
      np.testing.assert_allclose(y_test, h + mean, rtol=1e-6)
    else:  # (1 - alpha) u(x) dominates
      np.testing.assert_array_equal(y, np.sign(1 - alpha) * INF)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ("nani", "nanil", "nanis"))
def test_infinite_x_with_input_noise_is_h_and_has_finite_gradients(mode, kind):
  p = jnp.array([0.5, 0.0])  # p = 0 used to give 0 * inf inside NANIL's scale
  fn = lambda p: noisy_jax.noisy_activation(INF, jax.random.key(1), p, 0.5, mode=mode,
                                            kind=kind)
  np.testing.assert_array_equal(fn(p), reference.h(INF.astype(np.float64), kind))
  grad = jax.grad(lambda p: fn(p).sum())(p)
  np.testing.assert_array_equal(grad, 0.0)


def test_output_noise_gradients_are_finite_at_infinite_x():
  x = jnp.array([np.inf, -np.inf, 0.3, 2.0])
  for argnums in (0, 1, 2):
    grads = jax.grad(lambda x, p, alpha: noisy_jax.noisy_activation(
        x, jax.random.key(2), p, 0.5, alpha, "nan").sum(), argnums)(x, 0.5, 1.0)
    assert not np.isnan(np.asarray(grads)).any(), argnums


SCHEDULE = noisy_jax.schedules.noise_annealing()


@pytest.mark.parametrize("make", [
    lambda: noisy_jax.noisy_activation(jnp.ones(3), jax.random.key(0), c=SCHEDULE),
    lambda: noisy_jax.noisy_hard_sigmoid(jnp.ones(3), None, 1.0, SCHEDULE, deterministic=True),
])
def test_a_schedule_passed_as_c_is_named(make):
  with pytest.raises(TypeError, match=r"^c must be a number or an array, got the callable"
                     r".*Fix: .*c=noisy_jax.schedules.noise_annealing\(\)\(step\)"):
    make()


def test_a_schedule_passed_as_a_module_c_names_the_field():
  xs = jnp.ones((2, 3, 3))
  tanh = rnn.UnitNoise("hard_tanh", "nan", c=SCHEDULE)
  with pytest.raises(TypeError, match=r"^tanh\.c must be a number or an array"):
    jax.eval_shape(noisy_jax.nn.NoisyLSTM(4, tanh=tanh, deterministic=True).init,
                   jax.random.key(0), xs)
  with pytest.raises(TypeError, match=r"^sigmoid\.c must be a number or an array"):
    noisy_jax.nnx.NoisyGRU(3, 4, sigmoid=rnn.UnitNoise("hard_sigmoid", "nah", c=SCHEDULE),
                           rngs=nnx.Rngs(0))
  layer = noisy_jax.nnx.NoisyGRU(3, 4, rngs=nnx.Rngs(0))
  with pytest.raises(TypeError, match=r"^c must be a number or an array"):
    noisy_jax.nnx.set_noise_scale(layer, SCHEDULE)


def test_negative_c_error_says_to_call_the_schedule():
  with pytest.raises(ValueError, match=r"got c=-1.0\. Fix: .*noise_annealing\(\)\(step\)"):
    noisy_jax.noisy_activation(jnp.ones(3), jax.random.key(0), c=-1.0)
  # A Python c is checked also when the module is traced (jit), where it only becomes
  # an array inside the trace.
  layer = noisy_jax.nn.NoisyGRU(4, sigmoid=rnn.UnitNoise("hard_sigmoid", "nah", c=-1.0),
                                deterministic=True)
  with pytest.raises(ValueError, match=r"^sigmoid\.c must be finite and >= 0"):
    jax.jit(layer.init)(jax.random.key(0), jnp.ones((2, 3, 3)))
  with pytest.raises(ValueError, match=r"^tanh\.alpha must be finite"):
    jax.jit(layer.clone(sigmoid=rnn.UnitNoise("hard_sigmoid", "nah"),
                        tanh=rnn.UnitNoise("hard_tanh", "nan", alpha=float("inf"))).init)(
        jax.random.key(0), jnp.ones((2, 3, 3)))


def test_a_traced_negative_c_is_not_caught_as_documented():
  # The docstrings say a traced c is not checked; the runner checks its schedules instead.
  y = jax.jit(lambda c: noisy_jax.noisy_hard_tanh(jnp.array([3.0]), jax.random.key(0), 1.0,
                                                   c))(-1.0)
  assert np.isfinite(y).all()


def _unique_integers(variant="nan_annealed"):
  from configs import unique_integers
  return unique_integers.get_config(variant)


def test_runner_checks_every_value_of_its_noise_schedule():
  from experiments import validation
  config = _unique_integers()
  validation.validate(config, 1)
  config.noise.c0 = 1e39  # a finite float64 that the float32 schedule turns into inf
  with pytest.raises(validation.ConfigError,
                     match=r"noise scale c is inf at step 0 .*fix noise\.c, or noise\.c0"):
    validation.validate(config, 1)


def test_runner_schedule_check_reads_the_schedule_the_run_uses(monkeypatch):
  from experiments import validation
  config = _unique_integers()
  real = noisy_jax.schedules.noise_annealing

  def broken(*args):  # a schedule that turns negative late in the run
    schedule = real(*args)
    return lambda step: jnp.where(step >= 1234, -1.0, schedule(step))

  monkeypatch.setattr(noisy_jax.schedules, "noise_annealing", broken)
  with pytest.raises(validation.ConfigError, match=r"noise scale c is -1.0 at step 1234 "):
    validation.validate(config, 1)


def test_runner_checks_the_gradient_noise_variance():
  from configs import deep_mlp
  from experiments import validation
  config = deep_mlp.get_config("simple_clip10_noise_lr0.1")
  validation.validate(config, 1)
  config.optimizer.gradient_noise_eta = 1e39
  with pytest.raises(validation.ConfigError, match=r"gradient-noise variance is inf at step 0"):
    validation.validate(config, 1)


def test_runner_rejects_nanil_scale_without_nanil():
  from experiments import validation
  config = _unique_integers("nan_annealed")
  config.noise.nanil_scale = "paper"
  with pytest.raises(validation.ConfigError, match=r"noise\.nanil_scale='paper' only applies"):
    validation.validate(config, 1)
  config.noise.nanil_scale = "eq9"
  with pytest.raises(validation.ConfigError, match=r"noise\.nanil_scale"):
    validation.validate(config, 1)
