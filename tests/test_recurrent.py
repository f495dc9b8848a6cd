"""Noisy LSTM/GRU: pure steps and Linen cells/layers against float64 references and flax."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import noisy_jax
import noisy_jax.nn
from noisy_jax._src import noise
from noisy_jax._src import recurrent
from tests import reference_rnn
from tests.residuals import saved_residuals

B, T, D, H = 3, 5, 4, 3


def _params(cell, seed=0, scale=1.5):
  """Random float32 parameters; ``scale`` makes many pre-activations saturate."""
  rng = np.random.default_rng(seed)
  shapes = recurrent.weight_shapes(cell, D, H)
  params = {}
  for name, shape in shapes.items():
    low, high = (-1.0, 1.0) if name.startswith("p_") else (-scale, scale)
    params[name] = jnp.asarray(rng.uniform(low, high, shape), jnp.float32)
  return params


def _inputs(seed=1):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(B, T, D)), jnp.float32)


def _step_draws(key, shapes):
  """One step's draws: ``key`` split once per noisy call, as lstm_step/gru_step do."""
  return [np.asarray(noise.standard_normal(k, s, jnp.float32), np.float64)
          for k, s in zip(jax.random.split(key, len(shapes)), shapes)]


def _draws(key, num_steps, shapes):
  """The library's per-step, per-call standard-normal draws for ``key`` (cloned)."""
  return [_step_draws(step_key, shapes)
          for step_key in jax.random.split(jax.random.clone(key), num_steps)]


def _resolved(gate: recurrent.GateNoise) -> recurrent.GateNoise:
  """``gate`` with the reference code's default ``c`` and ``alpha`` filled in."""
  c, alpha = noisy_jax.activations.reference_defaults(gate.mode, gate.kind)
  return gate._replace(c=c if gate.c is None else gate.c,
                       alpha=alpha if gate.alpha is None else gate.alpha)


def _reference_lstm(xs, params, draws, sigmoid, tanh, noisy_gates=recurrent.LSTM_GATES,
                    carry=None):
  """Float64 loop over time of the noisy LSTM (draws=None: test-time expectation)."""
  return reference_rnn.lstm_sequence(xs, params, draws, _resolved(sigmoid), _resolved(tanh),
                                     noisy_gates, carry)


def _reference_gru(xs, params, draws, sigmoid, tanh, noisy_gates=recurrent.GRU_GATES,
                   carry=None):
  """Float64 loop over time of the noisy GRU (draws=None: test-time expectation)."""
  return reference_rnn.gru_sequence(xs, params, draws, _resolved(sigmoid), _resolved(tanh),
                                    noisy_gates, carry)


_DRAW_SHAPES = {"lstm": ((B, 3 * H), (B, H), (B, H)), "gru": ((B, 2 * H), (B, H))}
_LAYERS = {"lstm": noisy_jax.nn.NoisyLSTM, "gru": noisy_jax.nn.NoisyGRU}
_CELLS = {"lstm": noisy_jax.nn.NoisyLSTMCell, "gru": noisy_jax.nn.NoisyGRUCell}
_REFERENCES = {"lstm": _reference_lstm, "gru": _reference_gru}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("sigmoid_mode,tanh_mode", [("nah", "nan"), ("nanil", "nanis"),
                                                   ("nani", "nah")])
