"""Noisy LSTM/GRU: pure steps and Linen cells/layers against float64 references and flax.

What every module class keeps in both frameworks (fresh noise per step, the missing
stream's error, deterministic runs, traced c, Linen = NNX) is in tests/test_contract.py.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import noisy_jax
import noisy_jax.nn
from noisy_jax import rnn
from noisy_jax._src import noise
from tests import _helpers
from tests import reference_rnn
from tests.residuals import saved_residuals

B, T, D, H = 3, 5, 4, 3
UnitNoise = rnn.UnitNoise
# The modules' defaults, the reference code's NSigmoidP and NTanhP.
_SIGMOID = UnitNoise("hard_sigmoid", "nah")
_TANH = UnitNoise("hard_tanh", "nan")


def _params(cell, seed=0, scale=1.5):
  """Random float32 parameters; ``scale`` makes many pre-activations saturate."""
  return _helpers.rnn_params(cell, D, H, seed, scale)


def _inputs(seed=1):
  return _helpers.inputs((B, T, D), seed)


def _step_draws(key, shapes):
  """One step's draws: ``key`` split once per noisy call, as lstm_step/gru_step do."""
  return [np.asarray(noise.standard_normal(k, s, jnp.float32), np.float64)
          for k, s in zip(jax.random.split(key, len(shapes)), shapes)]


def _draws(key, num_steps, shapes):
  """The library's per-step, per-call standard-normal draws for ``key`` (cloned)."""
  return [_step_draws(step_key, shapes)
          for step_key in jax.random.split(jax.random.clone(key), num_steps)]


_reference = _helpers.reference_sequence  # (cell, xs, params, draws, sigmoid, tanh, ...)
_DRAW_SHAPES = {"lstm": ((B, 3 * H), (B, H), (B, H)), "gru": ((B, 2 * H), (B, H))}
_LAYERS = {"lstm": noisy_jax.nn.NoisyLSTM, "gru": noisy_jax.nn.NoisyGRU}
_CELLS = {"lstm": noisy_jax.nn.NoisyLSTMCell, "gru": noisy_jax.nn.NoisyGRUCell}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("sigmoid_mode,tanh_mode", [("nah", "nan"), ("nanil", "nanis"),
                                                   ("nani", "nah")])
