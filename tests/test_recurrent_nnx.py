"""NNX noisy recurrent cells and layers: as nnx.RNN, flax's own cells and the expectation.

What every module class keeps in both frameworks (fresh noise per step and per call,
the missing stream's error, deterministic runs, annealing c without retracing,
Linen = NNX to the bit) is in tests/test_contract.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import noisy_jax
import noisy_jax.nnx
from noisy_jax import rnn
from tests import _helpers

B, T, D, H = 3, 5, 4, 3
UnitNoise = rnn.UnitNoise
_NNX_CELLS = {"lstm": noisy_jax.nnx.NoisyLSTMCell, "gru": noisy_jax.nnx.NoisyGRUCell}
_NNX_LAYERS = {"lstm": noisy_jax.nnx.NoisyLSTM, "gru": noisy_jax.nnx.NoisyGRU}
_load = _helpers.load_params


def _params(cell, seed=0, scale=1.5):
  return _helpers.rnn_params(cell, D, H, seed, scale)


def _inputs():
  return _helpers.inputs((B, T, D))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_nnx_layer_equals_the_cell_under_nnx_rnn(cell):
  params, xs = _params(cell, scale=0.5), _inputs()
  seq_lengths = jnp.array([2, T, 4])
  scanned = nnx.RNN(_load(_NNX_CELLS[cell](D, H, deterministic=True, rngs=nnx.Rngs(0)),
                          params), return_carry=True)
  layer = _load(_NNX_LAYERS[cell](D, H, deterministic=True, return_carry=True,
                                  rngs=nnx.Rngs(0)), params)
  want_carry, want = scanned(xs, seq_lengths=seq_lengths)
  got_carry, got = layer(xs, seq_lengths=seq_lengths)
  valid = np.arange(T)[None, :] < np.asarray(seq_lengths)[:, None]
  np.testing.assert_allclose(np.asarray(got)[valid], np.asarray(want)[valid], rtol=1e-5,
                             atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               got_carry, want_carry)


def test_c_and_alpha_are_noise_scale_state_not_params():
  # Why annealing them does not retrace (tests/test_contract.py) and why an optimizer
  # over nnx.Param leaves them alone.
  model = noisy_jax.nnx.NoisyLSTM(D, H, tanh=UnitNoise("hard_tanh", "nan", c=0.25),
                                  rngs=nnx.Rngs(0), **_helpers.ZERO_INIT)
  assert set(nnx.state(model, nnx.Param)) == set(rnn.weight_shapes("lstm", D, H))
  scales = nnx.state(model, noisy_jax.nnx.NoiseScale)
  assert set(scales) == {"sigmoid", "tanh"} and len(jax.tree.leaves(scales)) == 4
  for unit, (c, alpha) in {"sigmoid": (0.15, 1.1), "tanh": (0.25, 1.15)}.items():
    assert isinstance(getattr(model, unit).c, noisy_jax.nnx.NoiseScale)
    assert isinstance(getattr(model, unit).alpha, noisy_jax.nnx.NoiseScale)
    np.testing.assert_allclose(getattr(model, unit).c[...], c)  # None: the reference default
    np.testing.assert_allclose(getattr(model, unit).alpha[...], alpha)
  model.tanh.c[...] = 0.5  # the documented way to anneal: in place, keeping the dtype
  assert model.tanh.c[...].dtype == jnp.float32 and float(model.tanh.c[...]) == 0.5


def test_eval_mode_is_the_expectation():
  params, xs = _params("gru"), _inputs()
  model = _load(noisy_jax.nnx.NoisyGRU(D, H, rngs=nnx.Rngs(0)), params)
  model.eval()
  want = _helpers.reference_sequence("gru", xs, params, None, UnitNoise("hard_sigmoid", "nah"),
                                     UnitNoise("hard_tanh", "nan"))[1]
  np.testing.assert_allclose(model(xs), want, rtol=1e-5, atol=1e-6)
  noisy = nnx.view(model, deterministic=False)
  np.testing.assert_array_equal(noisy(xs, deterministic=True), model(xs))
  assert not np.allclose(noisy(xs), model(xs))  # the view switches the noise back on


def test_nnx_training_step_updates_params_and_keeps_c():
  model = noisy_jax.nnx.NoisyLSTM(D, H, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
  xs = 3.0 * _inputs()

  @nnx.jit
  def step(model, optimizer, xs):
    loss, grads = nnx.value_and_grad(lambda m: jnp.mean(m(xs) ** 2))(model)
    optimizer.update(model, grads)
    return loss

  before = model.p_gates[...]
  losses = [step(model, optimizer, xs) for _ in range(3)]
  assert np.all(np.isfinite(losses))
  assert not np.allclose(model.p_gates[...], before)  # p is learned
  assert float(model.tanh.c[...]) == 0.5  # c is not


def test_bad_input_raises_clear_errors():
  layer = noisy_jax.nnx.NoisyGRU(D, H, rngs=nnx.Rngs(0), **_helpers.ZERO_INIT)
  with pytest.raises(ValueError, match="rank 3"):
    layer(jnp.ones((T, D)))
  with pytest.raises(ValueError, match=f"{D + 1} features but the layer's input_kernel"):
    layer(jnp.ones((B, T, D + 1)))
  with pytest.raises(ValueError, match="Unknown tanh.mode='nanx'"):
    noisy_jax.nnx.NoisyGRUCell(D, H, tanh=UnitNoise("hard_tanh", "nanx"), rngs=nnx.Rngs(0))
  with pytest.raises(TypeError, match="tanh must be a noisy_jax.UnitNoise, got dict"):
    noisy_jax.nnx.NoisyGRUCell(D, H, tanh={"c": 0.5}, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="set_noise_scale found no noisy module"):
    noisy_jax.nnx.set_noise_scale(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), 1.0)
  with pytest.raises(ValueError, match="Unknown kinds entry='gates'"):
    noisy_jax.nnx.set_noise_scale(layer, 1.0, kinds=("gates",))
  with pytest.raises(ValueError, match=r"c must be finite and >= 0.*got c=-1.0"):
    noisy_jax.nnx.set_noise_scale(layer, -1.0)
  with pytest.raises(ValueError, match=r"^tanh.c must be finite and >= 0.*got tanh.c=nan"):
    noisy_jax.nnx.NoisyGRUCell(D, H, tanh=UnitNoise("hard_tanh", "nan", c=float("nan")),
                               rngs=nnx.Rngs(0))


def _from_nnx_flax(cell, module):
  """nnx.LSTMCell (ii, if_, ig, io; hi..ho with the bias), nnx.OptimizedLSTMCell (fused
  blocks [i, f, g, o], the bias on dense_h) or nnx.GRUCell (fused blocks [r, z, n],
  the bias on dense_i; no b_hn, so recurrent_bias = 0) parameters, in noisy_jax's layout."""
  value = lambda variable: np.asarray(variable[...])
  if isinstance(module, nnx.LSTMCell):
    inputs = {"i": module.ii, "f": module.if_, "g": module.ig, "o": module.io}
    hidden = {"i": module.hi, "f": module.hf, "g": module.hg, "o": module.ho}
    return _helpers.fused_lstm({g: (value(inputs[g].kernel), value(hidden[g].kernel),
                                    value(hidden[g].bias)) for g in "ifgo"})
  names = "ifgo" if cell == "lstm" else "rzn"
  blocks = lambda variable: dict(zip(names, np.split(value(variable), len(names), axis=-1)))
  kernel_i, kernel_h = blocks(module.dense_i.kernel), blocks(module.dense_h.kernel)
  if cell == "lstm":
    bias = blocks(module.dense_h.bias)
    return _helpers.fused_lstm({g: (kernel_i[g], kernel_h[g], bias[g]) for g in names})
  bias = blocks(module.dense_i.bias)
  return _helpers.fused_gru({g: (kernel_i[g], kernel_h[g], bias[g]) for g in names},
                            np.zeros(H))


