"""The whole-sequence layers draw the noise their cells draw under nn.RNN / nnx.RNN.

With the same ``rngs`` (and the same parameters), swapping ``NoisyLSTM`` for
``noisy_rnn(NoisyLSTMCell(...))`` (Linen) or ``nnx.RNN(NoisyLSTMCell(...))`` (NNX)
must not change a training run: same outputs, carries and gradients at every call.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import noisy_jax.nn
import noisy_jax.nnx
from noisy_jax import rnn

B, T, D, H = 2, 4, 3, 4
_SEQ_LENGTHS = jnp.array([T, 2])
_LINEN = {"lstm": (noisy_jax.nn.NoisyLSTMCell, noisy_jax.nn.NoisyLSTM),
          "gru": (noisy_jax.nn.NoisyGRUCell, noisy_jax.nn.NoisyGRU)}
_NNX = {"lstm": (noisy_jax.nnx.NoisyLSTMCell, noisy_jax.nnx.NoisyLSTM),
        "gru": (noisy_jax.nnx.NoisyGRUCell, noisy_jax.nnx.NoisyGRU)}
# One noisy gate keeps the compiles short; its noise comes from the step key as
# all the others' do, so a different step key still changes the numbers.
_ONE_GATE = {"lstm": ("output",), "gru": ("candidate",)}
# Every option that changes which input a step sees: its key must follow.
_ORDER = dict(reverse=True, keep_order=True, time_major=True)
_TOL = dict(rtol=1e-5, atol=1e-6)
# Compiles about twice as fast on CPU; these tests compare numbers, not speed.
_FAST = {"xla_backend_optimization_level": 0}


def _params(cell, seed=0):
  """Large random weights: the units saturate, where the noise acts."""
  rng = np.random.default_rng(seed)
  return {name: jnp.asarray(rng.uniform(-3.0, 3.0, shape), jnp.float32)
          for name, shape in rnn.weight_shapes(cell, D, H).items()}


def _inputs(time_major=True):
  xs = np.random.default_rng(100).normal(size=(B, T, D)).astype(np.float32)
  return jnp.asarray(np.swapaxes(xs, 0, 1) if time_major else xs)


def _valid(time_major=True):
  """Mask of the valid outputs (nn.RNN leaves the padded ones unspecified)."""
  valid = np.arange(T)[None, :] < np.asarray(_SEQ_LENGTHS)[:, None]
  return (valid.T if time_major else valid)[..., None]


def _loss(carry, ys):
  return jnp.sum(jnp.where(_valid(), ys, 0.0) ** 2) + sum(
      jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(carry))


def _assert_same_call(got, want):
  """Same final carry and same outputs at the valid steps."""
  (carry, ys), (want_carry, want_ys) = got, want
  np.testing.assert_allclose(np.where(_valid(), ys, 0.0), np.where(_valid(), want_ys, 0.0),
                             **_TOL)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **_TOL), carry, want_carry)


def _assert_same_grads(got, want):
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), got, want)


class _Parent(nn.Module):
  """Holds the recurrence as its child ``"X"``: the layer, or the cell under noisy_rnn.

  It calls ``"X"`` twice, as a model that shares it would; each call draws its own noise.
  """

  cell: str
  use_layer: bool

  @nn.compact
  def __call__(self, xs):
    cell_type, layer_type = _LINEN[self.cell]
    fields = dict(noisy_gates=_ONE_GATE[self.cell])
    if self.use_layer:
      module = layer_type(H, return_carry=True, name="X", **fields, **_ORDER)
    else:  # parent=None: the cell is the RNN's child "cell", as documented
      module = noisy_jax.nn.noisy_rnn(cell_type(H, parent=None, **fields),
                                      return_carry=True, name="X", **_ORDER)
    return [module(xs, seq_lengths=_SEQ_LENGTHS) for _ in range(2)]


def _linen_run(cell, use_layer):
  """Jitted ``(params, key) -> ((loss, calls), gradients)`` of a :class:`_Parent`.

  The loss (and so the gradients) is the first call's; the second is forward only.
  """
  model = _Parent(cell, use_layer)

  def objective(params, key):
    calls = model.apply({"params": params}, _inputs(), rngs={"noise": key})
    return _loss(*calls[0]), calls

  return jax.jit(lambda params, key: jax.value_and_grad(objective, has_aux=True)(params, key),
                 compiler_options=_FAST)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_linen_layer_draws_the_noise_of_noisy_rnn(cell):
  # In a parent, at the same path "X", reversed, time-major and padded, called twice
  # in one apply: the same outputs and carries, and the same parameter gradients.
  params = _params(cell)
  (_, want), want_grads = _linen_run(cell, False)({"X": {"cell": params}}, jax.random.key(2))
  (_, got), got_grads = _linen_run(cell, True)({"X": params}, jax.random.key(2))
  for got_call, want_call in zip(got, want):
    _assert_same_call(got_call, want_call)
  _assert_same_grads(got_grads["X"], want_grads["X"]["cell"])
  assert not np.allclose(got[0][1], got[1][1], atol=1e-3)  # fresh noise per call


def test_linen_layer_has_the_cell_parameters_but_initialises_them_apart():
  # Documented: the same names and shapes (the key-drawing child has no variables),
  # but the same init key gives other values (each is drawn at its own path).
  xs = _inputs(time_major=False)
  init = lambda module: jax.jit(module.init, compiler_options=_FAST)(
      {"params": jax.random.key(0), "noise": jax.random.key(1)}, xs)
  fields = dict(noisy_gates=(), recurrent_kernel_init=nn.initializers.normal())  # no QR
  from_cell = init(noisy_jax.nn.noisy_rnn(noisy_jax.nn.NoisyGRUCell(H, **fields)))
  from_layer = init(noisy_jax.nn.NoisyGRU(H, **fields))
  assert set(from_layer) == {"params"}
  shapes = lambda tree: jax.tree.map(jnp.shape, tree)
  assert shapes(from_layer["params"]) == shapes(from_cell["params"]["cell"])
  assert not np.allclose(from_layer["params"]["input_kernel"],
                         from_cell["params"]["cell"]["input_kernel"])


def _nnx_calls(model, num_calls=2):
  """Successive jitted calls of ``model``, each ``((carry, outputs), gradients)``.

  As ``nnx.jit`` would, but through ``jax.jit`` for its ``compiler_options``: each
  call writes the model's new state (its advanced noise stream) back.
  """
  graphdef, _ = nnx.split(model)

  def call(state):
    model = nnx.merge(graphdef, state)

    def objective(model):
      out = model(_inputs(), seq_lengths=_SEQ_LENGTHS)
      return _loss(*out), out

    (_, out), grads = nnx.value_and_grad(objective, has_aux=True)(model)
    return out, grads, nnx.state(model)

  call = jax.jit(call, compiler_options=_FAST)
  calls = []
  for _ in range(num_calls):
    out, grads, state = call(nnx.state(model))
    nnx.update(model, state)
    calls.append((out, grads))
  return calls


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_nnx_layer_draws_the_noise_of_nnx_rnn(cell):
  # Built from the same seeds: the same parameters; reversed, time-major and padded,
  # two successive calls give the same outputs, carries and parameter gradients, and
  # the two noise streams advance alike.
  cell_type, layer_type = _NNX[cell]
  fields = dict(noisy_gates=_ONE_GATE[cell])
  scanned = nnx.RNN(cell_type(D, H, rngs=nnx.Rngs(params=0, noise=1), **fields),
                    return_carry=True, **_ORDER)
  layer = layer_type(D, H, rngs=nnx.Rngs(params=0, noise=1), return_carry=True, **fields,
                     **_ORDER)
  for name in rnn.weight_shapes(cell, D, H):
    np.testing.assert_array_equal(getattr(layer, name)[...], getattr(scanned.cell, name)[...])
    for model in (layer, scanned.cell):  # saturate the units, where the noise acts
      getattr(model, name)[...] = 3.0 * getattr(model, name)[...]

  want, got = _nnx_calls(scanned), _nnx_calls(layer)
  for (got_out, got_grads), (want_out, want_grads) in zip(got, want):
    _assert_same_call(got_out, want_out)
    for name in rnn.weight_shapes(cell, D, H):
      np.testing.assert_allclose(got_grads[name][...], want_grads["cell"][name][...],
                                 rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(layer.rngs.count[...], scanned.cell.rngs.count[...])
  assert not np.allclose(got[0][0][1], got[1][0][1], atol=1e-3)  # fresh noise per call


def test_explicit_step_keys_are_used_as_given():
  # A (T,) key array is one key per step: split(key, T) reproduces the single key.
  weights = rnn.GRUWeights(**_params("gru"))
  xs, key = _inputs(time_major=False), jax.random.key(3)
  run = jax.jit(lambda k: rnn.gru_sequence(xs, weights, k, noisy_gates=("candidate",)),
                compiler_options=_FAST)
  _, want = run(key)
  _, got = run(jax.random.split(jax.random.clone(key), T))
  np.testing.assert_array_equal(got, want)
  with pytest.raises(ValueError, match=r"one key per step, of shape \(4,\)"):
    run(jax.random.split(jax.random.key(4), T + 1))
