"""Tests of the annealed gradient noise (Neelakantan et al., 2015, Eq. 1) transformation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
from scipy import stats

import noisy_jax.schedules
from noisy_jax import optim

GAMMA = 0.55


def _sigma(eta, t, gamma=GAMMA):
  """Eq. 1 in float64: the standard deviation sqrt(eta / (1 + t)^gamma)."""
  return np.sqrt(eta / (1.0 + t) ** gamma)


def _noise(tx, grads, state, jit=True):
  """Runs one update and returns (updates - grads, new state)."""
  update = jax.jit(tx.update) if jit else tx.update
  updates, state = update(grads, state)
  noise = jax.tree.map(lambda u, g: np.asarray(u, np.float64) - np.asarray(g, np.float64),
                       updates, grads)
  return noise, state


def _at_count(state, count):
  return state._replace(count=jnp.asarray(count, jnp.int32))


@pytest.mark.parametrize("eta, gamma, noise_impl",
                         [(0.01, GAMMA, "hash"), (0.3, GAMMA, "jax"), (1.0, 0.3, "hash")])
def test_noise_is_eq1_sigma_times_the_unit_draw_at_every_step(eta, gamma, noise_impl):
  # Same key, unit variance (eta = 1, gamma = 0): the transform draws the same standard
  # normals at every step and scales them by sigma_t, so the ratio of the two noises is
  # sigma_t of Eq. 1 to float32 rounding, at every t the transform counts itself.
  grads = {"w": jnp.zeros((4, 8)), "b": jnp.zeros((8,))}
  scaled = optim.add_gradient_noise(eta, gamma, key=23, noise_impl=noise_impl)
  unit = optim.add_gradient_noise(1.0, 0.0, key=23, noise_impl=noise_impl)
  scaled_update, unit_update = jax.jit(scaled.update), jax.jit(unit.update)
  scaled_state, unit_state = scaled.init(grads), unit.init(grads)
  for t in range(51):
    noise, scaled_state = scaled_update(grads, scaled_state)
    unit_noise, unit_state = unit_update(grads, unit_state)
    for name in grads:
      ratio = np.asarray(noise[name], np.float64) / np.asarray(unit_noise[name], np.float64)
      np.testing.assert_allclose(ratio, _sigma(eta, t, gamma), rtol=1e-6, err_msg=f"t={t}")
  assert int(scaled_state.count) == 51


@pytest.mark.parametrize("eta", [0.01, 0.3, 1.0])
def test_std_and_mean_follow_eq1(eta):
  # Secondary to the exact test above, which cannot see a wrong unit draw: spread and mean.
  n = 2**20
  tx = optim.add_gradient_noise(eta, GAMMA, key=17)
  grads = {"w": jnp.zeros((n // 1024, 1024))}
  state = tx.init(grads)
  for t in (0, 10, 1000):
    noise, _ = _noise(tx, grads, _at_count(state, t))
    sigma = _sigma(eta, t)
    assert abs(noise["w"].std() / sigma - 1) < 0.02, t
    assert abs(noise["w"].mean()) < 5 * sigma / np.sqrt(n), t


@pytest.mark.parametrize("t", [0, 1000])
def test_jax_random_generator_follows_eq1_too(t):
  tx = optim.add_gradient_noise(1.0, GAMMA, key=19, noise_impl="jax")
  grads = jnp.zeros((2**18,))
  noise, _ = _noise(tx, grads, _at_count(tx.init(grads), t))
  assert abs(noise.std() / _sigma(1.0, t) - 1) < 0.02


def test_count_advances_once_per_update_and_matches_eq1_at_t10():
  tx = optim.add_gradient_noise(0.3, key=jax.random.key(2))
  grads = jnp.zeros((2**18,))
  state = tx.init(grads)
  for _ in range(10):
    _, state = _noise(tx, grads, state)
  assert int(state.count) == 10
  noise, state = _noise(tx, grads, state)
  assert abs(noise.std() / _sigma(0.3, 10) - 1) < 0.02
  assert int(state.count) == 11


def test_variance_is_the_shared_eq1_schedule():
  # The float case and the lead's schedule give bit-identical noise.
  grads = {"w": jnp.zeros((4096,))}
  schedule = noisy_jax.schedules.gradient_noise_variance(0.3, GAMMA)
  by_float = optim.add_gradient_noise(0.3, GAMMA, key=4)
  by_schedule = optim.add_gradient_noise(schedule, key=4)
  for t in (0, 7, 500):
    a, _ = _noise(by_float, grads, _at_count(by_float.init(grads), t))
    b, _ = _noise(by_schedule, grads, _at_count(by_schedule.init(grads), t))
    np.testing.assert_array_equal(a["w"], b["w"])


def test_a_schedule_alone_decides_the_variance():
  tx = optim.add_gradient_noise(optax.constant_schedule(0.04), gamma=GAMMA, key=5)
  grads = jnp.zeros((2**18,))
  for t in (0, 1000):  # no (1 + t)^-gamma on top of the schedule
    noise, _ = _noise(tx, grads, _at_count(tx.init(grads), t))
    assert abs(noise.std() / 0.2 - 1) < 0.02


class JitEagerTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_same_noise_jitted_and_eager(self):
    tx = optim.add_gradient_noise(1.0, key=8)
    grads = {"a": jnp.ones((3, 5)), "b": [jnp.full((2,), 2.0)]}
    want, want_state = _noise(tx, grads, tx.init(grads), jit=False)
    got, state = self.variant(tx.update)(grads, tx.init(grads))
    got = jax.tree.map(lambda u, g: np.asarray(u) - np.asarray(g), got, grads)
    chex.assert_trees_all_close(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(state.key_data, want_state.key_data)


def test_leaves_and_steps_get_independent_noise():
  n = 2**16
  tx = optim.add_gradient_noise(1.0, key=21)
  grads = {"a": jnp.zeros((n,)), "b": jnp.zeros((n,)), "c": [jnp.zeros((n,))]}
  first, state = _noise(tx, grads, tx.init(grads))
  second, _ = _noise(tx, grads, state)
  series = [first["a"], first["b"], first["c"][0], second["a"]]
  corr = np.corrcoef(np.stack(series))
  off_diagonal = corr[~np.eye(len(series), dtype=bool)]
  assert np.all(np.abs(off_diagonal) < 5 / np.sqrt(n)), corr


def test_leaf_noise_does_not_depend_on_other_leaves():
  w = jnp.zeros((64, 8))
  alone = optim.add_gradient_noise(0.3, key=3)
  crowded = optim.add_gradient_noise(0.3, key=3)
  noise_alone, _ = _noise(alone, {"w": w}, alone.init({"w": w}))
  tree = {"a": jnp.zeros((5,)), "w": w, "z": jnp.zeros((2, 2))}
  noise_crowded, _ = _noise(crowded, tree, crowded.init(tree))
  np.testing.assert_array_equal(noise_alone["w"], noise_crowded["w"])


def test_masked_skips_leaves_and_keeps_the_others_noise():
  grads = {"w": jnp.ones((32, 4)), "b": jnp.ones((4,))}
  plain = optim.add_gradient_noise(1.0, key=6)
  masked = optax.masked(optim.add_gradient_noise(1.0, key=6), {"w": True, "b": False})
  noise_plain, _ = _noise(plain, grads, plain.init(grads))
  noise_masked, _ = _noise(masked, grads, masked.init(grads))
  np.testing.assert_array_equal(noise_masked["b"], 0.0)
  np.testing.assert_array_equal(noise_masked["w"], noise_plain["w"])
  assert noise_plain["b"].std() > 0.3


@pytest.mark.parametrize("t, noise_impl", [(0, "hash"), (10, "jax")])
def test_same_distribution_as_optax_add_noise(t, noise_impl):
  n, eta = 20_000, 0.3
  grads = jnp.zeros((n,))
  ours = optim.add_gradient_noise(eta, GAMMA, key=31, noise_impl=noise_impl)
  theirs = optax.add_noise(eta, GAMMA, key=32)
  samples = []
  for tx in (ours, theirs):
    state = tx.init(grads)
    state = state._replace(count=jnp.asarray(t, jnp.int32))
    samples.append(_noise(tx, grads, state)[0])
  assert stats.ks_2samp(samples[0], samples[1]).pvalue > 0.01
  # The test has the power to see a 10% larger standard deviation.
  assert stats.ks_2samp(samples[0], 1.1 * samples[1]).pvalue < 1e-3


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_gets_float32_noise_rounded_once(dtype):
  grads = {"w": (jnp.arange(4096) / 512.0 - 4.0).astype(dtype)}
  grads32 = {"w": grads["w"].astype(jnp.float32)}
  tx = optim.add_gradient_noise(0.3, key=9)
  low, _ = jax.jit(tx.update)(grads, tx.init(grads))
  high, _ = jax.jit(tx.update)(grads32, tx.init(grads32))
  assert low["w"].dtype == dtype
  np.testing.assert_array_equal(np.asarray(low["w"], np.float32),
                                np.asarray(high["w"].astype(dtype), np.float32))


def test_noise_comes_after_clipping_in_chain():
  max_norm, eta = 1.0, 1.0
  grads = {"w": jnp.full((256,), 10.0)}
  after = optax.chain(optax.clip_by_global_norm(max_norm), optim.add_gradient_noise(eta, key=12))
  before = optax.chain(optim.add_gradient_noise(eta, key=12), optax.clip_by_global_norm(max_norm))
  noise_only = optim.add_gradient_noise(eta, key=12)
  out_after, _ = jax.jit(after.update)(grads, after.init(grads))
  out_before, _ = jax.jit(before.update)(grads, before.init(grads))
  zeros = jax.tree.map(jnp.zeros_like, grads)
  noise, _ = _noise(noise_only, zeros, noise_only.init(zeros))
  clipped = np.full(256, max_norm / 16.0)  # |g| = 160, scaled to norm 1
  np.testing.assert_allclose(out_after["w"], clipped + noise["w"], rtol=1e-5, atol=1e-6)
  assert optax.tree.norm(out_after) > 10 * max_norm  # the noise is not clipped away
  assert optax.tree.norm(out_before) <= max_norm * (1 + 1e-5)


def test_noisy_sgd_is_clip_noise_sgd():
  grads = {"w": jnp.full((128,), 3.0), "b": jnp.ones((4,))}
  want_tx = optax.chain(optax.clip_by_global_norm(10.0),
                        optim.add_gradient_noise(0.01, GAMMA, key=14), optax.sgd(0.1))
  got_tx = optim.noisy_sgd(0.1, eta=0.01, key=14, max_norm=10.0)
  want, _ = want_tx.update(grads, want_tx.init(grads))
  got, _ = got_tx.update(grads, got_tx.init(grads))
  chex.assert_trees_all_close(got, want)
  unclipped = optim.noisy_sgd(0.1, key=14)
  out, _ = unclipped.update(grads, unclipped.init(grads))
  assert optax.tree.norm(out) > 0.1 * 10.0  # no clipping: |g| = 34


def test_multisteps_noise_once_per_real_update():
  k, eta, n = 4, 1.0, 2**16
  grads = jnp.zeros((n,))
  inside = optax.MultiSteps(optax.chain(optim.add_gradient_noise(eta, key=40), optax.sgd(1.0)),
                            every_k_schedule=k)
  state = inside.init(grads)
  update = jax.jit(inside.update)
  applied = []
  for _ in range(2 * k):
    updates, state = update(grads, state)
    applied.append(np.asarray(updates))
  for step in (k - 1, 2 * k - 1):  # the real updates
    real = step // k
    assert abs(applied[step].std() / _sigma(eta, real) - 1) < 0.03
  assert all(np.all(applied[i] == 0) for i in range(2 * k) if i % k != k - 1)
  assert int(state.inner_opt_state[0].count) == 2
  assert not np.allclose(applied[k - 1], applied[2 * k - 1] * _sigma(eta, 0) / _sigma(eta, 1))


def test_noise_outside_multisteps_is_averaged_away():
  # The wrong order: noise on every micro-batch, then the average of k of them.
  k, eta, n = 4, 1.0, 2**16
  grads = jnp.zeros((n,))
  noise = optim.add_gradient_noise(eta, key=41)
  outside = optax.chain(noise, optax.MultiSteps(optax.sgd(1.0), k).gradient_transformation())
  state = outside.init(grads)
  update = jax.jit(outside.update)
  for _ in range(k):
    updates, state = update(grads, state)
  averaged = np.sqrt(sum(_sigma(eta, t) ** 2 for t in range(k))) / k
  assert abs(np.asarray(updates).std() / averaged - 1) < 0.03
  assert averaged < 0.6 * _sigma(eta, 0)
  assert int(state[0].count) == k  # t advanced per micro-batch, not per update


@pytest.mark.parametrize("static_args", [(), ("key",)])
@pytest.mark.parametrize("seed_as_int", [True, False])
def test_inject_hyperparams_decays_once_and_never_retraces(static_args, seed_as_int):
  eta = 0.3
  grads = {"w": jnp.zeros((4096,)), "b": jnp.zeros((16,))}
  key = 50 if seed_as_int else jax.random.key(50)
  injected = optax.inject_hyperparams(optim.add_gradient_noise, static_args=static_args)(
      eta=eta, key=key)
  assert set(injected.init(grads).hyperparams) >= {"eta"}
  assert ("key" in injected.init(grads).hyperparams) == (not static_args)
  chex.clear_trace_counter()  # the four parametrizations define the same `step`

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(grads, state):
    return injected.update(grads, state)

  plain = optim.add_gradient_noise(eta, key=50)
  state, plain_state = injected.init(grads), plain.init(grads)
  for t in range(4):
    scale = 1.0
    if t == 3:  # change eta at run time: a quarter of the variance, half the noise
      state.hyperparams["eta"] = jnp.asarray(eta / 4, jnp.float32)
      scale = 0.5
    got, state = step(grads, state)
    want, plain_state = _noise(plain, grads, plain_state)
    chex.assert_trees_all_close(got, jax.tree.map(lambda w: scale * w, want),
                                rtol=1e-5, atol=1e-7)
  assert int(state.inner_state.count) == 4


def test_inject_hyperparams_with_a_static_schedule_lets_it_decide():
  schedule = optax.linear_schedule(0.3, 0.0, 10)
  grads = jnp.zeros((4096,))
  injected = optax.inject_hyperparams(optim.add_gradient_noise, static_args=("eta", "key"))(
      eta=schedule, key=60)
  plain = optim.add_gradient_noise(schedule, key=60)
  state, plain_state = injected.init(grads), plain.init(grads)
  for _ in range(3):
    got, state = jax.jit(injected.update)(grads, state)
    want, plain_state = _noise(plain, grads, plain_state)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_no_retrace_over_steps():
  tx = optim.noisy_sgd(0.1, eta=0.01, key=70, max_norm=10.0)
  params = {"w": jnp.ones((8, 8)), "b": jnp.zeros((8,))}
  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state):
    grads = jax.tree.map(jnp.ones_like, params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  history = []
  for _ in range(5):
    params, state = step(params, state)
    history.append(np.asarray(params["w"]))
  steps = np.diff(np.stack(history), axis=0)  # plain SGD on constant gradients: all -0.1
  assert not np.allclose(steps[0], steps[1])
  np.testing.assert_allclose(steps.mean(), -0.1, atol=0.01)


@pytest.mark.parametrize(
    "axis_type, noise_impl",
    [(AxisType.Auto, "hash"), (AxisType.Explicit, "hash"), (AxisType.Auto, "jax")],
)
def test_sharded_gradients_keep_sharding_and_generate_noise_per_shard(axis_type, noise_impl):
  if jax.device_count() != 8:
    pytest.skip("needs the 8 simulated CPU devices of conftest.py (XLA_FLAGS, JAX_PLATFORMS=cpu)")
  mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(axis_type,) * 2)
  grads = {"w": jnp.zeros((64, 32)), "b": jnp.zeros((32,), jnp.bfloat16)}
  shardings = {"w": NamedSharding(mesh, P("data", "model")), "b": NamedSharding(mesh, P("model"))}
  sharded = jax.device_put(grads, shardings)
  tx = optim.add_gradient_noise(1.0, key=80, noise_impl=noise_impl)
  update = jax.jit(tx.update)
  out, _ = update(sharded, tx.init(grads))
  unsharded, _ = update(grads, tx.init(grads))
  for name in grads:
    assert out[name].sharding == sharded[name].sharding, (name, out[name].sharding)
    np.testing.assert_array_equal(np.asarray(out[name], np.float32),
                                  np.asarray(unsharded[name], np.float32))
  hlo = update.lower(sharded, tx.init(grads)).compile().as_text()
  for collective in ("all-gather", "all-reduce", "all-to-all", "collective-permute"):
    assert collective not in hlo
  assert "[16,16]" in hlo and "[64,32]" not in hlo  # only the local shard is drawn


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(eta=-0.1, key=0), ValueError, "eta must be finite and >= 0"),
        (dict(eta=float("nan"), key=0), ValueError, "eta must be finite"),
        (dict(eta=float("inf"), key=0), ValueError, "eta must be finite"),
        (dict(eta=0.01, gamma=-0.55, key=0), ValueError, "gamma must be finite and >= 0"),
        (dict(eta=0.01, gamma=float("nan"), key=0), ValueError, "gamma must be finite"),
        (dict(eta=0.01), ValueError, "key is required"),
        (dict(eta=0.01, key=None), ValueError, "key is required"),
        (dict(eta=0.01, key="seed"), TypeError, "key must be a PRNG key"),
        (dict(eta=0.01, key=True), TypeError, "key must be a PRNG key"),
        (dict(eta=0.01, key=jnp.zeros(3)), TypeError, "key must be a PRNG key"),
        (dict(eta=jnp.ones(2), key=0), TypeError, "eta must be a non-negative scalar"),
        (dict(eta=0.01, gamma=lambda t: 0.5, key=0), TypeError, "gamma must be a non-negative"),
        (dict(eta=0.01, key=0, noise_impl="threefry"), ValueError,
         "Unknown noise_impl='threefry'"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
  with pytest.raises(error, match=match):
    optim.add_gradient_noise(**kwargs)


def test_batched_key_is_refused():
  with pytest.raises(ValueError, match="single PRNG key"):
    optim.add_gradient_noise(0.01, key=jax.random.split(jax.random.key(0), 2))


def test_negative_scheduled_variance_is_refused_eagerly():
  tx = optim.add_gradient_noise(lambda count: -0.1 + 0.0 * count, key=0)
  with pytest.raises(ValueError, match="eta gave the noise variance"):
    tx.update(jnp.zeros(3), tx.init(jnp.zeros(3)))


def test_integer_leaf_is_refused_with_its_path():
  tx = optim.add_gradient_noise(0.01, key=0)
  grads = {"w": jnp.zeros(3), "step": jnp.zeros((), jnp.int32)}
  with pytest.raises(TypeError, match=r"\['step'\].*optax.masked"):
    tx.update(grads, tx.init(grads))


def test_deprecated_impl_keyword_warns_and_gives_the_same_noise():
  grads = {"w": jnp.zeros((4, 3))}
  new = optim.add_gradient_noise(0.3, key=5, noise_impl="jax")
  with pytest.warns(DeprecationWarning, match=r"add_gradient_noise\(impl=\.\.\.\).*noise_impl="):
    old = optim.add_gradient_noise(0.3, key=5, impl="jax")
  want, _ = new.update(grads, new.init(grads))
  got, _ = old.update(grads, old.init(grads))
  chex.assert_trees_all_equal(got, want)
  with pytest.raises(TypeError, match="both impl= and its new name noise_impl="):
    optim.add_gradient_noise(0.3, key=5, impl="jax", noise_impl="jax")
