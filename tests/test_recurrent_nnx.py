"""NNX noisy recurrent cells and layers: as Linen and flax, fresh noise under nnx.RNN."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import noisy_jax
import noisy_jax.nn
import noisy_jax.nnx
from tests import test_recurrent
from tests.test_recurrent import B, D, H, T

_NNX_CELLS = {"lstm": noisy_jax.nnx.NoisyLSTMCell, "gru": noisy_jax.nnx.NoisyGRUCell}
_NNX_LAYERS = {"lstm": noisy_jax.nnx.NoisyLSTM, "gru": noisy_jax.nnx.NoisyGRU}


def _load(module, params):
  for name, value in params.items():
    getattr(module, name)[...] = value
  return module


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_nnx_and_linen_cells_give_identical_outputs(cell):
  params, x = test_recurrent._params(cell), test_recurrent._inputs()[:, 0]
  kwargs = dict(sigmoid_mode="nan", tanh_mode="nah", tanh_c=2.0, sigmoid_alpha=0.95)
  linen_cell = test_recurrent._CELLS[cell](H, **kwargs)
  nnx_cell = _load(_NNX_CELLS[cell](D, H, rngs=nnx.Rngs(0), **kwargs), params)
  carry = nnx_cell.initialize_carry(x.shape)
  key = jax.random.key(5)
  want_carry, want = jax.jit(lambda p, c, x, k: linen_cell.apply({"params": p}, c, x, rng=k))(
      params, carry, x, jax.random.clone(key))
  got_carry, got = nnx.jit(lambda m, c, x, k: m(c, x, rngs=k))(nnx_cell, carry, x, key)
  # The same pure step on the same numbers: identical to the bit.
  np.testing.assert_array_equal(got, want)
  jax.tree.map(np.testing.assert_array_equal, got_carry, want_carry)
  _, deterministic = nnx.jit(lambda m, c, x: m(c, x, deterministic=True))(nnx_cell, carry, x)
  assert not np.allclose(deterministic, got)  # the key did add noise


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_nnx_and_linen_layers_give_identical_outputs(cell):
  params, xs = test_recurrent._params(cell), test_recurrent._inputs()
  seq_lengths = jnp.array([T, 3, 1])
  linen_layer = test_recurrent._LAYERS[cell](H, return_carry=True, reverse=True)
  nnx_layer = _load(_NNX_LAYERS[cell](D, H, return_carry=True, reverse=True,
                                      rngs=nnx.Rngs(0)), params)
  key = jax.random.key(9)
  want = jax.jit(lambda p, x, k: linen_layer.apply({"params": p}, x, seq_lengths=seq_lengths,
                                                   rng=k))(params, xs, jax.random.clone(key))
  got = nnx.jit(lambda m, x, k: m(x, seq_lengths=seq_lengths, rngs=k))(nnx_layer, xs, key)
  jax.tree.map(np.testing.assert_array_equal, got, want)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_nnx_rnn_draws_fresh_noise_at_every_step_and_every_call(cell):
  params, noisy_gates = test_recurrent._memoryless(cell)
  module = _NNX_CELLS[cell](D, H, noisy_gates=noisy_gates, sigmoid_c=5.0, tanh_c=5.0,
                            rngs=nnx.Rngs(params=0, noise=1))
  _load(module, params)
  rnn = nnx.RNN(module)  # no call-time rngs: the cell's own stream advances per step
  xs = jnp.zeros((B, 8, D))
  first, second = np.asarray(rnn(xs)), np.asarray(rnn(xs))
  assert len(np.unique(first[0, :, 0])) == 8, first[0, :, 0]
  assert len(np.unique(np.concatenate([first[0, :, 0], second[0, :, 0]]))) == 16


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_nnx_layer_equals_the_cell_under_nnx_rnn(cell):
  params, xs = test_recurrent._params(cell, scale=0.5), test_recurrent._inputs()
  seq_lengths = jnp.array([2, T, 4])
  rnn = nnx.RNN(_load(_NNX_CELLS[cell](D, H, deterministic=True, rngs=nnx.Rngs(0)), params),
                return_carry=True)
  layer = _load(_NNX_LAYERS[cell](D, H, deterministic=True, return_carry=True,
                                  rngs=nnx.Rngs(0)), params)
  want_carry, want = rnn(xs, seq_lengths=seq_lengths)
  got_carry, got = layer(xs, seq_lengths=seq_lengths)
  valid = np.arange(T)[None, :] < np.asarray(seq_lengths)[:, None]
  np.testing.assert_allclose(np.asarray(got)[valid], np.asarray(want)[valid], rtol=1e-5,
                             atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               got_carry, want_carry)


def test_annealing_c_in_nnx_jit_does_not_retrace():
  model = noisy_jax.nnx.NoisyLSTM(D, H, rngs=nnx.Rngs(0))
  xs = test_recurrent._inputs()

  @nnx.jit
  @chex.assert_max_traces(n=1)
  def forward(model, xs):
    return model(xs)

  schedule = noisy_jax.schedules.noise_annealing()
  outputs = []
  for t in (0, 2000, 10**6):
    noisy_jax.nnx.set_noise_scale(model, schedule(t))
    outputs.append(forward(model, xs))
  model.sigmoid_alpha[...] = 1.0  # alpha is state too
  outputs.append(forward(model, xs))
  assert float(model.tanh_c[...]) == float(schedule(10**6))
  assert not np.allclose(outputs[0], outputs[2], atol=1e-4)
  # c and alpha are not learned parameters.
  assert set(nnx.state(model, nnx.Param)) == set(test_recurrent.recurrent.weight_shapes(
      "lstm", D, H))
  assert len(jax.tree.leaves(nnx.state(model, noisy_jax.nnx.NoiseScale))) == 4


def test_eval_mode_is_the_expectation():
  params, xs = test_recurrent._params("gru"), test_recurrent._inputs()
  model = _load(noisy_jax.nnx.NoisyGRU(D, H, rngs=nnx.Rngs(0)), params)
  model.eval()
  want = test_recurrent._reference_gru(xs, params, None, test_recurrent.recurrent.SIGMOID_GATE,
                                       test_recurrent.recurrent.TANH_UNIT)[1]
  np.testing.assert_allclose(model(xs), want, rtol=1e-5, atol=1e-6)
  noisy = nnx.view(model, deterministic=False)
  np.testing.assert_array_equal(noisy(xs, deterministic=True), model(xs))
  assert not np.allclose(noisy(xs), model(xs))  # the view switches the noise back on


def test_nnx_training_step_updates_params_and_keeps_c():
  model = noisy_jax.nnx.NoisyLSTM(D, H, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
  xs = 3.0 * test_recurrent._inputs()

  @nnx.jit
  def step(model, optimizer, xs):
    loss, grads = nnx.value_and_grad(lambda m: jnp.mean(m(xs) ** 2))(model)
    optimizer.update(model, grads)
    return loss

  before = model.p_gates[...]
  losses = [step(model, optimizer, xs) for _ in range(3)]
  assert np.all(np.isfinite(losses))
  assert not np.allclose(model.p_gates[...], before)  # p is learned
  assert float(model.tanh_c[...]) == 0.5  # c is not


def test_missing_noise_stream_and_bad_input_raise_clear_errors():
  quiet = noisy_jax.nnx.NoisyLSTMCell(D, H, rngs=nnx.Rngs(params=0))
  carry = quiet.initialize_carry((B, D))
  with pytest.raises(ValueError, match="no 'noise' RNG stream.*nnx.Rngs"):
    quiet(carry, jnp.ones((B, D)))
  assert quiet(carry, jnp.ones((B, D)), deterministic=True)[1].shape == (B, H)
  layer = noisy_jax.nnx.NoisyGRU(D, H, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="rank 3"):
    layer(jnp.ones((T, D)))
  with pytest.raises(ValueError, match=f"{D + 1} features but the layer's input_kernel"):
    layer(jnp.ones((B, T, D + 1)))
  with pytest.raises(ValueError, match="Unknown tanh_mode='nanx'"):
    noisy_jax.nnx.NoisyGRUCell(D, H, tanh_mode="nanx", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="set_noise_scale found no noisy recurrent module"):
    noisy_jax.nnx.set_noise_scale(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), 1.0)
  with pytest.raises(ValueError, match="Unknown kinds entry='gates'"):
    noisy_jax.nnx.set_noise_scale(layer, 1.0, kinds=("gates",))
  with pytest.raises(ValueError, match=r"c must be finite and >= 0.*got c=-1.0"):
    noisy_jax.nnx.set_noise_scale(layer, -1.0)
  with pytest.raises(ValueError, match=r"tanh_c must be finite and >= 0.*got tanh_c=nan"):
    noisy_jax.nnx.NoisyGRUCell(D, H, tanh_c=float("nan"), rngs=nnx.Rngs(0))


def test_linen_cell_inside_a_module_and_nn_scan_pattern_for_ntm_style_controllers():
  # A controller that steps the cell by hand, as an NTM does: the noise stream is
  # visible, and each call of make_rng gives a new key.
  class Controller(nn.Module):

    @nn.compact
    def __call__(self, carry, x):
      return noisy_jax.nn.NoisyLSTMCell(H, noisy_gates=("output",), sigmoid_c=5.0)(carry, x)

  controller = Controller()
  carry = (jnp.zeros((B, H)),) * 2
  x = jnp.zeros((B, D))
  variables = {"params": {"NoisyLSTMCell_0": test_recurrent._memoryless("lstm")[0]}}
  outs = [controller.apply(variables, carry, x, rngs={"noise": k})[1]
          for k in jax.random.split(jax.random.key(2), 2)]
  assert not np.allclose(outs[0], outs[1])


def _from_nnx_flax(cell, module):
  """nnx.LSTMCell (ii, if_, ig, io; hi..ho with the bias), nnx.OptimizedLSTMCell (fused
  blocks [i, f, g, o], the bias on dense_h) or nnx.GRUCell (fused blocks [r, z, n],
  the bias on dense_i; no b_hn, so recurrent_bias = 0) parameters, in noisy_jax's layout."""
  value = lambda variable: np.asarray(variable[...])
  if isinstance(module, nnx.LSTMCell):
    inputs = {"i": module.ii, "f": module.if_, "g": module.ig, "o": module.io}
    hidden = {"i": module.hi, "f": module.hf, "g": module.hg, "o": module.ho}
    return test_recurrent._fused_lstm({g: (value(inputs[g].kernel), value(hidden[g].kernel),
                                           value(hidden[g].bias)) for g in "ifgo"})
  names = "ifgo" if cell == "lstm" else "rzn"
  blocks = lambda variable: dict(zip(names, np.split(value(variable), len(names), axis=-1)))
  kernel_i, kernel_h = blocks(module.dense_i.kernel), blocks(module.dense_h.kernel)
  if cell == "lstm":
    bias = blocks(module.dense_h.bias)
    return test_recurrent._fused_lstm({g: (kernel_i[g], kernel_h[g], bias[g]) for g in names})
  bias = blocks(module.dense_i.bias)
  return test_recurrent._fused_gru({g: (kernel_i[g], kernel_h[g], bias[g]) for g in names},
                                   np.zeros(H))