def test_noisy_sequence_matches_float64_loop_with_same_draws(cell, sigmoid_mode, tanh_mode):
  params, xs, key = _params(cell), _inputs(), jax.random.key(7)
  sigmoid = UnitNoise("hard_sigmoid", sigmoid_mode, c=0.8)
  tanh = UnitNoise("hard_tanh", tanh_mode, alpha=0.9)
  draws = _draws(key, T, _DRAW_SHAPES[cell])
  layer = _LAYERS[cell](H, sigmoid=sigmoid, tanh=tanh, return_carry=True)
  carry, ys = jax.jit(lambda p, x, k: layer.apply({"params": p}, x, rng=k))(params, xs, key)
  want_carry, want_ys = _reference(cell, xs, params, draws, sigmoid, tanh)
  np.testing.assert_allclose(ys, want_ys, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(jnp.stack(jax.tree.leaves(carry)),
                             np.stack(jax.tree.leaves(want_carry)), rtol=1e-4, atol=1e-5)
  # The noise matters: the expectation is a different trajectory.
  assert not np.allclose(ys, _reference(cell, xs, params, None, sigmoid, tanh)[1], atol=1e-3)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_deterministic_is_the_expectation_loop(cell):
  params, xs = _params(cell), _inputs()
  layer = _LAYERS[cell](H, deterministic=True)
  ys = layer.apply({"params": params}, xs)
  want = _reference(cell, xs, params, None, _SIGMOID, _TANH)[1]
  np.testing.assert_allclose(ys, want, rtol=1e-5, atol=1e-6)


def _hard_rnn(cell, xs, params):
  """The plain hard-sigmoid/hard-tanh RNN: the reference with every gate quiet."""
  return _reference(cell, xs, params, None, _SIGMOID, _TANH, noisy_gates=())[1]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_zero_c_unit_alpha_is_the_hard_gate_rnn(cell):
  params, xs = _params(cell), _inputs()
  layer = _LAYERS[cell](H, sigmoid=UnitNoise("hard_sigmoid", "nan", c=0.0, alpha=1.0),
                        tanh=UnitNoise("hard_tanh", "nan", c=0.0, alpha=1.0))
  ys = layer.apply({"params": params}, xs, rng=jax.random.key(0))  # noise on, but c = 0
  want = _hard_rnn(cell, xs, params)
  np.testing.assert_allclose(ys, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_layer_equals_the_cell_scanned_with_the_same_keys(cell):
  params, xs, key = _params(cell), _inputs(), jax.random.key(3)
  module = _CELLS[cell](H)
  step_keys = jax.random.split(jax.random.clone(key), T)

  @jax.jit
  def scan_cell(params, xs, step_keys):
    carry = module.initialize_carry(jax.random.key(0), xs[:, 0].shape)

    def body(carry, inputs):
      x_t, k_t = inputs
      return module.apply({"params": params}, carry, x_t, rng=k_t)

    return jax.lax.scan(body, carry, (jnp.swapaxes(xs, 0, 1), step_keys))

  want_carry, want_ys = scan_cell(params, xs, step_keys)
  layer = _LAYERS[cell](H, return_carry=True, unroll=2)
  carry, ys = jax.jit(lambda p, x, k: layer.apply({"params": p}, x, rng=k))(params, xs, key)
  np.testing.assert_allclose(ys, jnp.swapaxes(want_ys, 0, 1), rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               carry, want_carry)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_layer_gradients_equal_autodiff_through_the_steps(cell):
  # The layer's hand-written VJP against plain autodiff of lstm_step/gru_step
  # scanned with the same keys: parameters, initial carry and c, with padding.
  params, xs, key = _params(cell), 2.0 * _inputs(), jax.random.key(4)
  seq_lengths = jnp.array([T, 2, 4])
  weights_type = rnn.LSTMWeights if cell == "lstm" else rnn.GRUWeights
  step_fn = rnn.lstm_step if cell == "lstm" else rnn.gru_step
  sequence_fn = rnn.lstm_sequence if cell == "lstm" else rnn.gru_sequence
  h0 = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, (B, H)), jnp.float32)
  carry0 = (2.0 * h0, h0) if cell == "lstm" else h0

  def objective(carry, ys):
    return jnp.sum(ys ** 2) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(carry))

  def via_layer(params, carry0, c, key):
    sigmoid = UnitNoise("hard_sigmoid", "nah", c=c)
    carry, ys = sequence_fn(xs, weights_type(**params), key, initial_carry=carry0,
                            seq_lengths=seq_lengths, sigmoid=sigmoid)
    return objective(carry, ys)

  def via_steps(params, carry0, c, key):
    sigmoid = UnitNoise("hard_sigmoid", "nah", c=c)
    weights = weights_type(**params)
    x_proj = rnn.input_projection(xs, weights.input_kernel, weights.bias)

    def body(carry, inputs):
      x_proj_t, key_t, t = inputs
      new_carry, y = step_fn(carry, x_proj_t, weights, key_t, sigmoid=sigmoid)
      valid = (t < seq_lengths)[:, None]
      carry = jax.tree.map(lambda new, old: jnp.where(valid, new, old), new_carry, carry)
      return carry, jnp.where(valid, y, 0.0)

    carry, ys = jax.lax.scan(
        body, carry0, (jnp.swapaxes(x_proj, 0, 1), jax.random.split(key, T), jnp.arange(T)))
    return objective(carry, jnp.swapaxes(ys, 0, 1))

  grad = lambda fn, k: jax.jit(jax.grad(fn, argnums=(0, 1, 2)))(params, carry0,
                                                                jnp.float32(0.6), k)
  got, want = grad(via_layer, key), grad(via_steps, jax.random.clone(key))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5), got, want)
  assert float(got[2]) != 0.0  # c's own gradient is computed, not dropped


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("reverse,keep_order,time_major", [(False, False, False),
                                                           (True, False, False),
                                                           (True, True, True)])
