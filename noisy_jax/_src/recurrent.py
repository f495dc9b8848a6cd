"""Noisy LSTM and GRU steps and whole-sequence scans (Gulcehre et al., 2016, Sec. 6).

Pure functions shared by the Linen (:mod:`noisy_jax.nn`) and NNX
(:mod:`noisy_jax.nnx`) modules: every sigmoid gate becomes a noisy hard-sigmoid and
every tanh a noisy hard-tanh (:func:`noisy_jax.noisy_activation`), with one learned
``p`` per unit per gate.

Weight layout (one fused matrix per side, gate blocks side by side):

* LSTM: ``input_kernel (D, 4H)``, ``recurrent_kernel (H, 4H)``, ``bias (4H,)`` with
  column blocks ``[input, forget, output, candidate]``; ``p_gates (3H,)`` for the
  three sigmoid gates, ``p_candidate (H,)`` for the candidate tanh and ``p_cell (H,)``
  for the tanh of the new cell state.
* GRU: ``input_kernel (D, 3H)``, ``recurrent_kernel (H, 3H)``, ``bias (3H,)`` with
  blocks ``[reset, update, candidate]``, ``recurrent_bias (H,)`` inside the reset
  product (as in ``flax.linen.GRUCell``); ``p_gates (2H,)``, ``p_candidate (H,)``.

Neither a single step nor a whole sequence keeps its noise or gate values for the
backward pass: a step's elementwise part is wrapped in ``jax.checkpoint``, and the
whole-sequence scans (:func:`lstm_sequence`, :func:`gru_sequence`) have a
hand-written VJP that keeps the pre-activations and previous states and draws the
noise again from the step keys.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax.linen import recurrent as linen_recurrent

from noisy_jax._src import activations
from noisy_jax._src import noise

LSTM_GATES = ("input", "forget", "output", "candidate", "cell")
GRU_GATES = ("reset", "update", "candidate")

SIGMOID_KINDS = ("hard_sigmoid", "sigmoid")
TANH_KINDS = ("hard_tanh", "tanh")

# Gates (in column order) that the sigmoid part of each cell's pre-activation holds.
_LSTM_SIGMOID_GATES = ("input", "forget", "output")
_GRU_SIGMOID_GATES = ("reset", "update")


class GateNoise(NamedTuple):
  """How one kind of gate is activated: :math:`h`, the noise variant, ``c``, ``alpha``.

  Attributes:
    kind: the activation :math:`h`: ``"hard_sigmoid"``/``"sigmoid"`` for gates,
      ``"hard_tanh"``/``"tanh"`` for the tanh units.
    mode: ``"nan"``, ``"nah"``, ``"nani"``, ``"nanil"`` or ``"nanis"``.
    c: the paper's :math:`c`; ``None`` takes the reference code's default for
      ``kind`` and ``mode``. A scalar or per-unit array; may be traced.
    alpha: the paper's :math:`\\alpha`; ``None`` takes the reference default.
    nanil_scale: how ``"nanil"`` learns its scale, ``"reference"`` (default) or
      ``"paper"`` (see :func:`noisy_jax.noisy_activation`); unused by other modes.
  """

  kind: str
  mode: str
  c: Any = None
  alpha: Any = None
  nanil_scale: str = activations.DEFAULT_NANIL_SCALE


# Reference-code defaults (PAPERS.md A.2): NSigmoidP is half-normal, NTanhP normal.
SIGMOID_GATE = GateNoise("hard_sigmoid", "nah")
TANH_UNIT = GateNoise("hard_tanh", "nan")


class LSTMWeights(NamedTuple):
  """Learned parameters of a noisy LSTM (layout in the module docstring)."""

  input_kernel: jax.Array
  recurrent_kernel: jax.Array
  bias: jax.Array
  p_gates: jax.Array
  p_candidate: jax.Array
  p_cell: jax.Array


class GRUWeights(NamedTuple):
  """Learned parameters of a noisy GRU (layout in the module docstring)."""

  input_kernel: jax.Array
  recurrent_kernel: jax.Array
  bias: jax.Array
  recurrent_bias: jax.Array
  p_gates: jax.Array
  p_candidate: jax.Array


def weight_shapes(cell: str, in_features: int, hidden_features: int) -> dict[str, tuple[int, ...]]:
  """Shapes of the parameters of a noisy ``"lstm"`` or ``"gru"``, by name, in order.

  Args:
    cell: ``"lstm"`` or ``"gru"``.
    in_features: input size :math:`D`.
    hidden_features: hidden size :math:`H`.

  Returns:
    A dict from parameter name to shape, in the field order of
    :class:`LSTMWeights` / :class:`GRUWeights`.

  Example:
    >>> from noisy_jax._src import recurrent
    >>> recurrent.weight_shapes("gru", 3, 2)["recurrent_bias"]
    (2,)
  """
  activations._check_choice(cell, "cell", ("lstm", "gru"))
  d, h = in_features, hidden_features
  if cell == "lstm":
    return {
        "input_kernel": (d, 4 * h), "recurrent_kernel": (h, 4 * h), "bias": (4 * h,),
        "p_gates": (3 * h,), "p_candidate": (h,), "p_cell": (h,),
    }
  return {
      "input_kernel": (d, 3 * h), "recurrent_kernel": (h, 3 * h), "bias": (3 * h,),
      "recurrent_bias": (h,), "p_gates": (2 * h,), "p_candidate": (h,),
  }


def blockwise(init: Callable, num_blocks: int) -> Callable:
  """Applies ``init`` to each of ``num_blocks`` equal column blocks of a kernel.

  A fused ``(H, 4H)`` recurrent kernel then starts as four orthogonal ``(H, H)``
  blocks, like ``flax.linen.OptimizedLSTMCell``'s per-gate kernels.
  """

  def init_fn(key, shape, dtype=jnp.float32):
    *lead, width = shape
    keys = jax.random.split(key, num_blocks)
    blocks = [init(k, (*lead, width // num_blocks), dtype) for k in keys]
    return jnp.concatenate(blocks, axis=-1)

  return init_fn


def initializer_for(name: str, kernel_init: Callable, recurrent_kernel_init: Callable,
                    bias_init: Callable, p_init: Callable, num_blocks: int) -> Callable:
  """The initializer of parameter ``name`` of :func:`weight_shapes`."""
  if name == "input_kernel":
    return blockwise(kernel_init, num_blocks)
  if name == "recurrent_kernel":
    return blockwise(recurrent_kernel_init, num_blocks)
  if name.startswith("p_"):
    return p_init
  return bias_init


def check_gate_noise(gate: GateNoise, prefix: str) -> GateNoise:
  """Validates a :class:`GateNoise`; ``prefix`` (``"sigmoid"``/``"tanh"``) names the fields."""
  kinds = SIGMOID_KINDS if prefix == "sigmoid" else TANH_KINDS
  activations._check_choice(gate.kind, f"{prefix}_kind", kinds)
  activations._check_choice(gate.mode, f"{prefix}_mode", activations.MODES)
  activations._check_choice(gate.nanil_scale, f"{prefix}_nanil_scale",
                            activations.NANIL_SCALES)
  return gate


def check_noisy_gates(noisy_gates: Sequence[str], valid: tuple[str, ...]) -> tuple[str, ...]:
  """Validates ``noisy_gates`` (names from ``valid``) and returns it as a tuple."""
  if isinstance(noisy_gates, str):
    raise TypeError(
        f"noisy_gates must be a sequence of gate names, got the string {noisy_gates!r}. "
        f"Fix: pass a tuple, e.g. noisy_gates=({noisy_gates!r},)."
    )
  for name in noisy_gates:
    activations._check_choice(name, "noisy_gates entry", valid)
  return tuple(noisy_gates)


def _check_keyed(key: jax.Array | None, deterministic: bool) -> jax.Array | None:
  if deterministic:
    return None
  if key is None:
    raise ValueError(
        "key is required when deterministic=False: the noisy gates need a PRNG key. "
        "Fix: pass key=jax.random.key(seed) (fresh for every call), or "
        "deterministic=True for the test-time expectation."
    )
  return noise.as_typed_key(key)


class _Static(NamedTuple):
  """Hashable, trace-time settings of one step."""

  sigmoid_kind: str
  sigmoid_mode: str
  sigmoid_nanil_scale: str
  tanh_kind: str
  tanh_mode: str
  tanh_nanil_scale: str
  sigmoid_noisy: tuple[bool, ...]  # one flag per sigmoid gate, in column order
  tanh_noisy: tuple[bool, ...]  # LSTM: (candidate, cell); GRU: (candidate,)
  deterministic: bool


def _static(sigmoid: GateNoise, tanh: GateNoise, noisy_gates, sigmoid_gates,
            tanh_gates, deterministic) -> _Static:
  check_gate_noise(sigmoid, "sigmoid")
  check_gate_noise(tanh, "tanh")
  return _Static(
      sigmoid.kind, sigmoid.mode, sigmoid.nanil_scale, tanh.kind, tanh.mode,
      tanh.nanil_scale, tuple(g in noisy_gates for g in sigmoid_gates),
      tuple(g in noisy_gates for g in tanh_gates),
      bool(deterministic),
  )


def _resolve(gate: GateNoise, shape: tuple[int, ...], prefix: str) -> GateNoise:
  """Fills in the reference defaults of c and alpha and validates what is concrete.

  ``prefix`` (``"sigmoid"``/``"tanh"``) names the fields in errors, as the modules do.
  """
  default_c, default_alpha = activations.reference_defaults(gate.mode, gate.kind)
  c = default_c if gate.c is None else gate.c
  alpha = default_alpha if gate.alpha is None else gate.alpha
  return gate._replace(c=activations._check_scale(c, shape, f"{prefix}_c"),
                       alpha=activations._check_alpha(alpha, shape, f"{prefix}_alpha"))


def _scales(sigmoid: GateNoise, tanh: GateNoise, sigmoid_shape, tanh_shape):
  """``(c, alpha)`` of the sigmoid gates then of the tanh units, resolved."""
  sigmoid = _resolve(sigmoid, sigmoid_shape, "sigmoid")
  tanh = _resolve(tanh, tanh_shape, "tanh")
  return sigmoid.c, sigmoid.alpha, tanh.c, tanh.alpha


def _activate(x, key, p, c, alpha, kind, mode, nanil_scale, noisy: tuple[bool, ...],
              deterministic):
  """Noisy activation of ``len(noisy)`` equal column blocks of ``x``; quiet blocks get h(x)."""
  if not any(noisy):
    return activations.activation(x, kind=kind)
  y = activations.noisy_activation(
      x, key, p, c, alpha, mode, kind=kind, deterministic=deterministic,
      nanil_scale=nanil_scale,
  )
  if all(noisy):
    return y
  mask = np.repeat(np.asarray(noisy), x.shape[-1] // len(noisy))
  return jnp.where(mask, y, activations.activation(x, kind=kind))


def _lstm_math(static: _Static, z, c, key, p_gates, p_candidate, p_cell, scales):
  """The elementwise part of an LSTM step: (z, c_prev) -> (c, h)."""
  c_sig, alpha_sig, c_tanh, alpha_tanh = scales
  hidden = c.shape[-1]
  keys = (None,) * 3 if key is None else jax.random.split(key, 3)
  gates = _activate(
      z[..., : 3 * hidden], keys[0], p_gates, c_sig, alpha_sig, static.sigmoid_kind,
      static.sigmoid_mode, static.sigmoid_nanil_scale, static.sigmoid_noisy,
      static.deterministic,
  )
  candidate = _activate(
      z[..., 3 * hidden:], keys[1], p_candidate, c_tanh, alpha_tanh, static.tanh_kind,
      static.tanh_mode, static.tanh_nanil_scale, static.tanh_noisy[:1],
      static.deterministic,
  )
  input_gate, forget_gate, output_gate = jnp.split(gates, 3, axis=-1)
  new_c = forget_gate * c + input_gate * candidate
  squashed = _activate(
      new_c, keys[2], p_cell, c_tanh, alpha_tanh, static.tanh_kind, static.tanh_mode,
      static.tanh_nanil_scale, static.tanh_noisy[1:], static.deterministic,
  )
  return new_c, output_gate * squashed


def _gru_math(static: _Static, gate_pre, x_candidate, h_candidate, h, key, recurrent_bias,
              p_gates, p_candidate, scales):
  """The elementwise part of a GRU step: pre-activations and h_prev -> h."""
  c_sig, alpha_sig, c_tanh, alpha_tanh = scales
  keys = (None,) * 2 if key is None else jax.random.split(key, 2)
  gates = _activate(
      gate_pre, keys[0], p_gates, c_sig, alpha_sig, static.sigmoid_kind,
      static.sigmoid_mode, static.sigmoid_nanil_scale, static.sigmoid_noisy,
      static.deterministic,
  )
  reset, update = jnp.split(gates, 2, axis=-1)
  candidate = _activate(
      x_candidate + reset * (h_candidate + recurrent_bias), keys[1], p_candidate, c_tanh,
      alpha_tanh, static.tanh_kind, static.tanh_mode, static.tanh_nanil_scale,
      static.tanh_noisy, static.deterministic,
  )
  return (1.0 - update) * candidate + update * h


# For a single step under autodiff: jax.checkpoint makes the backward pass recompute
# gates and noise from the pre-activations, the previous state and the key. The jit
# keeps an eager-mode gradient inside one traced remat, which the key-reuse checker
# (jax_debug_key_reuse) knows does not consume the key a second time.
_lstm_elementwise = jax.jit(jax.checkpoint(_lstm_math, static_argnums=(0,)),
                            static_argnums=(0,))
_gru_elementwise = jax.jit(jax.checkpoint(_gru_math, static_argnums=(0,)),
                           static_argnums=(0,))


def input_projection(x: jax.typing.ArrayLike, input_kernel: jax.typing.ArrayLike,
                     bias: jax.typing.ArrayLike) -> jax.Array:
  r"""The input half of every gate's pre-activation, :math:`x W + b`.

  Args:
    x: inputs of shape ``(..., D)``.
    input_kernel: ``(D, G)`` fused input kernel (``G = 4H`` LSTM, ``3H`` GRU).
    bias: ``(G,)``.

  Returns:
    ``(..., G)`` pre-activations.
  """
  return jnp.dot(x, input_kernel) + bias


def _carry_pair(carry, hidden: int, argname: str = "carry"):
  if not (isinstance(carry, (tuple, list)) and len(carry) == 2):
    raise ValueError(
        f"{argname} of a noisy LSTM must be the pair (c, h), got {type(carry).__name__}. "
        "Fix: build it with the cell's initialize_carry."
    )
  for part, name in zip(carry, ("c", "h")):
    if jnp.shape(part)[-1:] != (hidden,):
      raise ValueError(
          f"{argname}[{'ch'.index(name)}] ({name}) has shape {jnp.shape(part)}; its last "
          f"axis must be the hidden size {hidden}. Fix: build it with the cell's "
          "initialize_carry."
      )
  return tuple(carry)


def _check_gru_carry(carry, hidden: int, argname: str = "carry"):
  if jnp.shape(carry)[-1:] != (hidden,):
    raise ValueError(
        f"{argname} of a noisy GRU has shape {jnp.shape(carry)}; its last axis must be the "
        f"hidden size {hidden}. Fix: build it with the cell's initialize_carry."
    )
  return carry


def lstm_step(
    carry: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike],
    x_proj: jax.typing.ArrayLike,
    weights: LSTMWeights,
    key: jax.Array | None = None,
    *,
    sigmoid: GateNoise = SIGMOID_GATE,
    tanh: GateNoise = TANH_UNIT,
    noisy_gates: Sequence[str] = LSTM_GATES,
    deterministic: bool = False,
) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
  r"""One step of the noisy LSTM (every gate a noisy unit).

  .. math::
    [z_i, z_f, z_o, z_g] = x_t W + b + h_{t-1} U, \qquad
    i, f, o = \phi_s([z_i, z_f, z_o], \xi_1), \quad g = \phi_t(z_g, \xi_2),

    c_t = f \odot c_{t-1} + i \odot g, \qquad
    h_t = o \odot \phi_t(c_t, \xi_3)

  where :math:`\phi_s`, :math:`\phi_t` are the noisy hard-sigmoid and hard-tanh of
  Eq. 12 (or the input-noise variants of Eqs. 14-15), with one learned ``p`` per
  unit per gate (Gulcehre et al., 2016, Sec. 6.3).

  Args:
    carry: ``(c, h)``, each ``(..., H)``.
    x_proj: ``(..., 4H)``, the step's :func:`input_projection`.
    weights: :class:`LSTMWeights` (only the recurrent kernel and ``p`` are used).
    key: PRNG key for this step's noise; split into the three noisy calls.
      Required unless ``deterministic``.
    sigmoid: :class:`GateNoise` of the input, forget and output gates.
    tanh: :class:`GateNoise` of the candidate and of the cell-state squashing.
    noisy_gates: names from ``("input", "forget", "output", "candidate", "cell")``
      whose activation is noisy; the others use the plain activation ``kind``.
    deterministic: replace the noise by its expectation (Eq. 13).

  Returns:
    ``((c_t, h_t), h_t)``, the new carry and the output.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from noisy_jax._src import recurrent
    >>> h = 2
    >>> w = recurrent.LSTMWeights(jnp.ones((3, 4 * h)), jnp.ones((h, 4 * h)),
    ...     jnp.zeros(4 * h), jnp.ones(3 * h), jnp.ones(h), jnp.ones(h))
    >>> carry = (jnp.zeros((1, h)), jnp.zeros((1, h)))
    >>> x_proj = recurrent.input_projection(jnp.ones((1, 3)), w.input_kernel, w.bias)
    >>> (c, h_new), y = recurrent.lstm_step(carry, x_proj, w, jax.random.key(0))
    >>> y.shape
    (1, 2)

  References:
    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, 2016.
  """
  recurrent_kernel = jnp.asarray(weights.recurrent_kernel)
  hidden = recurrent_kernel.shape[0]
  c, h = _carry_pair(carry, hidden)
  noisy_gates = check_noisy_gates(noisy_gates, LSTM_GATES)
  static = _static(sigmoid, tanh, noisy_gates, _LSTM_SIGMOID_GATES, ("candidate", "cell"),
                   deterministic)
  key = _check_keyed(key, static.deterministic or not noisy_gates)
  z = x_proj + jnp.dot(h, recurrent_kernel)
  scales = _scales(sigmoid, tanh, z.shape[:-1] + (3 * hidden,), jnp.shape(c))
  new_c, new_h = _lstm_elementwise(
      static, z, c, key, weights.p_gates, weights.p_candidate, weights.p_cell, scales
  )
  return (new_c, new_h), new_h


def gru_step(
    carry: jax.typing.ArrayLike,
    x_proj: jax.typing.ArrayLike,
    weights: GRUWeights,
    key: jax.Array | None = None,
    *,
    sigmoid: GateNoise = SIGMOID_GATE,
    tanh: GateNoise = TANH_UNIT,
    noisy_gates: Sequence[str] = GRU_GATES,
    deterministic: bool = False,
) -> tuple[jax.Array, jax.Array]:
  r"""One step of the noisy GRU (every gate a noisy unit).

  .. math::
    r, u = \phi_s([x_t W_r + b_r + h_{t-1} U_r,\; x_t W_u + b_u + h_{t-1} U_u], \xi_1),

    n = \phi_t(x_t W_n + b_n + r \odot (h_{t-1} U_n + b_{hn}), \xi_2), \qquad
    h_t = (1 - u) \odot n + u \odot h_{t-1}

  as ``flax.linen.GRUCell`` with the paper's noisy hard-sigmoid/hard-tanh
  (Gulcehre et al., 2016, Sec. 6.1).

  Args:
    carry: ``h``, ``(..., H)``.
    x_proj: ``(..., 3H)``, the step's :func:`input_projection`.
    weights: :class:`GRUWeights` (the recurrent kernel and bias and ``p`` are used).
    key: PRNG key for this step's noise. Required unless ``deterministic``.
    sigmoid: :class:`GateNoise` of the reset and update gates.
    tanh: :class:`GateNoise` of the candidate.
    noisy_gates: names from ``("reset", "update", "candidate")`` whose activation
      is noisy; the others use the plain activation ``kind``.
    deterministic: replace the noise by its expectation (Eq. 13).

  Returns:
    ``(h_t, h_t)``, the new carry and the output.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from noisy_jax._src import recurrent
    >>> h = 2
    >>> w = recurrent.GRUWeights(jnp.ones((3, 3 * h)), jnp.ones((h, 3 * h)),
    ...     jnp.zeros(3 * h), jnp.zeros(h), jnp.ones(2 * h), jnp.ones(h))
    >>> x_proj = recurrent.input_projection(jnp.ones((1, 3)), w.input_kernel, w.bias)
    >>> h_new, y = recurrent.gru_step(jnp.zeros((1, h)), x_proj, w, deterministic=True)
    >>> y.shape
    (1, 2)

  References:
    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, 2016.
  """
  recurrent_kernel = jnp.asarray(weights.recurrent_kernel)
  hidden = recurrent_kernel.shape[0]
  h = _check_gru_carry(carry, hidden)
  noisy_gates = check_noisy_gates(noisy_gates, GRU_GATES)
  static = _static(sigmoid, tanh, noisy_gates, _GRU_SIGMOID_GATES, ("candidate",),
                   deterministic)
  key = _check_keyed(key, static.deterministic or not noisy_gates)
  h_proj = jnp.dot(h, recurrent_kernel)
  scales = _scales(sigmoid, tanh, h_proj.shape[:-1] + (2 * hidden,), jnp.shape(h))
  # Only the sums feeding the gates, the two candidate halves and h are kept for
  # the backward pass, not x_proj and h_proj whole.
  gate_pre = x_proj[..., : 2 * hidden] + h_proj[..., : 2 * hidden]
  new_h = _gru_elementwise(
      static, gate_pre, x_proj[..., 2 * hidden:], h_proj[..., 2 * hidden:], h, key,
      weights.recurrent_bias, weights.p_gates, weights.p_candidate, scales,
  )
  return new_h, new_h


def check_sequence_input(inputs: jax.typing.ArrayLike, in_features: int | None) -> jax.Array:
  """Validates a ``(batch, time, features)`` input; ``in_features=None`` skips the size."""
  inputs = activations._check_float_input(inputs, "inputs")
  if inputs.ndim != 3:
    raise ValueError(
        f"inputs must have rank 3, (batch, time, features) (or (time, batch, features) "
        f"with time_major=True), got shape {inputs.shape}. Fix: add a batch axis, e.g. "
        "inputs[None], or use the cell under nn.RNN for more batch axes."
    )
  if in_features is not None and inputs.shape[-1] != in_features:
    raise ValueError(
        f"inputs have {inputs.shape[-1]} features but the layer's input_kernel expects "
        f"{in_features}. Fix: feed inputs of shape (..., {in_features}) or re-initialise "
        "the layer for the new size."
    )
  return inputs


def check_step_input(inputs: jax.typing.ArrayLike, in_features: int | None) -> jax.Array:
  """Validates a ``(..., features)`` input of a cell; ``in_features=None`` skips the size."""
  inputs = activations._check_float_input(inputs, "inputs")
  if inputs.ndim < 1:
    raise ValueError(
        f"inputs of a cell must have shape (..., features), got a scalar of shape "
        f"{inputs.shape}. Fix: pass at least one feature axis, e.g. inputs[None]."
    )
  if in_features is not None and inputs.shape[-1] != in_features:
    raise ValueError(
        f"inputs have {inputs.shape[-1]} features but the cell's input_kernel expects "
        f"{in_features}. Fix: feed inputs of shape (..., {in_features}) or re-initialise "
        "the cell for the new size."
    )
  return inputs


class _Spec(NamedTuple):
  """Hashable description of a whole-sequence recurrence."""

  cell: str  # "lstm" or "gru"
  static: _Static
  unroll: int
  key_impl: Any = None  # PRNG implementation of the step keys, scanned as raw data
  time_axis: int = 0  # of the input projections: 1 keeps batch-major inputs untransposed


def _step_key(spec: _Spec, key_data):
  """The typed key of one step from its raw data (None when nothing is noisy).

  The scans carry raw key data, not typed keys: wrapping it inside the step makes
  each step's key a fresh one for the key-reuse checker (jax_debug_key_reuse),
  also under ``jax.vmap``, and lets the backward pass draw the forward noise again.
  """
  return None if key_data is None else jax.random.wrap_key_data(key_data, impl=spec.key_impl)


def _readout(spec: _Spec, carry):
  """The part of the carry that multiplies the recurrent kernel: h."""
  return carry[1] if spec.cell == "lstm" else carry


def _add_to_readout(spec: _Spec, carry, dh):
  return (carry[0], carry[1] + dh) if spec.cell == "lstm" else carry + dh


def _pre(spec: _Spec, x_proj, r):
  """What the elementwise part of a step reads, from the input and recurrent halves.

  LSTM: ``(z,)`` with ``z = x_proj + r``. GRU: the gates' sum, then the input and
  recurrent halves of the candidate apart (the reset gate multiplies only the latter).
  """
  if spec.cell == "lstm":
    return (x_proj + r,)
  hidden = r.shape[-1] // 3
  return (x_proj[..., : 2 * hidden] + r[..., : 2 * hidden], x_proj[..., 2 * hidden:],
          r[..., 2 * hidden:])


def _pre_transpose(spec: _Spec, d_pre):
  """Cotangents of ``(x_proj, r)`` from those of :func:`_pre`'s outputs."""
  if spec.cell == "lstm":
    return d_pre[0], d_pre[0]
  d_gates, d_x_candidate, d_h_candidate = d_pre
  return (jnp.concatenate([d_gates, d_x_candidate], axis=-1),
          jnp.concatenate([d_gates, d_h_candidate], axis=-1))


