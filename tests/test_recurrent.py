"""Noisy LSTM/GRU: pure steps and Linen cells/layers against float64 hand-written loops."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import noisy_jax
import noisy_jax.nn
from noisy_jax._src import noise
from noisy_jax._src import recurrent
from tests import reference
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


def _draws(key, num_steps, shapes):
  """The library's per-step, per-call standard-normal draws for ``key`` (cloned)."""
  step_keys = jax.random.split(jax.random.clone(key), num_steps)
  draws = []
  for step_key in step_keys:
    sub = jax.random.split(step_key, len(shapes))
    draws.append([np.asarray(noise.standard_normal(k, s, jnp.float32), np.float64)
                  for k, s in zip(sub, shapes)])
  return draws


def _act(x, xi, p, gate: recurrent.GateNoise):
  c, alpha = noisy_jax.activations.reference_defaults(gate.mode, gate.kind)
  c = c if gate.c is None else gate.c
  alpha = alpha if gate.alpha is None else gate.alpha
  if xi is None:
    return reference.expectation(x, p, c, alpha, gate.mode, gate.kind)
  return reference.noisy(x, xi, p, c, alpha, gate.mode, gate.kind)


def _reference_lstm(xs, params, draws, sigmoid, tanh):
  """Float64 loop over time of the noisy LSTM (draws=None: test-time expectation)."""
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  xs = np.asarray(xs, np.float64)
  c = h = np.zeros((xs.shape[0], H))
  outputs = []
  for t in range(xs.shape[1]):
    xi = draws[t] if draws is not None else (None, None, None)
    z = xs[:, t] @ p["input_kernel"] + p["bias"] + h @ p["recurrent_kernel"]
    gates = _act(z[:, : 3 * H], xi[0], p["p_gates"], sigmoid)
    i, f, o = gates[:, :H], gates[:, H: 2 * H], gates[:, 2 * H:]
    g = _act(z[:, 3 * H:], xi[1], p["p_candidate"], tanh)
    c = f * c + i * g
    h = o * _act(c, xi[2], p["p_cell"], tanh)
    outputs.append(h)
  return (c, h), np.stack(outputs, axis=1)


def _reference_gru(xs, params, draws, sigmoid, tanh):
  """Float64 loop over time of the noisy GRU (draws=None: test-time expectation)."""
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  xs = np.asarray(xs, np.float64)
  h = np.zeros((xs.shape[0], H))
  outputs = []
  for t in range(xs.shape[1]):
    xi = draws[t] if draws is not None else (None, None)
    zx = xs[:, t] @ p["input_kernel"] + p["bias"]
    zh = h @ p["recurrent_kernel"]
    gates = _act(zx[:, : 2 * H] + zh[:, : 2 * H], xi[0], p["p_gates"], sigmoid)
    r, u = gates[:, :H], gates[:, H:]
    n = _act(zx[:, 2 * H:] + r * (zh[:, 2 * H:] + p["recurrent_bias"]), xi[1],
             p["p_candidate"], tanh)
    h = (1 - u) * n + u * h
    outputs.append(h)
  return h, np.stack(outputs, axis=1)


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


def _hard_lstm(xs, params):
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  c = h = np.zeros((xs.shape[0], H))
  outputs = []
  for t in range(xs.shape[1]):
    z = np.asarray(xs[:, t], np.float64) @ p["input_kernel"] + p["bias"] + h @ p["recurrent_kernel"]
    i, f, o = (reference.hard_sigmoid(z[:, k * H: (k + 1) * H]) for k in range(3))
    c = f * c + i * reference.hard_tanh(z[:, 3 * H:])
    h = o * reference.hard_tanh(c)
    outputs.append(h)
  return np.stack(outputs, axis=1)


def _hard_gru(xs, params):
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  h = np.zeros((xs.shape[0], H))
  outputs = []
  for t in range(xs.shape[1]):
    zx = np.asarray(xs[:, t], np.float64) @ p["input_kernel"] + p["bias"]
    zh = h @ p["recurrent_kernel"]
    r = reference.hard_sigmoid(zx[:, :H] + zh[:, :H])
    u = reference.hard_sigmoid(zx[:, H: 2 * H] + zh[:, H: 2 * H])
    n = reference.hard_tanh(zx[:, 2 * H:] + r * (zh[:, 2 * H:] + p["recurrent_bias"]))
    h = (1 - u) * n + u * h
    outputs.append(h)
  return np.stack(outputs, axis=1)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_zero_c_unit_alpha_is_the_hard_gate_rnn(cell):
  params, xs = _params(cell), _inputs()
  layer = _LAYERS[cell](H, sigmoid_mode="nan", sigmoid_c=0.0, sigmoid_alpha=1.0,
                        tanh_c=0.0, tanh_alpha=1.0)
  ys = layer.apply({"params": params}, xs, rng=jax.random.key(0))  # noise on, but c = 0
  want = (_hard_lstm if cell == "lstm" else _hard_gru)(xs, params)
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
  traces = []
  params, xs = _params("lstm"), _inputs()

  @jax.jit
  def forward(params, xs, c, key):
    traces.append(None)
    # The documented pattern: build the module inside the jitted step with a traced c.
    layer = noisy_jax.nn.NoisyLSTM(H, sigmoid_c=c, tanh_c=c)
    return layer.apply({"params": params}, xs, rng=key)

  schedule = noisy_jax.schedules.noise_annealing()
  keys = jax.random.split(jax.random.key(0), 3)
  outputs = [forward(params, xs, schedule(t), k) for t, k in zip((0, 2000, 10**6), keys)]
  assert len(traces) == 1
  np.testing.assert_array_equal(jnp.asarray(outputs[0]).shape, (B, T, H))
  assert not np.allclose(outputs[0], outputs[2], atol=1e-4)


def test_traced_c_works_inside_noisy_rnn():
  traces = []

  @jax.jit
  def forward(params, xs, c, key):
    traces.append(None)
    rnn = noisy_jax.nn.noisy_rnn(noisy_jax.nn.NoisyGRUCell(H, sigmoid_c=c, tanh_c=c))
    return rnn.apply({"params": {"cell": params}}, xs, rngs={"noise": key})

  params, xs = _params("gru"), _inputs()
  first = forward(params, xs, jnp.float32(0.0), jax.random.key(1))
  second = forward(params, xs, jnp.float32(8.0), jax.random.key(2))
  assert len(traces) == 1 and not np.allclose(first, second, atol=1e-4)


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
  np.testing.assert_allclose(ys, _hard_lstm(xs, params), rtol=1e-5, atol=1e-6)


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
