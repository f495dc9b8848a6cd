"""Tests of the annealing schedules against reference.py."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import noisy_jax
from tests import reference


@pytest.mark.parametrize("c0, c_final, every", [(30.0, 0.5, 200), (1.0, 0.0, 1), (5.0, 5.0, 7)])
def test_noise_annealing_matches_paper(c0, c_final, every):
  schedule = noisy_jax.schedules.noise_annealing(c0, c_final, every)
  steps = [0, 1, every - 1, every, 2 * every, 3 * every + 1, 10**5, 720_000, 10**8]
  want = [reference.noise_annealing(t, c0, c_final, every) for t in steps]
  eager = [float(schedule(t)) for t in steps]
  jitted = jax.jit(jax.vmap(schedule))(jnp.asarray(steps, jnp.int32))
  np.testing.assert_allclose(eager, want, rtol=1e-6)
  np.testing.assert_allclose(jitted, want, rtol=1e-6)
  assert jitted.dtype == jnp.float32


def test_noise_annealing_reaches_the_floor_where_the_paper_says():
  schedule = noisy_jax.schedules.noise_annealing()
  # 30 / sqrt(t + 1) = 0.5 at t + 1 = 3600, i.e. t = 3599 -> update 3599 * 200.
  assert float(schedule(3599 * 200)) == pytest.approx(0.5)
  assert float(schedule(3598 * 200)) > 0.5
  assert float(schedule(3599 * 200 - 1)) > 0.5


def test_noise_annealing_composes_with_optax():
  anneal = noisy_jax.schedules.noise_annealing(30.0, 0.5, 10)
  joined = optax.join_schedules([optax.constant_schedule(30.0), anneal], boundaries=[100])
  assert float(joined(50)) == 30.0
  assert float(joined(100 + 25)) == pytest.approx(30.0 / np.sqrt(3))
  # Usable as an optax learning-rate schedule too.
  opt = optax.sgd(anneal)
  params = {"w": jnp.ones(3)}
  updates, _ = opt.update({"w": jnp.ones(3)}, opt.init(params), params)
  np.testing.assert_allclose(updates["w"], -30.0)


@pytest.mark.parametrize("eta", [0.01, 0.3, 1.0])
def test_gradient_noise_variance_matches_paper_b(eta):
  schedule = noisy_jax.schedules.gradient_noise_variance(eta)
  steps = [0, 1, 10, 1000, 10**6]
  np.testing.assert_allclose(
      jax.jit(jax.vmap(schedule))(jnp.asarray(steps)),
      [reference.gradient_noise_variance(t, eta) for t in steps], rtol=1e-6)


@pytest.mark.parametrize(
    "factory, kwargs, match",
    [
        (noisy_jax.schedules.noise_annealing, dict(c0=-1.0), "c0 must be finite"),
        (noisy_jax.schedules.noise_annealing, dict(c_final=float("nan")), "c_final must be"),
        (noisy_jax.schedules.noise_annealing, dict(c0=0.4, c_final=0.5), "c_final <= c0"),
        (noisy_jax.schedules.noise_annealing, dict(every=0), "every must be an integer >= 1"),
        (noisy_jax.schedules.noise_annealing, dict(every=2.5), "every must be an integer >= 1"),
        (noisy_jax.schedules.gradient_noise_variance, dict(eta=-0.1), "eta must be finite"),
        (noisy_jax.schedules.gradient_noise_variance, dict(gamma=float("inf")), "gamma must be"),
    ],
)
def test_bad_arguments_raise(factory, kwargs, match):
  with pytest.raises(ValueError, match=match):
    factory(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(eta=jnp.ones(2)), dict(gamma=lambda t: 0.5),
                                    dict(eta="0.01")])
def test_non_scalar_gradient_noise_hyperparameters_raise(kwargs):
  with pytest.raises(TypeError, match="must be a non-negative scalar"):
    noisy_jax.schedules.gradient_noise_variance(**kwargs)