def test_layer_equals_noisy_rnn_with_seq_lengths(cell, reverse, keep_order, time_major):
  params, xs = _params(cell, scale=0.5), _inputs()
  seq_lengths = jnp.array([T, 2, 4])
  kwargs = dict(return_carry=True, reverse=reverse, keep_order=keep_order,
                time_major=time_major)
  xs_in = jnp.swapaxes(xs, 0, 1) if time_major else xs
  rnn = noisy_jax.nn.noisy_rnn(_CELLS[cell](H, deterministic=True), **kwargs)
  want_carry, want_ys = rnn.apply({"params": {"cell": params}}, xs_in, seq_lengths=seq_lengths)
  layer = _LAYERS[cell](H, deterministic=True, **kwargs)
  carry, ys = layer.apply({"params": params}, xs_in, seq_lengths=seq_lengths)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               carry, want_carry)
  if time_major:
    ys, want_ys = jnp.swapaxes(ys, 0, 1), jnp.swapaxes(want_ys, 0, 1)
  # Padding stays at the end, reversed or not.
  valid = np.arange(T)[None, :] < np.asarray(seq_lengths)[:, None]
  np.testing.assert_allclose(np.asarray(ys)[valid], np.asarray(want_ys)[valid],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(ys)[~valid], 0.0)  # padded outputs are zero


def test_noisy_rnn_merges_split_rngs_and_kwargs():
  rnn = noisy_jax.nn.noisy_rnn(noisy_jax.nn.NoisyGRUCell(H), split_rngs={"dropout": True},
                               return_carry=True)
  assert rnn.split_rngs == {"params": False, "noise": True, "dropout": True}
  assert rnn.return_carry
  assert dict(noisy_jax.nn.RNN_SPLIT_RNGS) == {"params": False, "noise": True}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_backward_stores_no_noise(cell):
  params, xs = _params(cell), _inputs()

  def residuals(deterministic):
    layer = _LAYERS[cell](H, deterministic=deterministic)
    loss = lambda p, x: layer.apply({"params": p}, x, rng=jax.random.key(0)).sum()
    # The inputs themselves are kept alive anyway: count only computed residuals.
    return sorted(r[:2] for r in saved_residuals(loss, params, xs) if "argument" not in r[2])

  # The noisy layer keeps what the noise-free one keeps (pre-activations and states
  # per step) plus the raw data of the T step keys: the noise is regenerated.
  noisy, quiet = residuals(False), residuals(True)
  extra = list(noisy)
  for residual in quiet:
    extra.remove(residual)
  assert len(extra) == 1 and extra[0][0] == "u32" and extra[0][1][0] == T, extra
  floats_per_step = sum(np.prod(s[2:]) for d, s in noisy if d == "f32" and set(s[:2]) == {T, B})
  assert floats_per_step == (6 if cell == "lstm" else 5) * H


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradients_reach_every_parameter_and_are_finite(cell):
  params, xs = _params(cell), 3.0 * _inputs()
  if cell == "lstm":  # input and forget gates open, so |c| grows past 1 and saturates
    params["bias"] = params["bias"].at[: 2 * H].set(4.0)
  layer = _LAYERS[cell](H)
  loss = lambda p, k: jnp.sum(layer.apply({"params": p}, xs, rng=k) ** 2)
  grads = jax.jit(jax.grad(loss))(params, jax.random.key(0))
  for name, g in grads.items():
    assert np.all(np.isfinite(g)), name
    assert np.any(g != 0), name  # p gets a gradient through the noise scale (Eq. 9)


def test_quiet_gates_use_the_plain_activation():
  params, xs = _params("lstm"), _inputs()
  quiet = noisy_jax.nn.NoisyLSTM(H, noisy_gates=())
  ys = quiet.apply({"params": params}, xs)  # no key needed when nothing is noisy
  np.testing.assert_allclose(ys, _hard_rnn("lstm", xs, params), rtol=1e-5, atol=1e-6)


def test_cell_init_shapes_and_blockwise_orthogonal_recurrent_kernel():
  cell = noisy_jax.nn.NoisyLSTMCell(H)
  x = jnp.ones((B, D))
  carry = cell.initialize_carry(jax.random.key(0), x.shape)
  params = cell.init({"params": jax.random.key(1), "noise": jax.random.key(2)}, carry, x)["params"]
  assert jax.tree.map(jnp.shape, params) == rnn.weight_shapes("lstm", D, H)
  for block in jnp.split(params["recurrent_kernel"], 4, axis=-1):
    np.testing.assert_allclose(block.T @ block, np.eye(H), atol=1e-5)
  assert np.all(np.abs(params["p_gates"]) <= 1) and np.unique(params["p_gates"]).size == 3 * H
  assert [a.shape for a in carry] == [(B, H), (B, H)]