def _cell(spec: _Spec, pre, carry, key, valid, small, scales):
  """One step's elementwise part, masked: ``(new_carry, y)``."""
  if spec.cell == "lstm":
    new_carry = _lstm_math(spec.static, pre[0], carry[0], key, *small, scales)
    y = new_carry[1]
  else:
    new_carry = y = _gru_math(spec.static, *pre, carry, key, *small, scales)
  if valid is not None:
    # Past its length a sequence keeps its carry and outputs zeros.
    new_carry = jax.tree.map(lambda new, old: jnp.where(valid, new, old), new_carry, carry)
    y = jnp.where(valid, y, jnp.zeros_like(y))
  return new_carry, y


def _row(spec: _Spec, buffer, t):
  """Step ``t``'s slice of a buffer laid out along ``spec.time_axis``."""
  return jax.lax.dynamic_index_in_dim(buffer, t, axis=spec.time_axis, keepdims=False)


def _forward(spec: _Spec, recurrent_kernel, small, scales, x_proj, key_data, valid, carry):
  def body(carry, inputs):
    t, key_data_t, valid_t = inputs
    pre = _pre(spec, _row(spec, x_proj, t), jnp.dot(_readout(spec, carry), recurrent_kernel))
    return _cell(spec, pre, carry, _step_key(spec, key_data_t), valid_t, small, scales)

  steps = jnp.arange(x_proj.shape[spec.time_axis])
  return jax.lax.scan(body, carry, (steps, key_data, valid), unroll=spec.unroll)


