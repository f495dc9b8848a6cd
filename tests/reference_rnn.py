"""Float64 NumPy references of the noisy LSTM and GRU, written from the equations.

Gulcehre et al. 2016, Sec. 6: each sigmoid gate of a recurrent cell is a noisy
hard-sigmoid and each tanh a noisy hard-tanh (:func:`tests.reference.noisy`), with one
``p`` per unit per gate; a gate left out of ``noisy_gates`` is the plain activation
``h``. Each gate is computed on its own here, from its own block of the fused weights
(the layout of ``noisy_jax.rnn``, described in ``noisy_jax/_src/rnn.py``): LSTM blocks
``[input, forget, output, candidate]``, GRU blocks ``[reset, update, candidate]``.

The steps take the standard-normal draws explicitly, in the shapes the library draws
them: LSTM ``(xi_gates (B, 3H), xi_candidate (B, H), xi_cell (B, H))`` with the three
sigmoid gates' draws side by side, GRU ``(xi_gates (B, 2H), xi_candidate (B, H))``.
``draws=None`` gives the test-time expectation (Eq. 13) of the noisy gates.
"""

import numpy as np

from tests import reference

LSTM_GATES = ("input", "forget", "output", "candidate", "cell")
GRU_GATES = ("reset", "update", "candidate")


def unit(x, xi, p, gate, noisy):
  """One gate: ``phi(x, xi)`` if noisy (the expectation if ``xi`` is None), else ``h(x)``.

  ``gate`` has the fields of ``noisy_jax.rnn.UnitNoise`` (``kind``, ``mode``, ``c``,
  ``alpha``, ``nanil_scale``), with ``c`` and ``alpha`` given.
  """
  if not noisy:
    return reference.h(np.asarray(x, np.float64), gate.kind)
  if xi is None:
    return reference.expectation(x, p, gate.c, gate.alpha, gate.mode, gate.kind)
  return reference.noisy(x, xi, p, gate.c, gate.alpha, gate.mode, gate.kind,
                         nanil_scale=gate.nanil_scale)


def _blocks(a, num_blocks):
  return np.split(np.asarray(a, np.float64), num_blocks, axis=-1)


def _f64(params):
  return {name: np.asarray(value, np.float64) for name, value in params.items()}


def lstm_step(carry, x, params, draws, sigmoid, tanh, noisy_gates=LSTM_GATES):
  """One noisy LSTM step from ``(c, h)`` and the input ``x (B, D)``: returns ``(c, h)``.

  i, f, o = phi_s(z_i), phi_s(z_f), phi_s(z_o); g = phi_t(z_g);
  c' = f c + i g; h' = o phi_t(c'), with z = x W + b + h U.
  """
  p = _f64(params)
  c, h = (np.asarray(a, np.float64) for a in carry)
  z = np.asarray(x, np.float64) @ p["input_kernel"] + p["bias"] + h @ p["recurrent_kernel"]
  z_i, z_f, z_o, z_g = _blocks(z, 4)
  p_i, p_f, p_o = _blocks(p["p_gates"], 3)
  xi_gates, xi_g, xi_c = (None, None, None) if draws is None else draws
  xi_i, xi_f, xi_o = (None, None, None) if xi_gates is None else _blocks(xi_gates, 3)
  i = unit(z_i, xi_i, p_i, sigmoid, "input" in noisy_gates)
  f = unit(z_f, xi_f, p_f, sigmoid, "forget" in noisy_gates)
  o = unit(z_o, xi_o, p_o, sigmoid, "output" in noisy_gates)
  g = unit(z_g, xi_g, p["p_candidate"], tanh, "candidate" in noisy_gates)
  c = f * c + i * g
  return c, o * unit(c, xi_c, p["p_cell"], tanh, "cell" in noisy_gates)


def gru_step(h, x, params, draws, sigmoid, tanh, noisy_gates=GRU_GATES):
  """One noisy GRU step (the equations of ``flax.linen.GRUCell``): returns ``h'``.

  r = phi_s(x W_r + b_r + h U_r); u = phi_s(x W_u + b_u + h U_u);
  n = phi_t(x W_n + b_n + r (h U_n + b_hn)); h' = (1 - u) n + u h.
  """
  p = _f64(params)
  h = np.asarray(h, np.float64)
  x_r, x_u, x_n = _blocks(np.asarray(x, np.float64) @ p["input_kernel"] + p["bias"], 3)
  h_r, h_u, h_n = _blocks(h @ p["recurrent_kernel"], 3)
  p_r, p_u = _blocks(p["p_gates"], 2)
  xi_gates, xi_n = (None, None) if draws is None else draws
  xi_r, xi_u = (None, None) if xi_gates is None else _blocks(xi_gates, 2)
  r = unit(x_r + h_r, xi_r, p_r, sigmoid, "reset" in noisy_gates)
  u = unit(x_u + h_u, xi_u, p_u, sigmoid, "update" in noisy_gates)
  n = unit(x_n + r * (h_n + p["recurrent_bias"]), xi_n, p["p_candidate"], tanh,
           "candidate" in noisy_gates)
  return (1.0 - u) * n + u * h


def lstm_sequence(xs, params, draws, sigmoid, tanh, noisy_gates=LSTM_GATES, carry=None):
  """:func:`lstm_step` over ``xs (B, T, D)``; ``draws[t]`` is step t's (or ``draws=None``).

  Returns ``((c_T, h_T), ys)`` with ``ys (B, T, H)``; the carry starts at zeros.
  """
  xs = np.asarray(xs, np.float64)
  hidden = np.shape(params["recurrent_kernel"])[0]
  if carry is None:
    carry = (np.zeros((xs.shape[0], hidden)),) * 2
  outputs = []
  for t in range(xs.shape[1]):
    carry = lstm_step(carry, xs[:, t], params, None if draws is None else draws[t], sigmoid,
                      tanh, noisy_gates)
    outputs.append(carry[1])
  return carry, np.stack(outputs, axis=1)


def gru_sequence(xs, params, draws, sigmoid, tanh, noisy_gates=GRU_GATES, carry=None):
  """:func:`gru_step` over ``xs (B, T, D)``: returns ``(h_T, ys)``, ``ys (B, T, H)``."""
  xs = np.asarray(xs, np.float64)
  hidden = np.shape(params["recurrent_kernel"])[0]
  h = np.zeros((xs.shape[0], hidden)) if carry is None else carry
  outputs = []
  for t in range(xs.shape[1]):
    h = gru_step(h, xs[:, t], params, None if draws is None else draws[t], sigmoid, tanh,
                 noisy_gates)
    outputs.append(h)
  return h, np.stack(outputs, axis=1)
