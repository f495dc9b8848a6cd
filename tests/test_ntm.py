"""Tests of the NTM addressing (against reference_ntm.py) and the NTM cells."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from noisy_jax import ntm
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