# The whole recurrence has a hand-written VJP, as cuDNN's RNNs do. The forward scan
# overwrites each step's input projection in place with what its elementwise part
# reads (LSTM: z; GRU: the gates' sum and the candidate's input half) and stacks
# the previous states; no gate value and no noise is kept. The backward scan
# regenerates the noise from the step keys, does one (B, G) x (G, H) matmul per step
# and writes each step's cotangent over its pre-activations, in the same buffer;
# the recurrent kernel's gradient is then one (H, T B) x (T B, G) matmul instead of
# T small ones inside the loop.
@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _recurrence(spec: _Spec, recurrent_kernel, small, scales, x_proj, key_data, valid, carry):
  return _forward(spec, recurrent_kernel, small, scales, x_proj, key_data, valid, carry)


def _overwrite_and_prefetch(buffer, row, t, next_t, axis):
  """``buffer[t] = row`` along ``axis``, then reads row ``next_t`` of the updated buffer.

  Reading the next row after the write (not the current row before it) leaves the
  write as the old buffer's only use, so XLA updates the loop-carried buffer in
  place instead of copying all of it at every step.
  """
  buffer = jax.lax.dynamic_update_index_in_dim(buffer, row, t, axis)
  return buffer, jax.lax.dynamic_index_in_dim(buffer, next_t, axis=axis, keepdims=False)