@pytest.mark.parametrize("build,error,match", [
    (lambda: noisy_jax.nn.NoisyLSTM(H).apply({"params": _params("lstm")}, jnp.ones((T, D)),
                                             rng=jax.random.key(0)),
     ValueError, "rank 3"),
    (lambda: noisy_jax.nn.NoisyGRU(H).apply({"params": _params("gru")}, jnp.ones((B, T, D + 1)),
                                            rng=jax.random.key(0)),
     ValueError, f"5 features but the layer's input_kernel expects {D}"),
    (lambda: noisy_jax.nn.NoisyLSTMCell(H).apply(
        {"params": _params("lstm")}, (jnp.zeros((B, H)),) * 2, jnp.ones((B, D + 2)),
        rng=jax.random.key(0)),
     ValueError, f"6 features but the cell's input_kernel expects {D}"),
    (lambda: noisy_jax.nn.NoisyLSTMCell(H).apply(
        {"params": _params("lstm")}, (jnp.zeros((B, H)),) * 2, jnp.float32(1.0),
        rng=jax.random.key(0)),
     ValueError, "shape \\(..., features\\)"),
    (lambda: noisy_jax.nn.NoisyLSTMCell(H).apply(
        {"params": _params("lstm")}, jnp.zeros((B, H)), jnp.ones((B, D)), rng=jax.random.key(0)),
     ValueError, "must be the tuple \\(cell, hidden\\)"),
    (lambda: noisy_jax.nn.NoisyGRUCell(H, sigmoid=UnitNoise("hard_sigmoid", "gaussian")).apply(
        {"params": _params("gru")}, jnp.zeros((B, H)), jnp.ones((B, D)), rng=jax.random.key(0)),
     ValueError, "Unknown sigmoid.mode='gaussian'"),
    (lambda: noisy_jax.nn.NoisyGRU(H, tanh=UnitNoise("hard_sigmoid", "nan")).apply(
        {"params": _params("gru")}, jnp.ones((B, T, D)), rng=jax.random.key(0)),
     ValueError, "Unknown tanh.kind='hard_sigmoid'"),
    (lambda: noisy_jax.nn.NoisyGRU(H, sigmoid="hard_sigmoid").apply(
        {"params": _params("gru")}, jnp.ones((B, T, D)), rng=jax.random.key(0)),
     TypeError, "sigmoid must be a noisy_jax.UnitNoise, got str"),
    (lambda: noisy_jax.nn.NoisyLSTM(H, noisy_gates=("forget", "reset")).apply(
        {"params": _params("lstm")}, jnp.ones((B, T, D)), rng=jax.random.key(0)),
     ValueError, "Unknown noisy_gates entry='reset'"),
    (lambda: noisy_jax.nn.NoisyLSTM(H, noisy_gates="forget").apply(
        {"params": _params("lstm")}, jnp.ones((B, T, D)), rng=jax.random.key(0)),
     TypeError, "sequence of gate names"),
    (lambda: noisy_jax.nn.NoisyLSTM(H, tanh=UnitNoise("hard_tanh", "nan", c=-1.0)).apply(
        {"params": _params("lstm")}, jnp.ones((B, T, D)), rng=jax.random.key(0)),
     ValueError, "^tanh.c must be finite and >= 0"),
    (lambda: noisy_jax.nn.NoisyLSTM(H).apply(
        {"params": _params("lstm")}, jnp.ones((B, T, D), jnp.int32), rng=jax.random.key(0)),
     TypeError, "inputs must be a floating-point array"),
    (lambda: noisy_jax.nn.NoisyGRU(H).apply(
        {"params": _params("gru")}, jnp.ones((B, T, D)), seq_lengths=jnp.ones((B, 1), jnp.int32),
        rng=jax.random.key(0)),
     ValueError, "seq_lengths must be an integer array of shape"),
    (lambda: rnn.lstm_sequence(jnp.ones((B, T, D)), rnn.LSTMWeights(**_params("lstm"))),
     ValueError, "key is required when deterministic=False"),
])
def test_bad_input_raises_clear_errors(build, error, match):
  with pytest.raises(error, match=match):
    build()


