"""A new cell kind is one CellSpec entry plus its elementwise step.

The test defines a minimal gated unit (MGU: one forget gate, Zhou et al., 2016, in
the GRU's "reset after the matmul" form that keeps one fused recurrent matmul per
step) entirely here, and checks that the library's single step, its whole-sequence
scan with the hand-written VJP, and the Linen and NNX adapters run it with no other
change: the scan equals the scanned step, values and gradients.
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import noisy_jax
from noisy_jax._src import linen
from noisy_jax._src import nnx as noisy_nnx
from noisy_jax._src import rnn

B, T, D, H = 2, 3, 3, 4


class MGUWeights(NamedTuple):
  input_kernel: jax.Array
  recurrent_kernel: jax.Array
  bias: jax.Array
  recurrent_bias: jax.Array
  p_gates: jax.Array
  p_candidate: jax.Array


def _mgu_elementwise(static, pre, carry, seeds, small, scales):
  """f = phi_s(z_f); n = phi_t(x W_n + b_n + f (h U_n + b_hn)); h' = (1 - f) h + f n."""
  gate_pre, x_candidate, h_candidate = pre
  recurrent_bias, p_gates, p_candidate = small
  sigmoid, tanh = noisy_jax.rnn.units(static, scales)
  seeds = (None,) * 2 if seeds is None else seeds
  groups = [noisy_jax.rnn.UnitGroups(gate_pre, seeds[0], p_gates, sigmoid, static.sigmoid_noisy)]
  forget = noisy_jax.rnn.activate(*groups[0], static)
  groups.append(noisy_jax.rnn.UnitGroups(x_candidate + forget * (h_candidate + recurrent_bias),
                                         seeds[1], p_candidate, tanh, static.tanh_noisy))
  candidate = noisy_jax.rnn.activate(*groups[1], static)
  return (1.0 - forget) * carry + forget * candidate, tuple(groups)


def _split(x_proj, r):
  hidden = r.shape[-1] // 2
  return x_proj[..., :hidden] + r[..., :hidden], x_proj[..., hidden:], r[..., hidden:]


def _split_transpose(d_pre):
  d_gate, d_x_candidate, d_h_candidate = d_pre
  return (jnp.concatenate([d_gate, d_x_candidate], -1),
          jnp.concatenate([d_gate, d_h_candidate], -1))


def _load(row, h_candidate):
  hidden = h_candidate.shape[-1]
  return row[..., :hidden], row[..., hidden:], h_candidate


def _kernel_grad(h_prev, d_rows, d_h_candidates, x_axes):
  hidden = h_prev.shape[-1]
  return jnp.concatenate([jnp.einsum(f"tbh,{x_axes}->hg", h_prev, d_rows[..., :hidden]),
                          jnp.einsum("tbh,tbg->hg", h_prev, d_h_candidates)], -1)


MGU = rnn.CellSpec(
    name="mgu", title="MGU", gates=("forget", "candidate"), sigmoid_gates=("forget",),
    tanh_gates=("candidate",), carry_parts=("hidden",), num_streams=2,
    stream_widths=lambda h: (h, h), num_blocks=2,
    weights_type=MGUWeights,
    shapes=lambda d, h: {"input_kernel": (d, 2 * h), "recurrent_kernel": (h, 2 * h),
                         "bias": (2 * h,), "recurrent_bias": (h,), "p_gates": (h,),
                         "p_candidate": (h,)},
    small=lambda w: (w.recurrent_bias, w.p_gates, w.p_candidate),
    split=_split, split_transpose=_split_transpose,
    store=lambda pre: (jnp.concatenate(pre[:2], -1), pre[2]), load=_load,
    kernel_grad=_kernel_grad, elementwise=_mgu_elementwise)


def _weights():
  shapes = MGU.shapes(D, H)
  keys = jax.random.split(jax.random.key(0), len(shapes))
  return MGUWeights(*(0.5 * jax.random.normal(k, s) for k, s in zip(keys, shapes.values())))


def _scanned_steps(weights, xs, key):
  keys = jax.random.split(key, T)

  def body(carry, inputs):
    x, step_key = inputs
    x_proj = rnn.input_projection(x, weights.input_kernel, weights.bias)
    return rnn.step(MGU, carry, x_proj, weights, step_key)

  carry, ys = jax.lax.scan(body, jnp.zeros((B, H)), (jnp.swapaxes(xs, 0, 1), keys))
  return carry, jnp.swapaxes(ys, 0, 1)


def test_new_cell_kind_sequence_equals_scanned_step_with_gradients():
  weights = _weights()
  xs = jax.random.normal(jax.random.key(1), (B, T, D))
  # The same key for every run, re-made each time (jax_debug_key_reuse is on).
  key = lambda: jax.random.wrap_key_data(jax.random.key_data(jax.random.key(2)))
  loss = lambda fn: (lambda w, x: sum(jnp.sum(jnp.sin(leaf))
                                      for leaf in jax.tree.leaves(fn(w, x, key()))))
  sequence = lambda w, x, k: rnn.sequence(MGU, x, w, k)
  np.testing.assert_allclose(sequence(weights, xs, key())[1],
                             _scanned_steps(weights, xs, key())[1], rtol=1e-5, atol=1e-6)
  got = jax.grad(loss(sequence), argnums=(0, 1))(weights, xs)
  want = jax.grad(loss(_scanned_steps), argnums=(0, 1))(weights, xs)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
  quiet = rnn.sequence(MGU, xs, weights, deterministic=True)
  assert not np.allclose(sequence(weights, xs, key())[1], quiet[1])  # its noise is drawn


class LinenMGUCell(linen._NoisyRNNCell):
  noisy_gates: tuple[str, ...] = MGU.gates
  _spec = MGU


class NNXMGU(noisy_nnx._NoisyNNXSequence):
  _spec = MGU


def test_new_cell_kind_runs_in_both_adapters_unchanged():
  xs = jax.random.normal(jax.random.key(3), (B, T, D))
  rnn_module = noisy_jax.nn.noisy_rnn(LinenMGUCell(H))
  variables = rnn_module.init({"params": jax.random.key(4), "noise": jax.random.key(5)}, xs)
  assert jax.tree.map(jnp.shape, variables["params"]["cell"]) == MGU.shapes(D, H)
  ys = rnn_module.apply(variables, xs, rngs={"noise": jax.random.key(6)})
  layer = NNXMGU(D, H, rngs=nnx.Rngs(params=7, noise=8))
  assert layer(xs).shape == ys.shape == (B, T, H)
  assert isinstance(rnn_module, nn.RNN)