def _recurrence_fwd(spec, recurrent_kernel, small, scales, x_proj, key_data, valid, carry):
  last = x_proj.shape[spec.time_axis] - 1

  def body(state, inputs):
    carry, x_proj_t, buffer = state
    t, key_data_t, valid_t = inputs
    pre = _pre(spec, x_proj_t, jnp.dot(_readout(spec, carry), recurrent_kernel))
    new_carry, y = _cell(spec, pre, carry, _step_key(spec, key_data_t), valid_t, small, scales)
    # GRU: the candidate's input half is already in place; the gates' sum replaces
    # the gates' input half; the candidate's recurrent half is stacked apart.
    stored = pre[0] if spec.cell == "lstm" else jnp.concatenate(pre[:2], axis=-1)
    buffer, x_proj_next = _overwrite_and_prefetch(buffer, stored, t, jnp.minimum(t + 1, last),
                                                  spec.time_axis)
    h_candidate = None if spec.cell == "lstm" else pre[2]
    return (new_carry, x_proj_next, buffer), (y, carry, h_candidate)

  (carry, _, buffer), (ys, carries, h_candidates) = jax.lax.scan(
      body, (carry, _row(spec, x_proj, 0), x_proj), (jnp.arange(last + 1), key_data, valid),
      unroll=spec.unroll)
  residuals = (recurrent_kernel, small, scales, key_data, valid, buffer, carries, h_candidates)
  return (carry, ys), residuals