def test_vmap_over_keys_is_stacking_the_per_key_runs():
  # Several seeds at once (DESIGN.md): vmapping the layer over noise keys, with the
  # key-reuse checker on, equals running each key alone.
  params, xs = _params("gru"), _inputs()
  layer = noisy_jax.nn.NoisyGRU(H)
  run = jax.jit(lambda k: layer.apply({"params": params}, xs, rng=k))
  keys = jax.random.split(jax.random.key(8), 2)
  batched = jax.jit(jax.vmap(run))(jax.random.clone(keys))
  for i in range(2):
    np.testing.assert_allclose(batched[i], run(jax.random.clone(keys[i])), rtol=1e-6, atol=1e-7)
  assert not np.allclose(batched[0], batched[1])


def test_a_cell_stepped_by_hand_in_a_module_draws_new_noise_per_call():
  # A controller that steps the cell by hand, as an NTM does: the noise stream is
  # visible, and each call of make_rng gives a new key.
  class Controller(nn.Module):

    @nn.compact
    def __call__(self, carry, x):
      return noisy_jax.nn.NoisyLSTMCell(H, noisy_gates=("output",),
                                        sigmoid=UnitNoise("hard_sigmoid", "nah", c=5.0))(carry, x)

  controller = Controller()
  carry = (jnp.zeros((B, H)),) * 2
  x = jnp.zeros((B, D))
  params, _ = _helpers.memoryless("lstm", _params("lstm"))
  variables = {"params": {"NoisyLSTMCell_0": params}}
  apply = jax.jit(controller.apply)
  outs = [apply(variables, carry, x, rngs={"noise": k})[1]
          for k in jax.random.split(jax.random.key(2), 2)]
  assert not np.allclose(outs[0], outs[1])


# Float64: the pure steps and sequences against tests/reference_rnn.py, fed the
# library's own draws, for every kind of noisy_gates subset. Saturating
# pre-activations, c = 3 and alpha != 1 make each noisy gate change the numbers, so
# noise on the wrong gates (or a gate missing its noise) cannot pass.

_SIGMOID64 = UnitNoise("hard_sigmoid", "nah", c=3.0, alpha=0.9)
_TANH64 = UnitNoise("hard_tanh", "nan", c=3.0, alpha=1.2)
_ALL_GATES = {"lstm": rnn.LSTM_GATES, "gru": rnn.GRU_GATES}
_WEIGHTS = {"lstm": rnn.LSTMWeights, "gru": rnn.GRUWeights}
_STEPS = {"lstm": rnn.lstm_step, "gru": rnn.gru_step}
_SEQUENCES = {"lstm": rnn.lstm_sequence, "gru": rnn.gru_sequence}
_REFERENCE_STEPS = {"lstm": reference_rnn.lstm_step, "gru": reference_rnn.gru_step}


def _subset_params(*cells):
  """None, all, each gate alone, each gate left out: ``pytest.param(cell, gates)``."""
  cases = []
  for cell in cells:
    gates = _ALL_GATES[cell]
    subsets = [(), gates, *((g,) for g in gates),
               *(tuple(other for other in gates if other != g) for g in gates)]
    cases += [pytest.param(cell, s, id=f"{cell}-{'+'.join(s) or 'none'}") for s in subsets]
  return cases


def _problem64(cell, seed=10):
  """NumPy float64 parameters, inputs and initial carry; many gates saturate.

  Noise acts only where a unit saturates (Eq. 9: sigma = 0 where Delta = 0), so the
  weights, the initial cell state and |p| are large.
  """
  rng = np.random.default_rng(seed)
  params = {}
  for name, shape in rnn.weight_shapes(cell, D, H).items():
    if name.startswith("p_"):
      params[name] = rng.choice([-1.0, 1.0], shape) * rng.uniform(1.0, 3.0, shape)
    else:
      params[name] = rng.uniform(-2.0, 2.0, shape)
  xs = 1.5 * rng.normal(size=(B, T, D))
  h0 = rng.uniform(-1.0, 1.0, (B, H))
  carry0 = (rng.uniform(-3.0, 3.0, (B, H)), h0) if cell == "lstm" else h0
  return params, xs, carry0


def _assert_noise_matters(reference_fn, draws, noisy_gates):
  """The reference with these draws differs from the same gates with zero noise."""
  if not noisy_gates:
    return
  quiet = reference_fn(jax.tree.map(np.zeros_like, draws))
  noisy = reference_fn(draws)
  assert not all(np.allclose(a, b, atol=1e-3)
                 for a, b in zip(jax.tree.leaves(noisy), jax.tree.leaves(quiet)))