def test_noisy_sequence_matches_float64_loop_with_same_draws(cell, sigmoid_mode, tanh_mode):
  params, xs, key = _params(cell), _inputs(), jax.random.key(7)
  sigmoid = recurrent.GateNoise("hard_sigmoid", sigmoid_mode, c=0.8)
  tanh = recurrent.GateNoise("hard_tanh", tanh_mode, alpha=0.9)
  draws = _draws(key, T, _DRAW_SHAPES[cell])
  layer = _LAYERS[cell](H, sigmoid_mode=sigmoid_mode, sigmoid_c=0.8, tanh_mode=tanh_mode,
                        tanh_alpha=0.9, return_carry=True)
  carry, ys = jax.jit(lambda p, x, k: layer.apply({"params": p}, x, rng=k))(params, xs, key)
  want_carry, want_ys = _REFERENCES[cell](xs, params, draws, sigmoid, tanh)
  np.testing.assert_allclose(ys, want_ys, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(jnp.stack(jax.tree.leaves(carry)),
                             np.stack(jax.tree.leaves(want_carry)), rtol=1e-4, atol=1e-5)
  # The noise matters: the expectation is a different trajectory.
  assert not np.allclose(ys, _REFERENCES[cell](xs, params, None, sigmoid, tanh)[1], atol=1e-3)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_deterministic_is_the_expectation_loop(cell):
  params, xs = _params(cell), _inputs()
  layer = _LAYERS[cell](H, deterministic=True)
  ys = layer.apply({"params": params}, xs)
  want = _REFERENCES[cell](xs, params, None, recurrent.SIGMOID_GATE, recurrent.TANH_UNIT)[1]
  np.testing.assert_allclose(ys, want, rtol=1e-5, atol=1e-6)


def _hard_rnn(cell, xs, params):
  """The plain hard-sigmoid/hard-tanh RNN: the reference with every gate quiet."""
  return _REFERENCES[cell](xs, params, None, recurrent.SIGMOID_GATE, recurrent.TANH_UNIT,
                           noisy_gates=())[1]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_zero_c_unit_alpha_is_the_hard_gate_rnn(cell):
  params, xs = _params(cell), _inputs()
  layer = _LAYERS[cell](H, sigmoid_mode="nan", sigmoid_c=0.0, sigmoid_alpha=1.0,
                        tanh_c=0.0, tanh_alpha=1.0)
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
  weights_type = recurrent.LSTMWeights if cell == "lstm" else recurrent.GRUWeights
  step_fn = recurrent.lstm_step if cell == "lstm" else recurrent.gru_step
  sequence_fn = recurrent.lstm_sequence if cell == "lstm" else recurrent.gru_sequence
  h0 = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, (B, H)), jnp.float32)
  carry0 = (2.0 * h0, h0) if cell == "lstm" else h0

  def objective(carry, ys):
    return jnp.sum(ys ** 2) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(carry))

  def via_layer(params, carry0, c, key):
    sigmoid = recurrent.GateNoise("hard_sigmoid", "nah", c=c)
    carry, ys = sequence_fn(xs, weights_type(**params), key, initial_carry=carry0,
                            seq_lengths=seq_lengths, sigmoid=sigmoid)
    return objective(carry, ys)

  def via_steps(params, carry0, c, key):
    sigmoid = recurrent.GateNoise("hard_sigmoid", "nah", c=c)
    weights = weights_type(**params)
    x_proj = recurrent.input_projection(xs, weights.input_kernel, weights.bias)

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