def _recurrence_bwd(spec, residuals, cotangents):
  recurrent_kernel, small, scales, key_data, valid, buffer, carries, h_candidates = residuals
  d_carry, d_ys = cotangents
  hidden = recurrent_kernel.shape[0]
  last = buffer.shape[spec.time_axis] - 1

  def body(state, inputs):
    d_carry, d_small, stored, buffer, h_candidate, h_candidates = state
    t, carry, key_data_t, valid_t, d_y = inputs
    key_t = _step_key(spec, key_data_t)  # the forward step's key: the same noise again
    if spec.cell == "lstm":
      pre = (stored,)
    else:
      pre = (stored[..., : 2 * hidden], stored[..., 2 * hidden:], h_candidate)
    step = lambda pre, carry, small: _cell(spec, pre, carry, key_t, valid_t, *small)
    _, vjp = jax.vjp(step, pre, carry, (small, scales))
    d_pre, d_carry_prev, d_small_t = vjp((d_carry, d_y))
    d_x_proj, d_r = _pre_transpose(spec, d_pre)
    d_carry_prev = _add_to_readout(spec, d_carry_prev, jnp.dot(d_r, recurrent_kernel.T))
    # Each step's cotangent overwrites the pre-activations it was computed from.
    previous = jnp.maximum(t - 1, 0)
    buffer, stored = _overwrite_and_prefetch(buffer, d_x_proj, t, previous, spec.time_axis)
    if spec.cell == "gru":
      h_candidates, h_candidate = _overwrite_and_prefetch(h_candidates, d_pre[2], t, previous,
                                                          0)
    d_small = jax.tree.map(jnp.add, d_small, d_small_t)
    return (d_carry_prev, d_small, stored, buffer, h_candidate, h_candidates), None

  zeros = jax.tree.map(jnp.zeros_like, (small, scales))
  h_candidate = None if h_candidates is None else h_candidates[last]
  state = (d_carry, zeros, _row(spec, buffer, last), buffer, h_candidate, h_candidates)
  (d_carry, (d_small, d_scales), _, d_x_proj, _, d_h_candidates), _ = jax.lax.scan(
      body, state, (jnp.arange(last + 1), carries, key_data, valid, d_ys), reverse=True,
      unroll=spec.unroll)
  h_prev = _readout(spec, carries)  # (T, B, H)
  x_axes = "tbg" if spec.time_axis == 0 else "btg"
  if spec.cell == "lstm":  # d_r = d_z = d_x_proj
    d_recurrent_kernel = jnp.einsum(f"tbh,{x_axes}->hg", h_prev, d_x_proj)
  else:  # d_r = [d_gates, d_h_candidate]
    d_recurrent_kernel = jnp.concatenate([
        jnp.einsum(f"tbh,{x_axes}->hg", h_prev, d_x_proj[..., : 2 * hidden]),
        jnp.einsum("tbh,tbg->hg", h_prev, d_h_candidates)], axis=-1)
  return d_recurrent_kernel, d_small, d_scales, d_x_proj, None, None, d_carry


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def _run_sequence(spec: _Spec, weights, small, scales, xs, key, carry, *, seq_lengths,
                  reverse, keep_order, time_major):
  """Projects all steps in one matmul, then runs the recurrence over time."""
  time_axis = 0 if time_major else 1
  num_steps, batch = xs.shape[time_axis], xs.shape[1 - time_axis]
  valid = None
  if seq_lengths is not None:
    seq_lengths = jnp.asarray(seq_lengths)
    if seq_lengths.shape != (batch,) or not jnp.issubdtype(seq_lengths.dtype, jnp.integer):
      raise ValueError(
          f"seq_lengths must be an integer array of shape (batch,) = ({batch},), got "
          f"dtype {seq_lengths.dtype} and shape {seq_lengths.shape}. Fix: one int length "
          "per sequence, e.g. jnp.array([5, 3], jnp.int32)."
      )
    valid = (jnp.arange(num_steps)[:, None] < seq_lengths[None, :])[..., None]
  if reverse:
    # Padding stays at the end, as in flax.linen.RNN.
    xs = linen_recurrent.flip_sequences(xs, seq_lengths, num_batch_dims=1,
                                        time_major=time_major)
  # All T input projections in one matmul, in the inputs' own layout: the scan
  # indexes the time axis in place rather than transposing this big buffer.
  x_proj = jnp.dot(xs, weights.input_kernel) + weights.bias
  spec = spec._replace(time_axis=time_axis)
  key_data = None
  if key is not None:
    # One key is split into the step keys; a (T,) array already is one key per step
    # (the Flax layers pass the keys their cells would draw under nn.RNN/nnx.RNN).
    keys = jax.random.split(key, num_steps) if key.ndim == 0 else key
    if keys.shape != (num_steps,):
      raise ValueError(
          f"key must be one PRNG key or one key per step, of shape ({num_steps},), got "
          f"a key array of shape {key.shape}. Fix: pass jax.random.key(seed), or "
          f"jax.random.split(key, {num_steps}) for explicit step keys."
      )
    spec = spec._replace(key_impl=jax.random.key_impl(keys))
    key_data = jax.random.key_data(keys)
  carry, ys = _recurrence(spec, weights.recurrent_kernel, small, scales, x_proj, key_data,
                          valid, carry)
  if not time_major:
    ys = jnp.swapaxes(ys, 0, 1)
  if reverse and keep_order:
    ys = linen_recurrent.flip_sequences(ys, seq_lengths, num_batch_dims=1,
                                        time_major=time_major)
  return carry, ys