# Parameters are loaded after construction: zeros skip compiling the initialisers.
_ZERO_INIT = {k: v for k, v in _helpers.ZERO_INIT.items() if k != "p_init"}


@pytest.mark.parametrize("cell,flax_cell", [("lstm", nnx.LSTMCell),
                                            ("lstm", nnx.OptimizedLSTMCell),
                                            ("gru", nnx.GRUCell)],
                         ids=["LSTMCell", "OptimizedLSTMCell", "GRUCell"])
def test_plain_nnx_cell_and_layer_equal_the_nnx_flax_cell(cell, flax_cell):
  with jax.enable_x64(True):
    xs, carry0 = _helpers.problem_for_flax(cell, B, T, D, H)
    theirs = flax_cell(D, H, param_dtype=jnp.float64, rngs=nnx.Rngs(32), **_ZERO_INIT)
    # Every parameter random, biases too, so that each block's mapping is checked.
    rng = np.random.default_rng(32)
    for _, node in nnx.iter_graph(theirs):
      if isinstance(node, nnx.Param):
        node[...] = jnp.asarray(rng.normal(size=node.shape))
    params = _from_nnx_flax(cell, theirs)
    ours = _load(_NNX_CELLS[cell](D, H, rngs=nnx.Rngs(0), p_init=_ZERO_INIT["bias_init"],
                                  **_ZERO_INIT, **_helpers.PLAIN), params)
    want_carry = got_carry = carry0
    for t in range(3):
      want_carry, want = theirs(want_carry, xs[:, t])
      got_carry, got = ours(got_carry, xs[:, t])
      assert got.dtype == jnp.float64
      np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"step {t}")
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12),
                   got_carry, want_carry)
    # The whole-sequence layer against nnx.RNN over the flax cell.
    want_carry, want_ys = nnx.RNN(theirs, return_carry=True)(xs, initial_carry=carry0)
    layer = _load(_NNX_LAYERS[cell](D, H, return_carry=True, rngs=nnx.Rngs(0),
                                    p_init=_ZERO_INIT["bias_init"], **_ZERO_INIT,
                                    **_helpers.PLAIN), params)
    got_carry, got_ys = layer(xs, initial_carry=carry0)
  np.testing.assert_allclose(got_ys, want_ys, rtol=1e-12, atol=1e-12)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12),
               got_carry, want_carry)