# Parameters are loaded after construction: zeros skip compiling the initialisers.
_ZERO_INIT = dict(kernel_init=nnx.initializers.zeros_init(),
                  recurrent_kernel_init=nnx.initializers.zeros_init(),
                  bias_init=nnx.initializers.zeros_init())


@pytest.mark.parametrize("cell,flax_cell", [("lstm", nnx.LSTMCell),
                                            ("lstm", nnx.OptimizedLSTMCell),
                                            ("gru", nnx.GRUCell)],
                         ids=["LSTMCell", "OptimizedLSTMCell", "GRUCell"])
def test_plain_nnx_cell_and_layer_equal_the_nnx_flax_cell(cell, flax_cell):
  with jax.enable_x64(True):
    xs, carry0 = test_recurrent._problem_for_flax(cell)
    theirs = flax_cell(D, H, param_dtype=jnp.float64, rngs=nnx.Rngs(32), **_ZERO_INIT)
    # Every parameter random, biases too, so that each block's mapping is checked.
    rng = np.random.default_rng(32)
    for _, node in nnx.iter_graph(theirs):
      if isinstance(node, nnx.Param):
        node[...] = jnp.asarray(rng.normal(size=node.shape))
    params = _from_nnx_flax(cell, theirs)
    ours = _load(_NNX_CELLS[cell](D, H, rngs=nnx.Rngs(0), p_init=_ZERO_INIT["bias_init"],
                                  **_ZERO_INIT, **test_recurrent._PLAIN), params)
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
                                    **test_recurrent._PLAIN), params)
    got_carry, got_ys = layer(xs, initial_carry=carry0)
  np.testing.assert_allclose(got_ys, want_ys, rtol=1e-12, atol=1e-12)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12),
               got_carry, want_carry)