def _memoryless(cell):
  """Parameters and noisy gates under which each output depends on that step's noise only.

  Zero kernels, plain gates pinned to 0/1 by saturating biases and one noisy gate
  held in saturation (LSTM: the output gate, h = 0.5 o; GRU: the candidate, h = n),
  so that with fresh noise every output differs and with repeated noise every
  output would be equal.
  """
  params = {k: jnp.zeros_like(v) for k, v in _params(cell).items()}
  if cell == "lstm":  # i = 1, f = 0 (plain), o noisy at +3, g = 0.5 (plain)
    blocks, noisy_gates = (10.0, -10.0, 3.0, 0.5), ("output",)
  else:  # r = 0, u = 0 (plain), candidate noisy at +3
    blocks, noisy_gates = (-10.0, -10.0, 3.0), ("candidate",)
  params["bias"] = jnp.repeat(jnp.asarray(blocks, jnp.float32), H)
  params["p_gates"] = jnp.ones_like(params["p_gates"])
  params["p_candidate"] = jnp.ones(H)
  return params, noisy_gates


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_noisy_rnn_draws_fresh_noise_at_every_step(cell):
  params, noisy_gates = _memoryless(cell)
  module = _CELLS[cell](H, noisy_gates=noisy_gates, sigmoid_c=5.0, tanh_c=5.0)
  xs = jnp.zeros((B, 8, D))
  ys = noisy_jax.nn.noisy_rnn(module).apply({"params": {"cell": params}}, xs,
                                           rngs={"noise": jax.random.key(0)})
  ys = np.asarray(ys)
  assert len(np.unique(ys[0, :, 0])) == 8, ys[0, :, 0]  # a new draw at every step
  # The stream is what matters: broadcasting it would repeat the draw.
  repeated = nn.RNN(module, split_rngs={"params": False, "noise": False}).apply(
      {"params": {"cell": params}}, xs, rngs={"noise": jax.random.key(0)})
  assert len(np.unique(np.asarray(repeated)[0, :, 0])) == 1


def test_plain_rnn_without_the_split_noise_stream_raises_with_the_fix():
  module = noisy_jax.nn.NoisyLSTMCell(H)
  variables = {"params": {"cell": _params("lstm")}}
  with pytest.raises(ValueError, match=r"noisy_rnn\(cell\).*RNN_SPLIT_RNGS"):
    nn.RNN(module).apply(variables, _inputs(), rngs={"noise": jax.random.key(0)})
  with pytest.raises(ValueError, match="'noise' RNG stream"):
    noisy_jax.nn.NoisyLSTM(H).apply({"params": _params("lstm")}, _inputs())
  # Evaluation needs no stream.
  out = nn.RNN(noisy_jax.nn.NoisyLSTMCell(H, deterministic=True)).apply(variables, _inputs())
  assert out.shape == (B, T, H)


def test_noisy_rnn_merges_split_rngs_and_kwargs():
  rnn = noisy_jax.nn.noisy_rnn(noisy_jax.nn.NoisyGRUCell(H), split_rngs={"dropout": True},
                               return_carry=True)
  assert rnn.split_rngs == {"params": False, "noise": True, "dropout": True}
  assert rnn.return_carry
  assert dict(noisy_jax.nn.RNN_SPLIT_RNGS) == {"params": False, "noise": True}


def test_traced_c_anneals_without_retracing():
  params, xs = _params("lstm"), _inputs()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def forward(params, xs, c, key):
    # The documented pattern: build the module inside the jitted step with a traced c.
    layer = noisy_jax.nn.NoisyLSTM(H, sigmoid_c=c, tanh_c=c)
    return layer.apply({"params": params}, xs, rng=key)

  schedule = noisy_jax.schedules.noise_annealing()
  keys = jax.random.split(jax.random.key(0), 3)
  outputs = [forward(params, xs, schedule(t), k) for t, k in zip((0, 2000, 10**6), keys)]
  np.testing.assert_array_equal(jnp.asarray(outputs[0]).shape, (B, T, H))
  assert not np.allclose(outputs[0], outputs[2], atol=1e-4)


