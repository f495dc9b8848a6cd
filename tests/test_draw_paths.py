"""The layers' fast noise paths give the public function's numbers, and draw each element twice.

The layers draw from seed words computed ahead (``noise.stream_seeds``), from draws
generated before a loop, or through a conditional that XLA cannot fuse
(``activations.noisy_unit``); each must equal ``noisy_activation`` with the key.
A training step must hold at most two generators per noise stream (forward and
backward) in the whole-sequence layers, and at most four (two passes, two
branches of the conditional) in a single step, counted in the compiled program:
before this was checked, XLA:CPU fused 13 copies into one LSTM step's backward pass.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import noisy_jax
import noisy_jax.nn
from noisy_jax._src import activations
from noisy_jax._src import noise
from noisy_jax._src import rnn

# The second lowbias32 multiplier: one per copy of the generator in compiled code.
_GENERATOR_MARK = str(noise._MIX_MULTIPLIERS[1])
B, T, D, H = 3, 6, 4, 5


def test_stream_seeds_are_the_seed_words_of_the_split_keys():
  got = noise.stream_seeds(jax.random.split(jax.random.key(0), 4), 3)
  assert got.shape == (4, 3, 2) and got.dtype == jnp.uint32
  keys = jax.random.split(jax.random.key(0), 4)  # the same keys again (key reuse is checked)
  for t in range(4):
    for i, k in enumerate(jax.random.split(keys[t], 3)):
      np.testing.assert_array_equal(got[t, i], noise.seed_words(k))


@pytest.mark.parametrize("mode", activations.MODES)
@pytest.mark.parametrize("kind", ["hard_tanh", "hard_sigmoid"])
def test_noisy_unit_from_seed_draw_or_conditional_equals_noisy_activation(mode, kind):
  x = 3.0 * jax.random.normal(jax.random.key(1), (7, 9))
  p = jax.random.uniform(jax.random.key(2), (9,), minval=-1.0, maxval=1.0)
  unit = noisy_jax.UnitNoise(kind, mode)
  want = noisy_jax.noisy_activation(x, jax.random.key(3), p, mode=mode, kind=kind)
  seed = noise.seed_words(jax.random.key(3))
  draw = noise.standard_normal(jax.random.key(3), x.shape)
  for given, materialize in ((seed, False), (seed, True), (draw, False)):
    got = jax.jit(lambda x, p, g: activations.noisy_unit(x, g, p, unit,
                                                         materialize=materialize))(x, p, given)
    np.testing.assert_array_equal(got, want)


def _generators(fn, *args) -> int:
  return jax.jit(fn).lower(*args).compile().as_text().count(_GENERATOR_MARK)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="counts XLA:CPU's fusions")
@pytest.mark.parametrize("cls", [noisy_jax.nn.NoisyLSTM, noisy_jax.nn.NoisyGRU])
@pytest.mark.parametrize("padded", [False, True])
def test_a_layers_training_step_draws_each_stream_at_most_twice(cls, padded):
  layer = cls(H)
  x = jnp.ones((B, T, D))
  lengths = jnp.array([T, 2, 4]) if padded else None
  params = layer.init({"params": jax.random.key(0), "noise": jax.random.key(1)}, x)
  loss = lambda v, k: jnp.sum(layer.apply(v, x, seq_lengths=lengths, rng=k) ** 2)
  streams = rnn.cell_spec(layer._spec).num_streams
  # With padding the forward draws through the conditional: two branches per stream.
  per_stream = 3 if padded else 2
  grad = jax.vmap(jax.grad(loss), in_axes=(None, 0))  # several runs, as the runner trains
  keys = jax.random.split(jax.random.key(2), 2)
  assert 0 < _generators(grad, params, keys) <= per_stream * streams


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="counts XLA:CPU's fusions")
@pytest.mark.parametrize("seeds", [None, 3])
def test_a_cells_training_step_draws_each_stream_once_per_pass(seeds):
  model = noisy_jax.nn.noisy_rnn(noisy_jax.nn.NoisyLSTMCell(H))
  x = jnp.ones((B, T, D))
  params = model.init({"params": jax.random.key(0), "noise": jax.random.key(1)}, x)
  loss = lambda v, k: jnp.sum(model.apply(v, x, rngs={"noise": k}) ** 2)
  grad, key = jax.grad(loss), jax.random.key(2)
  if seeds is not None:  # several runs at once, as the experiment runner trains seeds
    grad, key = jax.vmap(grad, in_axes=(None, 0)), jax.random.split(key, seeds)
  # Two passes (forward, remat) x two branches of the conditional, per stream.
  assert 0 < _generators(grad, params, key) <= 4 * rnn.LSTM.num_streams


@pytest.mark.parametrize("deterministic", [False, True])
def test_step_without_remat_gives_the_same_numbers(deterministic):
  shapes = noisy_jax.rnn.weight_shapes("lstm", D, H)
  keys = iter(jax.random.split(jax.random.key(5), len(shapes)))
  weights = noisy_jax.rnn.LSTMWeights(
      *(jax.random.normal(next(keys), s) for s in shapes.values()))
  carry = (jnp.ones((B, H)), jnp.ones((B, H)))
  x_proj = noisy_jax.rnn.input_projection(jnp.ones((B, D)), weights.input_kernel, weights.bias)

  def loss(weights, remat):
    key = None if deterministic else jax.random.key(6)
    (cell, hidden), _ = noisy_jax.rnn.lstm_step(carry, x_proj, weights, key, remat=remat,
                                                deterministic=deterministic)
    return jnp.sum(cell ** 2) + jnp.sum(hidden ** 2)

  with_remat = jax.jit(jax.value_and_grad(lambda w: loss(w, True)))(weights)
  without = jax.jit(jax.value_and_grad(lambda w: loss(w, False)))(weights)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6),
               with_remat, without)
