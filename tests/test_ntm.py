"""Tests of the NTM addressing (against reference_ntm.py) and the NTM cells."""

import functools
import inspect
import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from flax import nnx
from jax.test_util import check_grads

import noisy_jax
import noisy_jax.nn
import noisy_jax.nnx
from noisy_jax import ntm
from noisy_jax import rnn as rnn_lib
from noisy_jax._src import noise
from noisy_jax._src import ntm as ntm_src
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
      content_key=f32(rng.normal(size=(batch, H, M))),
      beta=f32(rng.uniform(0.0, 10.0, (batch, H))),
      gate=f32(rng.uniform(0.0, 1.0, (batch, H))),
      shift_weighting=f32(_softmax(rng.normal(size=(batch, H, num_shifts)))),
      gamma=f32(rng.uniform(1.0, 5.0, (batch, H))),
      prev_weighting=f32(_softmax(rng.normal(size=(batch, H, N)))),
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
    got = self.variant(ntm.content_weighting)(c["memory"], c["content_key"], c["beta"])
    memory = np.repeat(c["memory"][:, None], H, axis=1)
    want = _per_head(reference_ntm.content_weighting, memory, c["content_key"], c["beta"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    sim = self.variant(ntm.cosine_similarity)(c["memory"], c["content_key"])
    want_sim = [[[reference_ntm.cosine_similarity(c["content_key"][b, h], c["memory"][b, i])
                  for i in range(N)] for h in range(H)] for b in range(2)]
    np.testing.assert_allclose(sim, want_sim, rtol=1e-5, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_interpolate_eq7(self):
    c = _case(1)
    content = _softmax(np.random.default_rng(5).normal(size=(2, H, N))).astype(np.float32)
    got = self.variant(ntm.interpolate)(content, c["prev_weighting"], c["gate"])
    want = _per_head(reference_ntm.interpolate, content, c["prev_weighting"], c["gate"])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)

  @chex.variants(with_jit=True, without_jit=True)
  def test_shift_eq8(self):
    for num_shifts in (1, 3, 5, 9):  # 9 > N: the shifts wrap around
      c = _case(2, num_shifts=num_shifts)
      got = self.variant(ntm.shift)(c["prev_weighting"], c["shift_weighting"])
      want = _per_head(reference_ntm.shift, c["prev_weighting"], c["shift_weighting"])
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)

  def test_shift_direction_is_eq8(self):
    # All mass on shift +1 moves the focus from location i to i + 1 (mod N).
    w = np.eye(N, dtype=np.float32)[N - 1]
    got = ntm.shift(w, np.array([0.0, 0.0, 1.0], np.float32))
    np.testing.assert_array_equal(got, np.eye(N)[0])

  @chex.variants(with_jit=True, without_jit=True)
  def test_sharpen_eq9(self):
    c = _case(3)
    got = self.variant(ntm.sharpen)(c["prev_weighting"], c["gamma"])
    want = _per_head(reference_ntm.sharpen, c["prev_weighting"], c["gamma"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)

  @chex.variants(with_jit=True, without_jit=True)
  def test_address_fig2(self):
    c = _case(4)
    args = [c[k] for k in ("prev_weighting", "content_key", "beta", "gate", "shift_weighting", "gamma")]
    got = self.variant(ntm.address)(c["memory"], *args)
    memory = np.repeat(c["memory"][:, None], H, axis=1)
    want = _per_head(reference_ntm.address, memory, *args)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_read_eq2(self):
    c = _case(5)
    got = self.variant(ntm.read)(c["memory"], c["prev_weighting"])
    memory = np.repeat(c["memory"][:, None], H, axis=1)
    want = _per_head(lambda m, w: reference_ntm.read(m, w), memory, c["prev_weighting"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_write_eq3_eq4(self):
    c = _case(6)
    got = self.variant(ntm.write)(c["memory"], c["prev_weighting"], c["erase"], c["add"])
    want = np.stack([reference_ntm.write(c["memory"][b], c["prev_weighting"][b], c["erase"][b],
                                         c["add"][b]) for b in range(2)])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


class AddressingPropertyTest(chex.TestCase):

  def test_weightings_sum_to_one(self):
    for seed in range(3):
      c = _case(seed, num_shifts=5)
      args = [c[k] for k in ("prev_weighting", "content_key", "beta", "gate", "shift_weighting", "gamma")]
      w = ntm.address(c["memory"], *args)
      np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
      chex.assert_trees_all_equal(bool((w >= 0).all()), True)
      np.testing.assert_allclose(ntm.content_weighting(c["memory"], c["content_key"], c["beta"]).sum(-1),
                                 1.0, rtol=1e-6)

  @chex.variants(with_jit=True)
  def test_degenerate_inputs_are_finite_and_normalised(self):
    c = _case(7)
    zero_memory = np.zeros_like(c["memory"])
    zero_key = np.zeros_like(c["content_key"])
    zero_weighting = np.zeros_like(c["prev_weighting"])
    cases = {
        "zero memory": (zero_memory, c["content_key"], c["beta"], c["prev_weighting"], c["gamma"]),
        "zero key": (c["memory"], zero_key, c["beta"], c["prev_weighting"], c["gamma"]),
        "all zero": (zero_memory, zero_key, np.zeros_like(c["beta"]), zero_weighting,
                     np.ones_like(c["gamma"])),
        "huge": (1e15 * c["memory"], 1e15 * c["content_key"], np.full_like(c["beta"], 1e6),
                 c["prev_weighting"], np.full_like(c["gamma"], 1e4)),
    }

    def loss(memory, content_key, beta, prev, gamma):
      w = ntm.address(memory, prev, content_key, beta, c["gate"], c["shift_weighting"], gamma)
      return jnp.sum(w * jnp.arange(N)), w

    grad_fn = self.variant(jax.grad(loss, argnums=(0, 1, 2, 3, 4), has_aux=True))
    for name, args in cases.items():
      grads, w = grad_fn(*args)
      chex.assert_tree_all_finite((w, grads))
      np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5, err_msg=name)
    # An all-zero memory and key address every location alike.
    w = ntm.content_weighting(zero_memory, zero_key, c["beta"])
    np.testing.assert_allclose(w, 1.0 / N, rtol=1e-6)
    np.testing.assert_allclose(ntm.sharpen(zero_weighting, c["gamma"]), 1.0 / N, rtol=1e-6)

  def test_check_grads_through_addressing_read_write(self):
    c = {k: v.astype(np.float64) for k, v in _case(8).items()}

    def step(memory, content_key, beta, gate, shift_weighting, gamma, erase, add):
      w = ntm.address(memory, c["prev_weighting"], content_key, beta, gate, shift_weighting,
                      gamma)
      return ntm.read(ntm.write(memory, w, erase, add), w)

    names = ("memory", "content_key", "beta", "gate", "shift_weighting", "gamma", "erase",
             "add")
    with jax.enable_x64(True):
      check_grads(jax.jit(step), tuple(c[k] for k in names), order=1, modes=("fwd", "rev"),
                  atol=1e-5, rtol=1e-5)

  def test_invalid_arguments_raise(self):
    c = _case(9)
    with pytest.raises(ValueError, match="beta"):
      ntm.content_weighting(c["memory"], c["content_key"], -c["beta"])
    with pytest.raises(ValueError, match="gamma"):
      ntm.sharpen(c["prev_weighting"], 0.5)
    with pytest.raises(ValueError, match="odd"):
      ntm.shift(c["prev_weighting"], np.ones((2, H, 4), np.float32) / 4)
    with pytest.raises(ValueError, match="content_key must have a last axis of size 5"):
      ntm.content_weighting(c["memory"], c["content_key"][..., :3], c["beta"])
    with pytest.raises(ValueError, match="memory must have shape"):
      ntm.read(np.ones(3, np.float32), np.ones((1, 3), np.float32))
    with pytest.raises(TypeError, match="memory must be a floating-point"):
      ntm.write(np.ones((N, M), np.int32), c["prev_weighting"][0], c["erase"][0], c["add"][0])



def test_shape_errors_name_the_argument_and_the_fix():
  c = _case(11)
  memory, weighting = c["memory"][0], c["prev_weighting"][0]
  with pytest.raises(ValueError, match=r"weighting must have shape \(\.\.\., R, N\), with a heads"):
    ntm.read(memory, weighting[0])
  with pytest.raises(ValueError, match=r"weighting must have shape \(\.\.\., W, N\), with a heads"):
    ntm.write(memory, weighting[0], c["erase"][0, 0], c["add"][0, 0])
  with pytest.raises(ValueError, match=r"content_key must have shape \(\.\.\., H, M\), with a"):
    ntm.cosine_similarity(memory, c["content_key"][0, 0])
  with pytest.raises(ValueError, match=r"weighting must have a last axis of size 7 \(the N"):
    ntm.read(memory, weighting[..., :4])
  for name in ("erase", "add"):
    args = dict(erase=c["erase"][0], add=c["add"][0])
    args[name] = args[name][..., :2]
    with pytest.raises(ValueError, match=f"{name} must have a last axis of size 5 \\(the memory"):
      ntm.write(memory, weighting, **args)
  with pytest.raises(ValueError, match="shift_weighting must have an odd last axis"):
    ntm.shift(weighting, np.float32(1.0))  # no shift axis at all
  with pytest.raises(ValueError, match=r"memory must have shape \(\.\.\., N, M\)"):
    ntm.content_weighting(memory[0], c["content_key"][0], c["beta"][0])


def test_old_keyword_names_still_work_with_a_deprecation_warning():
  c = _case(12)
  m, k, prev, s = c["memory"], c["content_key"], c["prev_weighting"], c["shift_weighting"]
  content = ntm.content_weighting(m, k, c["beta"])
  cases = [
      (ntm.cosine_similarity, dict(memory=m, content_key=k), {"key": "content_key"}),
      (ntm.content_weighting, dict(memory=m, content_key=k, beta=c["beta"]),
       {"key": "content_key"}),
      (ntm.interpolate, dict(content_weighting=content, prev_weighting=prev, gate=c["gate"]),
       {"content_weights": "content_weighting", "prev_weights": "prev_weighting"}),
      (ntm.shift, dict(weighting=prev, shift_weighting=s),
       {"weights": "weighting", "shift_weights": "shift_weighting"}),
      (ntm.sharpen, dict(weighting=prev, gamma=c["gamma"]), {"weights": "weighting"}),
      (ntm.address, dict(memory=m, prev_weighting=prev, content_key=k, beta=c["beta"],
                         gate=c["gate"], shift_weighting=s, gamma=c["gamma"]),
       {"prev_weights": "prev_weighting", "key": "content_key",
        "shift_weights": "shift_weighting"}),
      (ntm.read, dict(memory=m, weighting=prev), {"weights": "weighting"}),
      (ntm.write, dict(memory=m, weighting=prev, erase=c["erase"], add=c["add"]),
       {"weights": "weighting"}),
  ]
  for fn, kwargs, renames in cases:
    # The signature holds the new names, in the old order.
    assert tuple(inspect.signature(fn).parameters)[:len(kwargs)] == tuple(kwargs), fn
    want = fn(**kwargs)
    for old, new in renames.items():
      old_kwargs = {(old if name == new else name): value for name, value in kwargs.items()}
      with pytest.warns(DeprecationWarning, match=re.escape(f"({old}=...) is deprecated; use {new}=")):
        got = fn(**old_kwargs)
      np.testing.assert_array_equal(got, want, err_msg=f"{fn.__name__}({old}=)")
      with pytest.raises(TypeError, match=f"got both {old}= and its new name {new}="):
        fn(**kwargs, **{old: kwargs[new]})


def test_ntm_state_old_field_names_read_with_a_deprecation_warning():
  state = ntm.initial_state((2,), controller="feedforward", features=3, memory_size=4,
                            memory_width=2, num_read_heads=1, num_write_heads=2)
  for old, new in (("read_weights", "read_weighting"), ("write_weights", "write_weighting")):
    with pytest.warns(DeprecationWarning, match=f"NTMState.{old} is deprecated; use NTMState.{new}"):
      assert getattr(state, old) is getattr(state, new)
    assert old not in ntm.NTMState._fields
  # Still a six-field pytree: the old names are no leaves.
  assert len(jax.tree.leaves(state)) == 5  # a feed-forward controller's state is ()


def test_moved_names_warn_and_resolve_to_their_new_homes():
  moved = {"NTMCell": noisy_jax.nn.NTMCell, "NNXNTMCell": noisy_jax.nnx.NTMCell,
           "GateNoise": noisy_jax.UnitNoise}
  for old, new in moved.items():
    assert old not in ntm.__all__
    with pytest.warns(DeprecationWarning, match=f"noisy_jax.ntm.{old} is deprecated"):
      assert getattr(ntm, old) is new
  for name in ntm.__all__:  # the current names, without a warning
    getattr(ntm, name)
  with pytest.raises(AttributeError, match="has no attribute 'Nonexistent'"):
    getattr(ntm, "Nonexistent")

# A small NTM for the cell tests: 3 inputs, controller 8, memory 6 x 4, 1 + 1 heads.
CELL = dict(features=8, memory_size=6, memory_width=4)  # Linen fields
NNX_CELL = dict(hidden_features=8, memory_size=6, memory_width=4)  # NNX arguments
D, B, T = 3, 2, 5
OUT = CELL["features"] + CELL["memory_width"]


def _linen_params(controller="lstm", seed=0, **kwargs):
  cell = noisy_jax.nn.NTMCell(controller=controller, **CELL, **kwargs)
  carry = cell.initialize_carry(jax.random.key(0), (B, D))
  return cell, carry, cell.init(jax.random.key(seed), carry, jnp.ones((B, D)),
                                deterministic=True)["params"]


def _weightings(state):
  return jnp.concatenate([state.read_weighting, state.write_weighting], axis=-2)


def test_linen_cell_under_nn_rnn():
  cell, _, params = _linen_params(sigmoid=noisy_jax.UnitNoise("hard_sigmoid", "nah", 5.0),
                                  tanh=noisy_jax.UnitNoise("hard_tanh", "nan", 5.0))
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
  with pytest.raises(ValueError, match=r"add .noise.: True to the split_rngs already there"):
    nn.RNN(cell).apply(variables, xs, rngs={"noise": jax.random.key(4)})


def test_nnx_cell_under_nnx_rnn_and_same_numbers_as_linen():
  xs = jax.random.normal(jax.random.key(1), (B, T, D))
  rnn = nnx.RNN(noisy_jax.nnx.NTMCell(D, controller="feedforward", rngs=nnx.Rngs(0),
                                      **NNX_CELL), return_carry=True)

  @nnx.jit
  @chex.assert_max_traces(n=1)
  def run(rnn, xs):
    return rnn(xs)

  state, ys = run(rnn, xs)
  _, ys_next = run(rnn, xs)  # the cell's stored noise stream has advanced
  chex.assert_shape(ys, (B, T, OUT))
  np.testing.assert_allclose(_weightings(state).sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(state.step, T)
  assert not np.allclose(ys, ys_next)
  noisy_jax.nnx.set_noise_scale(rnn, 30.0)  # annealing state, not a retrace
  state, ys_c30 = run(rnn, xs)  # a retrace would fail in assert_max_traces
  chex.assert_tree_all_finite((state, ys_c30))
  assert float(rnn.cell.sigmoid.c[...]) == float(rnn.cell.tanh.c[...]) == 30.0
  # One step with the same parameters and key gives the Linen cell's numbers.
  cell = noisy_jax.nnx.NTMCell(D, rngs=nnx.Rngs(1), **NNX_CELL)
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
  nnx_cell = noisy_jax.nnx.NTMCell(D, noisy_gates=(), rngs=nnx.Rngs(params=0), **NNX_CELL)
  carry = nnx_cell.initialize_carry((B, D))
  chex.assert_tree_all_finite(nnx_cell(carry, xs[:, 0]))


def test_noisy_head_gates_stay_in_unit_interval_and_keep_their_gradient():
  gate = noisy_jax.UnitNoise("hard_sigmoid", "nan", c=1.0)
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

  @jax.jit
  @chex.assert_max_traces(n=1)  # c changes from 0.5 to 30 below without a retrace
  def run(params, xs, memory_value, c, key):
    cell = noisy_jax.nn.NTMCell(**CELL, sigmoid=noisy_jax.UnitNoise("hard_sigmoid", "nah", c),
                                tanh=noisy_jax.UnitNoise("hard_tanh", "nan", c))
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


def test_fresh_state_uses_the_learned_initial_state():
  cell, carry, params = _linen_params()
  np.testing.assert_allclose(carry.memory, 1e-6, rtol=1e-6)  # Collier and Beel's constant
  x = jnp.ones((B, D))
  step = jax.jit(lambda carry: cell.apply({"params": params}, carry, x, deterministic=True))
  # At step 0 the state's reads and weightings are placeholders: garbage changes nothing.
  garbage = carry._replace(reads=carry.reads + 3.0, read_weighting=carry.read_weighting * 0)
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
  weights = ntm.NTMWeights(rnn_lib.LSTMWeights(**params["controller"]),
                           *[params[k] for k in ntm.NTMWeights._fields[1:]])
  with pytest.raises(ValueError, match="shift_range=2"):
    ntm.ntm_step(carry, x, weights, controller="lstm", shift_range=2, deterministic=True)
  with pytest.raises(ValueError, match=r"state.memory has shape"):
    cell.apply({"params": params}, carry._replace(memory=carry.memory[:, :3]), x,
                deterministic=True)
  with pytest.raises(ValueError, match="memory_size must be an integer >= 1"):
    ntm.initial_state((B,), controller="lstm", features=8, memory_size=0, memory_width=4)


# The whole step against reference_ntm.ntm_step, in float64 with the library's own
# draws: small sizes, 2 + 2 heads, 2-3 steps.
REF_SIZES = dict(features=6, memory_size=5, memory_width=4, num_read_heads=2,
                 num_write_heads=2)
REF_D, REF_B, REF_S, REF_CLIP = 3, 2, 1, 3.0
# Large c and |p| make sigma(x) 0.1-0.5 on saturated units. alpha = 1 points the
# gates' half-normal noise into [0, 1] (d(x) = -sgn(x)), where the heads' [0, 1]
# clip keeps it; alpha != 1 makes Eq. 13's expectation differ from h(x) too.
REF_SIGMOID = noisy_jax.UnitNoise(kind="hard_sigmoid", mode="nah", c=2.0, alpha=1.0)
REF_TANH = noisy_jax.UnitNoise(kind="hard_tanh", mode="nan", c=2.0, alpha=0.9)
REF_NOISE = {name: (gate.kind, gate.mode, gate.c, gate.alpha)
             for name, gate in (("sigmoid", REF_SIGMOID), ("tanh", REF_TANH))}
# Written from the docstrings (lstm_step's gates, then the heads'), not from gate_names().
GATE_NAMES = {
    "lstm": ("input", "forget", "output", "candidate", "cell", "interpolation", "erase"),
    "feedforward": ("hidden", "interpolation", "erase"),
}


def _ref_weights(controller, seed=0):
  """Random float64 weights, nested as weight_shapes(): many saturating pre-activations."""
  rng = np.random.default_rng(seed)
  shapes = ntm.weight_shapes(controller, REF_D, shift_range=REF_S, **REF_SIZES)

  def draw(name, shape):
    if name == "p" or name.startswith("p_"):
      return rng.choice([-1.0, 1.0], shape) * rng.uniform(2.0, 5.0, shape)
    return rng.normal(0.0, 1.0 if "bias" in name or "initial" in name else 1.5, shape)

  weights = {name: draw(name, shape) for name, shape in shapes.items() if name != "controller"}
  weights["controller"] = {name: draw(name, shape)
                           for name, shape in shapes["controller"].items()}
  return weights


def _library_weights(controller, weights):
  controller_type = rnn_lib.LSTMWeights if controller == "lstm" else ntm.FeedForwardWeights
  rest = {k: jnp.asarray(v) for k, v in weights.items() if k != "controller"}
  return ntm.NTMWeights(
      controller=controller_type(**{k: jnp.asarray(v) for k, v in weights["controller"].items()}),
      **rest)


def _fresh_state(controller):
  return ntm.initial_state((REF_B,), controller=controller, dtype=jnp.float64, **REF_SIZES)


def _random_state(controller, seed=1):
  """A state past step 0 for one example, at step 0 for the other.

  The LSTM's cell state, at 4-8 in size, stays beyond REF_CLIP where the forget
  gate saturates.
  """
  rng = np.random.default_rng(seed)
  n, m = REF_SIZES["memory_size"], REF_SIZES["memory_width"]
  r, w, h = REF_SIZES["num_read_heads"], REF_SIZES["num_write_heads"], REF_SIZES["features"]
  lstm = (jnp.asarray(rng.choice([-1.0, 1.0], (REF_B, h)) * rng.uniform(4.0, 8.0, (REF_B, h))),
          jnp.asarray(rng.uniform(-1.0, 1.0, (REF_B, h))))
  return ntm.NTMState(
      controller=lstm if controller == "lstm" else (),
      memory=jnp.asarray(rng.normal(size=(REF_B, n, m))),
      reads=jnp.asarray(rng.normal(size=(REF_B, r, m))),
      read_weighting=jnp.asarray(_softmax(rng.normal(size=(REF_B, r, n)))),
      write_weighting=jnp.asarray(_softmax(rng.normal(size=(REF_B, w, n)))),
      step=jnp.array([0, 3], jnp.int32))


def _step_key(seed, t):
  # Called once for the library and once for the reference's draws: equal keys,
  # two objects, so no key is used twice.
  return jax.random.key(1000 * seed + t)


def _ntm_draws(key, controller):
  """The standard-normal draws ntm_step makes from ``key``, by gate name (float64).

  ntm_step splits its key into (controller, interpolation gate, erase gate); the
  LSTM splits the controller's key over its three noisy calls: the sigmoid block
  [input, forget, output] (one draw), the candidate and the cell.
  """
  h, m = REF_SIZES["features"], REF_SIZES["memory_width"]
  heads = REF_SIZES["num_read_heads"] + REF_SIZES["num_write_heads"]
  controller_key, gate_key, erase_key = jax.random.split(key, 3)
  xi = lambda k, shape: np.asarray(noise.standard_normal(k, shape, jnp.float64), np.float64)
  if controller == "lstm":
    gates_key, candidate_key, cell_key = jax.random.split(controller_key, 3)
    draws = dict(zip(("input", "forget", "output"),
                     np.split(xi(gates_key, (REF_B, 3 * h)), 3, axis=-1)))
    draws.update(candidate=xi(candidate_key, (REF_B, h)), cell=xi(cell_key, (REF_B, h)))
  else:
    draws = {"hidden": xi(controller_key, (REF_B, h))}
  draws["interpolation"] = xi(gate_key, (REF_B, heads))
  draws["erase"] = xi(erase_key, (REF_B, REF_SIZES["num_write_heads"], m))
  return draws


def _as_dict(state):
  return {name: jax.tree.map(np.asarray, value) for name, value in state._asdict().items()}


def _reference_run(controller, state, xs, weights, draws, noisy_gates, clip_value=REF_CLIP):
  """reference_ntm.ntm_step over the steps; draws[t] None: deterministic."""
  state, trajectory = _as_dict(state), []
  for x, step_draws in zip(xs, draws):
    state, y = reference_ntm.ntm_step(
        state, x, weights, step_draws, controller=controller, shift_range=REF_S,
        noise=REF_NOISE, noisy_gates=noisy_gates, clip_value=clip_value)
    trajectory.append((state, y))
  return trajectory


def _library_run(step, controller, state, xs, weights, seed, deterministic):
  weights = _library_weights(controller, weights)
  trajectory = []
  for t, x in enumerate(xs):
    state, y = step(state, jnp.asarray(x), weights,
                    None if deterministic else _step_key(seed, t))
    trajectory.append((_as_dict(state), np.asarray(y)))
  return trajectory


def _assert_same_run(got, want):
  for t, ((got_state, got_y), (want_state, want_y)) in enumerate(zip(got, want, strict=True)):
    np.testing.assert_allclose(got_y, want_y, rtol=1e-10, atol=1e-10, err_msg=f"step {t}: output")
    for name, value in want_state.items():
      np.testing.assert_allclose(np.asarray(got_state[name]), np.asarray(value), rtol=1e-10,
                                 atol=1e-10, err_msg=f"step {t}: state.{name}")


def _distance(run, other):
  """The largest difference of two reference runs' outputs and states."""
  leaves = lambda run: [np.ravel(leaf) for leaf in jax.tree.leaves(run)]
  return max(np.max(np.abs(a - b), initial=0.0) for a, b in zip(leaves(run), leaves(other)))


def _inputs(seed, steps):
  # Scale 2.5: some inputs exceed REF_CLIP.
  return np.random.default_rng(seed).normal(0.0, 2.5, (steps, REF_B, REF_D))


def _step_fn(controller, noisy_gates, deterministic, clip_value=REF_CLIP):
  return functools.partial(ntm.ntm_step, controller=controller, shift_range=REF_S,
                           sigmoid=REF_SIGMOID, tanh=REF_TANH, noisy_gates=noisy_gates,
                           clip_value=clip_value, deterministic=deterministic)


class NTMStepReferenceTest(chex.TestCase):
  """ntm_step against the float64 reference step: controller, heads' layout, step 0,
  clipping, the reads' M_{t-1}, the noise of each gate."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(controller=("lstm", "feedforward"), deterministic=(True, False))
  def test_steps_match_the_float64_reference(self, controller, deterministic):
    weights = _ref_weights(controller)
    names = GATE_NAMES[controller]
    with jax.enable_x64(True):
      step = self.variant(_step_fn(controller, None, deterministic))
      for seed, (state, steps) in enumerate([(_fresh_state(controller), 3),
                                             (_random_state(controller), 2)]):
        xs = _inputs(seed, steps)
        draws = [None if deterministic else _ntm_draws(_step_key(seed, t), controller)
                 for t in range(steps)]
        got = _library_run(step, controller, state, xs, weights, seed, deterministic)
        want = _reference_run(controller, state, xs, weights, draws, names)
        _assert_same_run(got, want)
        # The clip is active here, and the noise (or its expectation) shows.
        unclipped = _reference_run(controller, state, xs, weights, draws, names, None)
        assert _distance(want, unclipped) > 1e-3
        plain = _reference_run(controller, state, xs, weights, draws, ())
        assert _distance(want, plain) > 1e-3


def _noisy_gate_cases():
  for controller, names in GATE_NAMES.items():
    yield pytest.param(controller, (), id=f"{controller}-none")
    yield pytest.param(controller, names, id=f"{controller}-all")
    for name in names:
      yield pytest.param(controller, (name,), id=f"{controller}-only-{name}")
      yield pytest.param(controller, tuple(n for n in names if n != name),
                         id=f"{controller}-all-but-{name}")


@pytest.mark.parametrize("controller,noisy_gates", list(_noisy_gate_cases()))
def test_noise_goes_to_the_named_gates_only(controller, noisy_gates):
  weights, seed, steps = _ref_weights(controller), 2, 2
  xs = _inputs(seed, steps)
  with jax.enable_x64(True):
    state = _random_state(controller)
    draws = [_ntm_draws(_step_key(seed, t), controller) for t in range(steps)]
    got = _library_run(_step_fn(controller, noisy_gates, False), controller, state, xs,
                       weights, seed, False)
  want = _reference_run(controller, state, xs, weights, draws, noisy_gates)
  _assert_same_run(got, want)
  # Noise on or off at any single gate changes the numbers far beyond the tolerance,
  # so noise on a wrong gate (or a gate left quiet) fails the comparison above.
  for name in GATE_NAMES[controller]:
    toggled = tuple(set(noisy_gates) ^ {name})
    other = _reference_run(controller, state, xs, weights, draws, toggled)
    assert _distance(want, other) > 1e-3, name


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
@pytest.mark.parametrize("clip_value", [0.5, None])
def test_clip_value_matches_the_reference(controller, clip_value):
  # At 0.5 the clip bounds even the controller's output and the LSTM's state.
  weights, seed, steps = _ref_weights(controller), 3, 2
  xs = _inputs(seed, steps)
  with jax.enable_x64(True):
    state = _random_state(controller)
    draws = [_ntm_draws(_step_key(seed, t), controller) for t in range(steps)]
    got = _library_run(_step_fn(controller, None, False, clip_value), controller, state, xs,
                       weights, seed, False)
  want = _reference_run(controller, state, xs, weights, draws, GATE_NAMES[controller],
                        clip_value)
  _assert_same_run(got, want)
  if clip_value is not None:  # the clip is reached (an unclipped value would exceed it)
    hidden = np.stack([y[:, :REF_SIZES["features"]] for _, y in want])
    assert np.max(np.abs(hidden)) == clip_value
    if controller == "lstm":
      assert np.max(np.abs([s["controller"][0] for s, _ in want])) == clip_value


def test_gate_names_are_the_documented_ones():
  for controller, names in GATE_NAMES.items():
    assert ntm.gate_names(controller) == names


def test_a_controller_is_a_table_entry():
  spec = ntm.CONTROLLERS["feedforward"]._replace(name="my_feedforward")
  assert ntm.gate_names(spec) == GATE_NAMES["feedforward"]
  assert ntm.weight_shapes(spec, REF_D, **REF_SIZES) == ntm.weight_shapes(
      "feedforward", REF_D, **REF_SIZES)
  weights = _library_weights("feedforward", _ref_weights("feedforward"))
  x = jnp.ones((REF_B, REF_D))
  run = lambda controller: ntm.ntm_step(
      ntm.initial_state((REF_B,), controller=controller, **REF_SIZES), x, weights,
      controller=controller, shift_range=REF_S, deterministic=True)
  chex.assert_trees_all_equal(run(spec), run("feedforward"))
  with pytest.raises(ValueError, match="Unknown controller='gru'. Valid values: 'lstm', "):
    ntm.weight_shapes("gru", REF_D, **REF_SIZES)


def test_a_state_of_another_controller_raises():
  x = jnp.ones((REF_B, REF_D))
  for controller, other in (("lstm", "feedforward"), ("feedforward", "lstm")):
    weights = _library_weights(controller, _ref_weights(controller))
    state = ntm.initial_state((REF_B,), controller=other, **REF_SIZES)
    parts = ", ".join(ntm.CONTROLLERS[controller].state_parts)
    with pytest.raises(ValueError, match=re.escape(
        f"state.controller does not fit controller={controller!r}, whose state is ({parts})")):
      ntm.ntm_step(state, x, weights, controller=controller, shift_range=REF_S,
                   deterministic=True)


def test_head_layout_is_the_head_kernel_layout():
  layout = ntm.head_layout(4, 2, 3, 2)
  assert ntm.HeadParams._fields == ("content_key", "key_strength", "interpolation_gate",
                                    "shift_weighting", "sharpening", "erase", "add")
  assert layout == ((5, 4), (5,), (5,), (5, 5), (5,), (3, 4), (3, 4))
  assert sum(int(np.prod(shape)) for shape in layout) == ntm.weight_shapes(
      "lstm", 3, 6, 7, 4, 2, 3, 2)["head_bias"][0]

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


@pytest.mark.slow  # a training run (about 40 s on 2 cores): `make test-slow`
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