def test_traced_c_works_inside_noisy_rnn():

  @jax.jit
  @chex.assert_max_traces(n=1)
  def forward(params, xs, c, key):
    rnn = noisy_jax.nn.noisy_rnn(noisy_jax.nn.NoisyGRUCell(H, sigmoid_c=c, tanh_c=c))
    return rnn.apply({"params": {"cell": params}}, xs, rngs={"noise": key})

  params, xs = _params("gru"), _inputs()
  first = forward(params, xs, jnp.float32(0.0), jax.random.key(1))
  second = forward(params, xs, jnp.float32(8.0), jax.random.key(2))
  assert not np.allclose(first, second, atol=1e-4)


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
  assert jax.tree.map(jnp.shape, params) == recurrent.weight_shapes("lstm", D, H)
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
     ValueError, "pair \\(c, h\\)"),
    (lambda: noisy_jax.nn.NoisyGRUCell(H, sigmoid_mode="gaussian").apply(
        {"params": _params("gru")}, jnp.zeros((B, H)), jnp.ones((B, D)), rng=jax.random.key(0)),
     ValueError, "Unknown sigmoid_mode='gaussian'"),
    (lambda: noisy_jax.nn.NoisyGRU(H, tanh_kind="hard_sigmoid").apply(
        {"params": _params("gru")}, jnp.ones((B, T, D)), rng=jax.random.key(0)),
     ValueError, "Unknown tanh_kind='hard_sigmoid'"),
    (lambda: noisy_jax.nn.NoisyLSTM(H, noisy_gates=("forget", "reset")).apply(
        {"params": _params("lstm")}, jnp.ones((B, T, D)), rng=jax.random.key(0)),
     ValueError, "Unknown noisy_gates entry='reset'"),
    (lambda: noisy_jax.nn.NoisyLSTM(H, noisy_gates="forget").apply(
        {"params": _params("lstm")}, jnp.ones((B, T, D)), rng=jax.random.key(0)),
     TypeError, "sequence of gate names"),
    (lambda: noisy_jax.nn.NoisyLSTM(H, tanh_c=-1.0).apply(
        {"params": _params("lstm")}, jnp.ones((B, T, D)), rng=jax.random.key(0)),
     ValueError, "c must be finite and >= 0"),
    (lambda: noisy_jax.nn.NoisyLSTM(H).apply(
        {"params": _params("lstm")}, jnp.ones((B, T, D), jnp.int32), rng=jax.random.key(0)),
     TypeError, "inputs must be a floating-point array"),
    (lambda: noisy_jax.nn.NoisyGRU(H).apply(
        {"params": _params("gru")}, jnp.ones((B, T, D)), seq_lengths=jnp.ones((B, 1), jnp.int32),
        rng=jax.random.key(0)),
     ValueError, "seq_lengths must be an integer array of shape"),
    (lambda: recurrent.lstm_sequence(jnp.ones((B, T, D)), recurrent.LSTMWeights(
        **_params("lstm"))),
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


# Float64: the pure steps and sequences against tests/reference_rnn.py, fed the
# library's own draws, for every kind of noisy_gates subset. Saturating
# pre-activations, c = 3 and alpha != 1 make each noisy gate change the numbers, so
# noise on the wrong gates (or a gate missing its noise) cannot pass.

_SIGMOID64 = recurrent.GateNoise("hard_sigmoid", "nah", c=3.0, alpha=0.9)
_TANH64 = recurrent.GateNoise("hard_tanh", "nan", c=3.0, alpha=1.2)
_ALL_GATES = {"lstm": recurrent.LSTM_GATES, "gru": recurrent.GRU_GATES}
_WEIGHTS = {"lstm": recurrent.LSTMWeights, "gru": recurrent.GRUWeights}
_STEPS = {"lstm": recurrent.lstm_step, "gru": recurrent.gru_step}
_SEQUENCES = {"lstm": recurrent.lstm_sequence, "gru": recurrent.gru_sequence}
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
  for name, shape in recurrent.weight_shapes(cell, D, H).items():
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
    x_proj = recurrent.input_projection(jnp.asarray(xs[:, 0]), weights.input_kernel,
                                        weights.bias)
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


# The plain path (noisy_gates=(), sigmoid/tanh kinds) is flax's cell under a parameter
# mapping: flax's per-gate blocks into the fused layout of recurrent.py.


def _fused_lstm(per_gate):
  """flax's LSTM gates ``{"i", "f", "g", "o"}: (input kernel, recurrent kernel, bias)``
  in the fused layout ``[input, forget, output, candidate]`` (the candidate is flax's g).
  """
  order = ("i", "f", "o", "g")
  return {
      "input_kernel": np.concatenate([per_gate[g][0] for g in order], axis=-1),
      "recurrent_kernel": np.concatenate([per_gate[g][1] for g in order], axis=-1),
      "bias": np.concatenate([per_gate[g][2] for g in order]),
      # p is unused on the plain path; nonzero, so that a quiet gate using it shows.
      "p_gates": np.full(3 * H, 2.0), "p_candidate": np.full(H, 2.0), "p_cell": np.full(H, 2.0),
  }


def _fused_gru(per_gate, recurrent_bias):
  """flax's GRU gates ``{"r", "z", "n"}: (input kernel, recurrent kernel, input bias)``
  in the fused layout ``[reset, update, candidate]`` (update is flax's z), with the
  candidate's recurrent bias (flax's b_hn) inside the reset product.
  """
  order = ("r", "z", "n")
  return {
      "input_kernel": np.concatenate([per_gate[g][0] for g in order], axis=-1),
      "recurrent_kernel": np.concatenate([per_gate[g][1] for g in order], axis=-1),
      "bias": np.concatenate([per_gate[g][2] for g in order]),
      "recurrent_bias": np.asarray(recurrent_bias),
      "p_gates": np.full(2 * H, 2.0), "p_candidate": np.full(H, 2.0),
  }


def _from_linen_flax(cell, flax_params):
  """nn.LSTMCell/nn.OptimizedLSTMCell (ii..io without bias, hi..ho with) or nn.GRUCell
  (ir, iz, in with bias; hr, hz without; hn with b_hn) parameters, fused."""
  p = jax.tree.map(np.asarray, flax_params)
  if cell == "lstm":
    return _fused_lstm({g: (p[f"i{g}"]["kernel"], p[f"h{g}"]["kernel"], p[f"h{g}"]["bias"])
                        for g in "ifgo"})
  return _fused_gru({g: (p[f"i{g}"]["kernel"], p[f"h{g}"]["kernel"], p[f"i{g}"]["bias"])
                     for g in "rzn"}, p["hn"]["bias"])


def _problem_for_flax(cell, seed=30):
  """Float64 inputs (B, T, D) and a nonzero initial carry."""
  rng = np.random.default_rng(seed)
  xs = jnp.asarray(1.5 * rng.normal(size=(B, T, D)))
  h0 = jnp.asarray(rng.uniform(-1.0, 1.0, (B, H)))
  return xs, ((2.0 * h0, h0) if cell == "lstm" else h0)


_PLAIN = dict(sigmoid_kind="sigmoid", tanh_kind="tanh", noisy_gates=(),
              param_dtype=jnp.float64)


@pytest.mark.parametrize("cell,flax_cell", [("lstm", nn.LSTMCell),
                                            ("lstm", nn.OptimizedLSTMCell),
                                            ("gru", nn.GRUCell)],
                         ids=["LSTMCell", "OptimizedLSTMCell", "GRUCell"])
def test_plain_cell_and_layer_equal_the_linen_flax_cell(cell, flax_cell):
  with jax.enable_x64(True):
    xs, carry0 = _problem_for_flax(cell)
    theirs = flax_cell(H, param_dtype=jnp.float64)
    # Every parameter random, biases (b_hn included) too, so that each block's
    # mapping is checked; drawn by NumPy, without compiling flax's initialisers.
    shapes = jax.eval_shape(theirs.init, jax.random.key(31), carry0, xs[:, 0])["params"]
    rng = np.random.default_rng(31)
    flax_params = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape)), shapes)
    params = _from_linen_flax(cell, flax_params)
    ours = _CELLS[cell](H, **_PLAIN)
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
    layer = _LAYERS[cell](H, return_carry=True, **_PLAIN)
    got_carry, got_ys = layer.apply({"params": params}, xs, initial_carry=carry0)
  np.testing.assert_allclose(got_ys, want_ys, rtol=1e-12, atol=1e-12)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12),
               got_carry, want_carry)