def _zeros_carry(batch: int, hidden: int, dtype, pair: bool):
  h = jnp.zeros((batch, hidden), dtype)
  return (h, h) if pair else h


def _check_sequence_args(weights, inputs, key, initial_carry, noisy_gates, all_gates,
                         sigmoid, tanh, *, deterministic, time_major, pair):
  """The argument checks ``lstm_sequence`` and ``gru_sequence`` share; zero carry default."""
  hidden = jnp.shape(weights.recurrent_kernel)[0]
  inputs = check_sequence_input(inputs, jnp.shape(weights.input_kernel)[0])
  noisy_gates = check_noisy_gates(noisy_gates, all_gates)
  check_gate_noise(sigmoid, "sigmoid")
  check_gate_noise(tanh, "tanh")
  key = _check_keyed(key, deterministic or not noisy_gates)
  if initial_carry is None:
    batch = inputs.shape[1 if time_major else 0]
    initial_carry = _zeros_carry(batch, hidden, inputs.dtype, pair=pair)
  return hidden, inputs, noisy_gates, key, initial_carry


def lstm_sequence(
    inputs: jax.typing.ArrayLike,
    weights: LSTMWeights,
    key: jax.Array | None = None,
    *,
    initial_carry: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] | None = None,
    seq_lengths: jax.typing.ArrayLike | None = None,
    reverse: bool = False,
    keep_order: bool = False,
    time_major: bool = False,
    unroll: int = 1,
    sigmoid: GateNoise = SIGMOID_GATE,
    tanh: GateNoise = TANH_UNIT,
    noisy_gates: Sequence[str] = LSTM_GATES,
    deterministic: bool = False,
) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
  r"""Runs the noisy LSTM of :func:`lstm_step` over a whole sequence.

  The input projections of all steps are one ``(B T, D) x (D, 4H)`` matmul outside
  the scan; each step does one ``(B, H) x (H, 4H)`` matmul and its elementwise
  gates. Step ``t`` (in processing order) draws its noise from
  ``jax.random.split(key, T)[t]`` (or from ``key[t]`` if ``key`` holds one key per
  step), so scanning :func:`lstm_step` with those keys gives the same numbers,
  gradients included. The backward pass is hand-written:
  it keeps ``6H`` floats per step and sequence (pre-activations, previous ``c`` and
  ``h``), regenerates the noise, and computes the recurrent kernel's gradient as
  one matmul after the loop.

  Args:
    inputs: ``(B, T, D)``, or ``(T, B, D)`` with ``time_major``.
    weights: :class:`LSTMWeights`.
    key: PRNG key for the whole sequence, or a ``(T,)`` array of step keys in
      processing order; required unless ``deterministic``.
    initial_carry: ``(c, h)`` of shape ``(B, H)`` each; zeros by default.
    seq_lengths: optional ``(B,)`` integer lengths. Past its length a sequence's
      carry is frozen and its outputs are zero; the returned carry is the carry
      at the last valid step (as ``flax.linen.RNN``).
    reverse: process the sequence right to left (padding stays at the end).
    keep_order: with ``reverse``, return the outputs in the original order.
    time_major: inputs and outputs are ``(T, B, ...)``.
    unroll: scan iterations unrolled per loop iteration (``jax.lax.scan``).
    sigmoid: :class:`GateNoise` of the sigmoid gates.
    tanh: :class:`GateNoise` of the tanh units.
    noisy_gates: see :func:`lstm_step`.
    deterministic: replace the noise by its expectation (Eq. 13).

  Returns:
    ``((c_T, h_T), outputs)`` with outputs ``(B, T, H)`` (``(T, B, H)`` time-major).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from noisy_jax._src import recurrent
    >>> shapes = recurrent.weight_shapes("lstm", 3, 2)
    >>> w = recurrent.LSTMWeights(*(0.1 * jnp.ones(s) for s in shapes.values()))
    >>> carry, ys = recurrent.lstm_sequence(jnp.ones((4, 5, 3)), w, jax.random.key(0))
    >>> ys.shape
    (4, 5, 2)
  """
  weights = LSTMWeights(*weights)
  hidden, inputs, noisy_gates, key, initial_carry = _check_sequence_args(
      weights, inputs, key, initial_carry, noisy_gates, LSTM_GATES, sigmoid, tanh,
      deterministic=deterministic, time_major=time_major, pair=True)
  # Validated here, where a Python c is still concrete, not inside the scan.
  sigmoid = _resolve(sigmoid, (3 * hidden,), "sigmoid")
  tanh = _resolve(tanh, (hidden,), "tanh")
  initial_carry = _carry_pair(initial_carry, hidden, "initial_carry")
  spec = _Spec("lstm", _static(sigmoid, tanh, noisy_gates, _LSTM_SIGMOID_GATES,
                               ("candidate", "cell"), deterministic), unroll)
  return _run_sequence(
      spec, weights, (weights.p_gates, weights.p_candidate, weights.p_cell),
      (sigmoid.c, sigmoid.alpha, tanh.c, tanh.alpha), inputs, key, initial_carry,
      seq_lengths=seq_lengths, reverse=reverse, keep_order=keep_order, time_major=time_major,
  )


