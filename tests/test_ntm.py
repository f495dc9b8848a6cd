"""Tests of the NTM addressing (against reference_ntm.py) and the NTM cells."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.test_util import check_grads

import noisy_jax.nn
import noisy_jax.nnx
from noisy_jax import ntm
from noisy_jax._src import ntm as ntm_src
from noisy_jax._src import recurrent
from tests import reference_ntm

N, M, H = 7, 5, 3  # locations, width, heads


def _softmax(logits):
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _case(seed=0, batch=2, num_shifts=3):
  """Random, valid addressing inputs with a batch and a heads axis (float32)."""
  rng = np.random.default_rng(seed)
  f32 = lambda a: np.asarray(a, np.float32)
  return dict(
      memory=f32(rng.normal(size=(batch, N, M))),
      key=f32(rng.normal(size=(batch, H, M))),
      beta=f32(rng.uniform(0.0, 10.0, (batch, H))),
      gate=f32(rng.uniform(0.0, 1.0, (batch, H))),
      shift_weights=f32(_softmax(rng.normal(size=(batch, H, num_shifts)))),
      gamma=f32(rng.uniform(1.0, 5.0, (batch, H))),
      prev_weights=f32(_softmax(rng.normal(size=(batch, H, N)))),
      erase=f32(rng.uniform(0.0, 1.0, (batch, H, M))),
      add=f32(rng.normal(size=(batch, H, M))),
  )


def _per_head(fn, *arrays):
  """Maps a single-head, single-example reference over the (batch, head) axes."""
  batch, heads = arrays[0].shape[:2]
  return np.stack([np.stack([fn(*(a[b, h] for a in arrays)) for h in range(heads)])
                   for b in range(batch)])


class AddressingReferenceTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_content_weighting_eq5_eq6(self):
    c = _case()
    got = self.variant(ntm.content_weighting)(c["memory"], c["key"], c["beta"])
    memory = np.repeat(c["memory"][:, None], H, axis=1)
    want = _per_head(reference_ntm.content_weighting, memory, c["key"], c["beta"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    sim = self.variant(ntm.cosine_similarity)(c["memory"], c["key"])
    want_sim = [[[reference_ntm.cosine_similarity(c["key"][b, h], c["memory"][b, i])
                  for i in range(N)] for h in range(H)] for b in range(2)]
    np.testing.assert_allclose(sim, want_sim, rtol=1e-5, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_interpolate_eq7(self):
    c = _case(1)
    content = _softmax(np.random.default_rng(5).normal(size=(2, H, N))).astype(np.float32)
    got = self.variant(ntm.interpolate)(content, c["prev_weights"], c["gate"])
    want = _per_head(reference_ntm.interpolate, content, c["prev_weights"], c["gate"])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)

  @chex.variants(with_jit=True, without_jit=True)
  def test_shift_eq8(self):
    for num_shifts in (1, 3, 5, 9):  # 9 > N: the shifts wrap around
      c = _case(2, num_shifts=num_shifts)
      got = self.variant(ntm.shift)(c["prev_weights"], c["shift_weights"])
      want = _per_head(reference_ntm.shift, c["prev_weights"], c["shift_weights"])
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)

  def test_shift_direction_is_eq8(self):
    # All mass on shift +1 moves the focus from location i to i + 1 (mod N).
    w = np.eye(N, dtype=np.float32)[N - 1]
    got = ntm.shift(w, np.array([0.0, 0.0, 1.0], np.float32))
    np.testing.assert_array_equal(got, np.eye(N)[0])

  @chex.variants(with_jit=True, without_jit=True)
  def test_sharpen_eq9(self):
    c = _case(3)
    got = self.variant(ntm.sharpen)(c["prev_weights"], c["gamma"])
    want = _per_head(reference_ntm.sharpen, c["prev_weights"], c["gamma"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)

  @chex.variants(with_jit=True, without_jit=True)
  def test_address_fig2(self):
    c = _case(4)
    args = [c[k] for k in ("prev_weights", "key", "beta", "gate", "shift_weights", "gamma")]
    got = self.variant(ntm.address)(c["memory"], *args)
    memory = np.repeat(c["memory"][:, None], H, axis=1)
    want = _per_head(reference_ntm.address, memory, *args)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_read_eq2(self):
    c = _case(5)
    got = self.variant(ntm.read)(c["memory"], c["prev_weights"])
    memory = np.repeat(c["memory"][:, None], H, axis=1)
    want = _per_head(lambda m, w: reference_ntm.read(m, w), memory, c["prev_weights"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_write_eq3_eq4(self):
    c = _case(6)
    got = self.variant(ntm.write)(c["memory"], c["prev_weights"], c["erase"], c["add"])
    want = np.stack([reference_ntm.write(c["memory"][b], c["prev_weights"][b], c["erase"][b],
                                         c["add"][b]) for b in range(2)])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


class AddressingPropertyTest(chex.TestCase):

  def test_weightings_sum_to_one(self):
    for seed in range(3):
      c = _case(seed, num_shifts=5)
      args = [c[k] for k in ("prev_weights", "key", "beta", "gate", "shift_weights", "gamma")]
      w = ntm.address(c["memory"], *args)
      np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
      chex.assert_trees_all_equal(bool((w >= 0).all()), True)
      np.testing.assert_allclose(ntm.content_weighting(c["memory"], c["key"], c["beta"]).sum(-1),
                                 1.0, rtol=1e-6)

  @chex.variants(with_jit=True)
  def test_degenerate_inputs_are_finite_and_normalised(self):
    c = _case(7)
    zero_memory = np.zeros_like(c["memory"])
    zero_key = np.zeros_like(c["key"])
    zero_weights = np.zeros_like(c["prev_weights"])
    cases = {
        "zero memory": (zero_memory, c["key"], c["beta"], c["prev_weights"], c["gamma"]),
        "zero key": (c["memory"], zero_key, c["beta"], c["prev_weights"], c["gamma"]),
        "all zero": (zero_memory, zero_key, np.zeros_like(c["beta"]), zero_weights,
                     np.ones_like(c["gamma"])),
        "huge": (1e15 * c["memory"], 1e15 * c["key"], np.full_like(c["beta"], 1e6),
                 c["prev_weights"], np.full_like(c["gamma"], 1e4)),
    }

    def loss(memory, key, beta, prev, gamma):
      w = ntm.address(memory, prev, key, beta, c["gate"], c["shift_weights"], gamma)
      return jnp.sum(w * jnp.arange(N)), w

    grad_fn = self.variant(jax.grad(loss, argnums=(0, 1, 2, 3, 4), has_aux=True))
    for name, args in cases.items():
      grads, w = grad_fn(*args)
      chex.assert_tree_all_finite((w, grads))
      np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5, err_msg=name)
    # An all-zero memory and key address every location alike.
    w = ntm.content_weighting(zero_memory, zero_key, c["beta"])
    np.testing.assert_allclose(w, 1.0 / N, rtol=1e-6)
    np.testing.assert_allclose(ntm.sharpen(zero_weights, c["gamma"]), 1.0 / N, rtol=1e-6)

  def test_check_grads_through_addressing_read_write(self):
    c = {k: v.astype(np.float64) for k, v in _case(8).items()}

    def step(memory, key, beta, gate, shift_weights, gamma, erase, add):
      w = ntm.address(memory, c["prev_weights"], key, beta, gate, shift_weights, gamma)
      return ntm.read(ntm.write(memory, w, erase, add), w)

    names = ("memory", "key", "beta", "gate", "shift_weights", "gamma", "erase", "add")
    with jax.enable_x64(True):
      check_grads(jax.jit(step), tuple(c[k] for k in names), order=1, modes=("fwd", "rev"),
                  atol=1e-5, rtol=1e-5)

  def test_invalid_arguments_raise(self):
    c = _case(9)
    with pytest.raises(ValueError, match="beta"):
      ntm.content_weighting(c["memory"], c["key"], -c["beta"])
    with pytest.raises(ValueError, match="gamma"):
      ntm.sharpen(c["prev_weights"], 0.5)
    with pytest.raises(ValueError, match="odd"):
      ntm.shift(c["prev_weights"], np.ones((2, H, 4), np.float32) / 4)
    with pytest.raises(ValueError, match="key must have a last axis of size 5"):
      ntm.content_weighting(c["memory"], c["key"][..., :3], c["beta"])
    with pytest.raises(ValueError, match="memory must have shape"):
      ntm.read(np.ones(3, np.float32), np.ones((1, 3), np.float32))
    with pytest.raises(TypeError, match="memory must be a floating-point"):
      ntm.write(np.ones((N, M), np.int32), c["prev_weights"][0], c["erase"][0], c["add"][0])


# A small NTM for the cell tests: 3 inputs, controller 8, memory 6 x 4, 1 + 1 heads.
CELL = dict(features=8, memory_size=6, memory_width=4)
D, B, T = 3, 2, 5
OUT = CELL["features"] + CELL["memory_width"]


def _linen_params(controller="lstm", seed=0, **kwargs):
  cell = noisy_jax.nn.NTMCell(controller=controller, **CELL, **kwargs)
  carry = cell.initialize_carry(jax.random.key(0), (B, D))
  return cell, carry, cell.init(jax.random.key(seed), carry, jnp.ones((B, D)),
                                deterministic=True)["params"]


def _weightings(state):
  return jnp.concatenate([state.read_weights, state.write_weights], axis=-2)


def test_linen_cell_under_nn_rnn():
  cell, _, params = _linen_params(sigmoid_c=5.0, tanh_c=5.0)
  variables = {"params": {"cell": params}}
  xs = jax.random.normal(jax.random.key(1), (B, T, D))
  rnn = noisy_jax.nn.noisy_rnn(cell, return_carry=True)
  run = jax.jit(lambda key: rnn.apply(variables, xs, rngs={"noise": key}))
  (state, ys), (_, ys_other) = run(jax.random.key(2)), run(jax.random.key(3))
  chex.assert_shape(ys, (B, T, OUT))
  chex.assert_shape(state.memory, (B, CELL["memory_size"], CELL["memory_width"]))
  np.testing.assert_array_equal(state.step, T)
  np.testing.assert_allclose(_weightings(state).sum(-1), 1.0, rtol=1e-5)
  assert not np.allclose(ys, ys_other)  # the noise depends on the key
  # The last output holds the last reads, which the carry holds too.
  np.testing.assert_allclose(ys[:, -1, CELL["features"]:], state.reads[:, 0], rtol=1e-6)
  # Plain nn.RNN drops the noise stream: a clear error, never the same noise at every step.
  with pytest.raises(ValueError, match=r"noisy_rnn\(cell\)"):
    nn.RNN(cell).apply(variables, xs, rngs={"noise": jax.random.key(4)})


def test_nnx_cell_under_nnx_rnn_and_same_numbers_as_linen():
  xs = jax.random.normal(jax.random.key(1), (B, T, D))
  rnn = nnx.RNN(noisy_jax.nnx.NTMCell(D, controller="feedforward", rngs=nnx.Rngs(0), **CELL),
                return_carry=True)
  traces = []

  @nnx.jit
  def run(rnn, xs):
    traces.append(None)
    return rnn(xs)

  state, ys = run(rnn, xs)
  _, ys_next = run(rnn, xs)  # the cell's stored noise stream has advanced
  chex.assert_shape(ys, (B, T, OUT))
  np.testing.assert_allclose(_weightings(state).sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(state.step, T)
  assert not np.allclose(ys, ys_next)
  noisy_jax.nnx.set_noise_scale(rnn, 30.0)  # annealing state, not a retrace
  state, ys_c30 = run(rnn, xs)
  assert len(traces) == 1
  chex.assert_tree_all_finite((state, ys_c30))
  assert float(rnn.cell.sigmoid_c[...]) == 30.0
  # One step with the same parameters and key gives the Linen cell's numbers.
  cell = noisy_jax.nnx.NTMCell(D, rngs=nnx.Rngs(1), **CELL)
  params = nnx.to_pure_dict(nnx.state(cell, nnx.Param))
  carry = cell.initialize_carry((B, D))
  graph, state = nnx.split(cell)

  @jax.jit
  def both(state, key):
    nnx_out = nnx.merge(graph, state)(carry, xs[:, 0], rngs=jax.random.clone(key))
    linen = noisy_jax.nn.NTMCell(**CELL)
    return nnx_out, linen.apply({"params": params}, carry, xs[:, 0], rng=key)

  got, want = both(state, jax.random.key(5))
  chex.assert_trees_all_close(got, want, rtol=1e-6, atol=1e-6)


def test_a_cell_without_noisy_gates_needs_no_noise_key():
  cell, _, params = _linen_params(noisy_gates=())
  xs = jax.random.normal(jax.random.key(1), (B, T, D))
  ys = noisy_jax.nn.noisy_rnn(cell).apply({"params": {"cell": params}}, xs)  # no rngs
  chex.assert_shape(ys, (B, T, OUT))
  nnx_cell = noisy_jax.nnx.NTMCell(D, noisy_gates=(), rngs=nnx.Rngs(params=0), **CELL)
  carry = nnx_cell.initialize_carry((B, D))
  chex.assert_tree_all_finite(nnx_cell(carry, xs[:, 0]))


def test_noisy_head_gates_stay_in_unit_interval_and_keep_their_gradient():
  gate = recurrent.GateNoise("hard_sigmoid", "nan", c=1.0)
  x = jnp.array([-6.0, -3.0, 0.5, 3.0, 6.0])
  y = ntm_src._gate(x, jax.random.key(0), 1.0, gate, True, False)  # pylint: disable=protected-access
  assert jnp.all((y >= 0) & (y <= 1)) and y[2] == 0.25 * 0.5 + 0.5  # unsaturated: u(x), Eq. 3
  grad = jax.grad(lambda x: ntm_src._gate(x, jax.random.key(0), 1.0, gate, True, False).sum())(x)
  assert np.all(np.asarray(grad)[[0, 1, 3, 4]] != 0)  # saturated: Eq. 10's gradient survives


def test_check_grads_through_one_full_step():
  cell, carry, params = _linen_params()
  x = jax.random.normal(jax.random.key(1), (B, D))

  def step(params, x, memory):
    # A fresh key object per call (check_grads calls many times; keys are never reused).
    state = carry._replace(memory=memory)
    new_state, y = cell.apply({"params": params}, state, x, rng=jax.random.key(7))
    return y, new_state.memory, _weightings(new_state)

  with jax.enable_x64(True):
    to64 = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)
    memory = jax.random.normal(jax.random.key(2), carry.memory.shape)
    args = to64((params, x, memory))
    check_grads(jax.jit(step), args, order=1, modes=("rev",), eps=1e-6, atol=1e-5, rtol=1e-5)


def test_no_nan_on_degenerate_input_and_annealing_c_does_not_retrace():
  _, _, params = _linen_params()
  traces = []

  @jax.jit
  def run(params, xs, memory_value, c, key):
    traces.append(None)
    cell = noisy_jax.nn.NTMCell(**CELL, sigmoid_c=c, tanh_c=c)
    rnn = noisy_jax.nn.noisy_rnn(cell, return_carry=True)
    start = cell.initialize_carry(key, xs[:, 0].shape)
    start = start._replace(memory=jnp.full_like(start.memory, memory_value))

    def loss(params):
      state, ys = rnn.apply({"params": {"cell": params}}, xs, initial_carry=start,
                            rngs={"noise": key})
      return jnp.sum(ys**2) + jnp.sum(state.memory**2), state

    (value, state), grads = jax.value_and_grad(loss, has_aux=True)(params)
    return value, state, grads

  xs = jax.random.normal(jax.random.key(1), (B, T, D))
  zero_heads = {**params, "head_kernel": jnp.zeros_like(params["head_kernel"]),
                "head_bias": jnp.zeros_like(params["head_bias"])}  # zero keys, uniform gates
  cases = {
      "zero memory": (params, xs, 0.0, 0.5),
      "zero keys and memory": (zero_heads, jnp.zeros_like(xs), 0.0, 0.5),
      "huge inputs": (params, 1e30 * xs, 1e-6, 0.5),
      "c = 30": (params, xs, 1e-6, 30.0),
      "c = 30, huge inputs": (params, 1e30 * xs, 1e-6, 30.0),
  }
  for seed, (name, (p, x, memory_value, c)) in enumerate(cases.items()):
    value, state, grads = run(p, x, memory_value, c, jax.random.key(seed))
    chex.assert_tree_all_finite((value, state, grads))
    np.testing.assert_allclose(_weightings(state).sum(-1), 1.0, rtol=1e-5, err_msg=name)
  assert len(traces) == 1  # c changed from 0.5 to 30 without a retrace


def test_fresh_state_uses_the_learned_initial_state():
  cell, carry, params = _linen_params()
  np.testing.assert_allclose(carry.memory, 1e-6, rtol=1e-6)  # Collier and Beel's constant
  x = jnp.ones((B, D))
  step = jax.jit(lambda carry: cell.apply({"params": params}, carry, x, deterministic=True))
  # At step 0 the state's reads and weightings are placeholders: garbage changes nothing.
  garbage = carry._replace(reads=carry.reads + 3.0, read_weights=carry.read_weights * 0)
  chex.assert_trees_all_close(step(carry), step(garbage))
  # Past step 0 they are used.
  later = garbage._replace(step=carry.step + 1)
  assert not np.allclose(step(later)[1], step(carry)[1])


def test_bad_configuration_raises_clear_errors():
  cell, carry, params = _linen_params()
  x = jnp.ones((B, D))
  with pytest.raises(ValueError, match="controller"):
    noisy_jax.nn.NTMCell(controller="gru", **CELL).init(jax.random.key(0), carry, x)
  with pytest.raises(ValueError, match="noisy_gates entry"):
    cell.copy(noisy_gates=("forget", "shift")).apply({"params": params}, carry, x,
                                                     deterministic=True)
  weights = ntm.NTMWeights(recurrent.LSTMWeights(**params["controller"]),
                           *[params[k] for k in ntm.NTMWeights._fields[1:]])
  with pytest.raises(ValueError, match="shift_range=2"):
    ntm.ntm_step(carry, x, weights, controller="lstm", shift_range=2, deterministic=True)
  with pytest.raises(ValueError, match=r"state.memory has shape"):
    cell.apply({"params": params}, carry._replace(memory=carry.memory[:, :3]), x,
                deterministic=True)
  with pytest.raises(ValueError, match="memory_size must be an integer >= 1"):
    ntm.initial_state((B,), controller="lstm", features=8, memory_size=0, memory_width=4)


def _copy_batch(key, batch, bits, max_len):
  """Copy task (Graves et al., 2014, Sec. 4.1): see ``bits``-wide vectors, then recall them.

  ``2 max_len + 1`` steps: the sequence (length uniform in 1..max_len), a delimiter
  flag on an extra channel, then blanks during which the target is the sequence.
  """
  steps = 2 * max_len + 1
  len_key, bits_key = jax.random.split(key)
  lengths = jax.random.randint(len_key, (batch, 1), 1, max_len + 1)
  t = jnp.arange(steps)[None, :]
  seq = jax.random.bernoulli(bits_key, 0.5, (batch, max_len, bits)).astype(jnp.float32)
  seq = seq * (t[:, :max_len] < lengths)[..., None]
  inputs = jnp.zeros((batch, steps, bits + 1)).at[:, :max_len, :bits].set(seq)
  inputs = inputs.at[:, :, bits].set((t == lengths).astype(jnp.float32))
  recall = t - lengths - 1  # index of the vector to output at step t
  mask = ((recall >= 0) & (recall < lengths)).astype(jnp.float32)
  targets = jnp.take_along_axis(seq, jnp.clip(recall, 0, max_len - 1)[..., None], axis=1)
  return inputs, targets * mask[..., None], mask


def test_tiny_noisy_ntm_learns_the_copy_task():
  """Smoke test: from chance (ln 2 = 0.69 nats/bit) to below 0.15 nats/bit in 400 updates.

  A feed-forward controller (32 noisy hard-tanh units) over a 12 x 8 memory copies
  4-bit sequences of length 1..5; Adam 1e-2, batch 32, gradient norm clipped at 10.
  Four other seeds end at 0.001-0.01 (seed 0: about 0.04).
  """
  bits, max_len, batch, updates = 4, 5, 32, 400

  class CopyNTM(nn.Module):
    @nn.compact
    def __call__(self, inputs):
      cell = noisy_jax.nn.NTMCell(features=32, memory_size=12, memory_width=8,
                                  controller="feedforward")
      return nn.Dense(bits)(noisy_jax.nn.noisy_rnn(cell)(inputs))

  model = CopyNTM()
  inputs, _, _ = _copy_batch(jax.random.key(0), batch, bits, max_len)
  params = jax.jit(model.init)({"params": jax.random.key(1), "noise": jax.random.key(2)},
                               inputs)
  optimizer = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(1e-2))

  def train_step(carry, key):
    params, opt_state = carry
    data_key, noise_key = jax.random.split(key)
    inputs, targets, mask = _copy_batch(data_key, batch, bits, max_len)

    def loss_fn(params):
      logits = model.apply(params, inputs, rngs={"noise": noise_key})
      per_step = optax.sigmoid_binary_cross_entropy(logits, targets).mean(-1)
      return jnp.sum(per_step * mask) / jnp.sum(mask)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates_, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates_), opt_state), loss

  # All updates in one scan: one compilation, no per-update dispatch.
  train = jax.jit(lambda params, keys: jax.lax.scan(
      train_step, (params, optimizer.init(params)), keys)[1])
  losses = train(params, jax.random.split(jax.random.key(3), updates))
  losses = np.asarray(losses)
  assert losses[:10].mean() > 0.6, losses[:10]  # starts at chance
  assert losses[-50:].mean() < 0.15, losses[-50:].mean()