def _to_jax(tree):
  return jax.tree.map(jnp.asarray, tree)


@pytest.mark.parametrize("cell,noisy_gates", _subset_params("lstm", "gru"))
def test_step_matches_float64_reference_for_noisy_gate_subsets(cell, noisy_gates):
  params, xs, carry0 = _problem64(cell)
  key = jax.random.key(21)
  draws = _step_draws(jax.random.clone(key), _DRAW_SHAPES[cell])
  with jax.enable_x64(True):
    weights = _WEIGHTS[cell](**_to_jax(params))
    x_proj = rnn.input_projection(jnp.asarray(xs[:, 0]), weights.input_kernel, weights.bias)
    carry, y = _STEPS[cell](_to_jax(carry0), x_proj, weights, key, sigmoid=_SIGMOID64,
                            tanh=_TANH64, noisy_gates=noisy_gates)
  assert y.dtype == jnp.float64
  reference_fn = lambda draws: _REFERENCE_STEPS[cell](
      carry0, xs[:, 0], params, draws, _SIGMOID64, _TANH64, noisy_gates)
  want = reference_fn(draws)
  for got_leaf, want_leaf in zip(jax.tree.leaves(carry), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(got_leaf, want_leaf, rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(y, jax.tree.leaves(want)[-1], rtol=1e-10, atol=1e-12)
  _assert_noise_matters(reference_fn, draws, noisy_gates)


def _sequence64(cell, params, xs, carry0, key, noisy_gates):
  """lstm_sequence/gru_sequence in float64 (hand-written VJP); ``(carry, ys)``."""
  return _SEQUENCES[cell](xs, _WEIGHTS[cell](**params), key, initial_carry=carry0,
                          sigmoid=_SIGMOID64, tanh=_TANH64, noisy_gates=noisy_gates)


def _reference_sequence64(cell, params, xs, carry0, draws, noisy_gates):
  fn = reference_rnn.lstm_sequence if cell == "lstm" else reference_rnn.gru_sequence
  return fn(xs, params, draws, _SIGMOID64, _TANH64, noisy_gates, carry0)


@pytest.mark.parametrize("cell,noisy_gates", _subset_params("lstm", "gru"))
def test_sequence_matches_float64_reference_for_noisy_gate_subsets(cell, noisy_gates):
  params, xs, carry0 = _problem64(cell)
  key = jax.random.key(22)
  draws = _draws(key, T, _DRAW_SHAPES[cell])
  with jax.enable_x64(True):
    carry, ys = _sequence64(cell, _to_jax(params), jnp.asarray(xs), _to_jax(carry0), key,
                            noisy_gates)
  assert ys.dtype == jnp.float64
  reference_fn = lambda draws: _reference_sequence64(cell, params, xs, carry0, draws,
                                                     noisy_gates)
  want_carry, want_ys = reference_fn(draws)
  np.testing.assert_allclose(ys, want_ys, rtol=1e-10, atol=1e-12)
  for got_leaf, want_leaf in zip(jax.tree.leaves(carry), jax.tree.leaves(want_carry),
                                 strict=True):
    np.testing.assert_allclose(got_leaf, want_leaf, rtol=1e-10, atol=1e-12)
  _assert_noise_matters(reference_fn, draws, noisy_gates)


@pytest.mark.parametrize("cell,noisy_gates", [
    ("lstm", ("forget",)), ("lstm", ("input", "forget", "output", "cell")),
    ("gru", ("reset",)), ("gru", ("update", "candidate")),
])
def test_sequence_gradients_match_finite_differences_of_the_reference(cell, noisy_gates):
  # The hand-written VJP of the whole sequence against central differences of the
  # float64 reference, with the same draws, along one random direction per argument.
  params, xs, carry0 = _problem64(cell)
  key = jax.random.key(23)
  draws = _draws(key, T, _DRAW_SHAPES[cell])
  rng = np.random.default_rng(24)
  readout_ys = rng.normal(size=(B, T, H))
  readout_carry = jax.tree.map(lambda a: rng.normal(size=a.shape), carry0)

  def objective(carry, ys, sum_fn):
    return sum_fn(ys * readout_ys) + sum(
        sum_fn(leaf * r) for leaf, r in zip(jax.tree.leaves(carry),
                                            jax.tree.leaves(readout_carry)))

  def library_loss(args, key):
    xs, params, carry0 = args
    return objective(*_sequence64(cell, params, xs, carry0, key, noisy_gates), jnp.sum)

  def reference_loss(args):
    xs, params, carry0 = args
    return objective(*_reference_sequence64(cell, params, xs, carry0, draws, noisy_gates),
                     np.sum)

  args = (xs, params, carry0)
  with jax.enable_x64(True):
    grads = jax.jit(jax.grad(library_loss))(_to_jax(args), key)
  leaves, treedef = jax.tree.flatten(args)
  names = [("inputs", "params", "initial_carry")[path[0].idx] + jax.tree_util.keystr(path[1:])
           for path, _ in jax.tree_util.tree_flatten_with_path(args)[0]]
  eps = 1e-6
  for k, (leaf, grad, name) in enumerate(zip(leaves, jax.tree.leaves(grads), names,
                                             strict=True)):
    direction = rng.normal(size=leaf.shape)

    def shifted(step):
      moved = list(leaves)
      moved[k] = leaf + step * direction
      return reference_loss(jax.tree.unflatten(treedef, moved))

    want = (shifted(eps) - shifted(-eps)) / (2 * eps)
    np.testing.assert_allclose(np.vdot(np.asarray(grad), direction), want, rtol=1e-6,
                               atol=1e-8, err_msg=name)


# The plain path (noisy_gates=(), the smooth kinds) is flax's cell under a parameter
# mapping: flax's per-gate blocks into the fused layout of noisy_jax.rnn.


def _from_linen_flax(cell, flax_params):
  """nn.LSTMCell/nn.OptimizedLSTMCell (ii..io without bias, hi..ho with) or nn.GRUCell
  (ir, iz, in with bias; hr, hz without; hn with b_hn) parameters, fused."""
  p = jax.tree.map(np.asarray, flax_params)
  if cell == "lstm":
    return _helpers.fused_lstm({g: (p[f"i{g}"]["kernel"], p[f"h{g}"]["kernel"],
                                    p[f"h{g}"]["bias"]) for g in "ifgo"})
  return _helpers.fused_gru({g: (p[f"i{g}"]["kernel"], p[f"h{g}"]["kernel"],
                                 p[f"i{g}"]["bias"]) for g in "rzn"}, p["hn"]["bias"])


@pytest.mark.parametrize("cell,flax_cell", [("lstm", nn.LSTMCell),
                                            ("lstm", nn.OptimizedLSTMCell),
                                            ("gru", nn.GRUCell)],
                         ids=["LSTMCell", "OptimizedLSTMCell", "GRUCell"])
def test_plain_cell_and_layer_equal_the_linen_flax_cell(cell, flax_cell):
  with jax.enable_x64(True):
    xs, carry0 = _helpers.problem_for_flax(cell, B, T, D, H)
    theirs = flax_cell(H, param_dtype=jnp.float64)
    # Every parameter random, biases (b_hn included) too, so that each block's
    # mapping is checked; drawn by NumPy, without compiling flax's initialisers.
    shapes = jax.eval_shape(theirs.init, jax.random.key(31), carry0, xs[:, 0])["params"]
    rng = np.random.default_rng(31)
    flax_params = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape)), shapes)
    params = _from_linen_flax(cell, flax_params)
    ours = _CELLS[cell](H, **_helpers.PLAIN)
    want_carry = got_carry = carry0
    for t in range(3):
      want_carry, want = theirs.apply({"params": flax_params}, want_carry, xs[:, t])
      got_carry, got = ours.apply({"params": params}, got_carry, xs[:, t])
      assert got.dtype == jnp.float64
      np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"step {t}")
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12),
                   got_carry, want_carry)
    # The whole-sequence layer against nn.RNN over the flax cell.
    rnn = nn.RNN(theirs, return_carry=True)
    want_carry, want_ys = rnn.apply({"params": {"cell": flax_params}}, xs,
                                    initial_carry=carry0)
    layer = _LAYERS[cell](H, return_carry=True, **_helpers.PLAIN)
    got_carry, got_ys = layer.apply({"params": params}, xs, initial_carry=carry0)
  np.testing.assert_allclose(got_ys, want_ys, rtol=1e-12, atol=1e-12)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12),
               got_carry, want_carry)