def gru_sequence(
    inputs: jax.typing.ArrayLike,
    weights: GRUWeights,
    key: jax.Array | None = None,
    *,
    initial_carry: jax.typing.ArrayLike | None = None,
    seq_lengths: jax.typing.ArrayLike | None = None,
    reverse: bool = False,
    keep_order: bool = False,
    time_major: bool = False,
    unroll: int = 1,
    sigmoid: GateNoise = SIGMOID_GATE,
    tanh: GateNoise = TANH_UNIT,
    noisy_gates: Sequence[str] = GRU_GATES,
    deterministic: bool = False,
) -> tuple[jax.Array, jax.Array]:
  r"""Runs the noisy GRU of :func:`gru_step` over a whole sequence.

  Same contract as :func:`lstm_sequence` (one input matmul outside the scan, one
  recurrent matmul per step, step ``t`` keyed by ``jax.random.split(key, T)[t]`` or
  by ``key[t]``, hand-written backward pass keeping ``5H`` floats per step and
  sequence), with the carry ``h`` of shape ``(B, H)``.

  Args:
    inputs: ``(B, T, D)``, or ``(T, B, D)`` with ``time_major``.
    weights: :class:`GRUWeights`.
    key: PRNG key for the whole sequence, or a ``(T,)`` array of step keys (see
      :func:`lstm_sequence`); required unless ``deterministic``.
    initial_carry: ``h`` of shape ``(B, H)``; zeros by default.
    seq_lengths: optional ``(B,)`` integer lengths (see :func:`lstm_sequence`).
    reverse: process the sequence right to left (padding stays at the end).
    keep_order: with ``reverse``, return the outputs in the original order.
    time_major: inputs and outputs are ``(T, B, ...)``.
    unroll: scan iterations unrolled per loop iteration.
    sigmoid: :class:`GateNoise` of the reset and update gates.
    tanh: :class:`GateNoise` of the candidate.
    noisy_gates: see :func:`gru_step`.
    deterministic: replace the noise by its expectation (Eq. 13).

  Returns:
    ``(h_T, outputs)`` with outputs ``(B, T, H)`` (``(T, B, H)`` time-major).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from noisy_jax._src import recurrent
    >>> shapes = recurrent.weight_shapes("gru", 3, 2)
    >>> w = recurrent.GRUWeights(*(0.1 * jnp.ones(s) for s in shapes.values()))
    >>> h, ys = recurrent.gru_sequence(jnp.ones((4, 5, 3)), w, deterministic=True)
    >>> h.shape, ys.shape
    ((4, 2), (4, 5, 2))
  """
  weights = GRUWeights(*weights)
  hidden, inputs, noisy_gates, key, initial_carry = _check_sequence_args(
      weights, inputs, key, initial_carry, noisy_gates, GRU_GATES, sigmoid, tanh,
      deterministic=deterministic, time_major=time_major, pair=False)
  # Validated here, where a Python c is still concrete, not inside the scan.
  sigmoid = _resolve(sigmoid, (2 * hidden,), "sigmoid")
  tanh = _resolve(tanh, (hidden,), "tanh")
  initial_carry = _check_gru_carry(initial_carry, hidden, "initial_carry")
  spec = _Spec("gru", _static(sigmoid, tanh, noisy_gates, _GRU_SIGMOID_GATES,
                              ("candidate",), deterministic), unroll)
  return _run_sequence(
      spec, weights, (weights.recurrent_bias, weights.p_gates, weights.p_candidate),
      (sigmoid.c, sigmoid.alpha, tanh.c, tanh.alpha), inputs, key, initial_carry,
      seq_lengths=seq_lengths, reverse=reverse, keep_order=keep_order, time_major=time_major,
  )
