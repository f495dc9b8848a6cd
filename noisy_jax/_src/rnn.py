"""Noisy LSTM and GRU steps and whole-sequence scans (Gulcehre et al., 2016, Sec. 6).

Pure functions (no Flax) shared by the Linen (:mod:`noisy_jax.nn`) and NNX
(:mod:`noisy_jax.nnx`) modules: every sigmoid gate becomes a noisy hard-sigmoid and
every tanh a noisy hard-tanh (:func:`noisy_jax.noisy_activation`), with one learned
``p`` per unit per gate.

A cell kind is one entry of :data:`CELLS`, a :class:`CellSpec`: its gate names, its
parameter shapes and column blocks, its carry, and the few functions that differ
between kinds (the elementwise step, how a step's pre-activations are split and
stored). The single step, the whole-sequence scan with its hand-written VJP and
both Flax adapters only look things up there. Adding a kind (say a minimal gated
unit) is one entry plus its elementwise step.

Weight layout (one fused matrix per side, gate blocks side by side):

* LSTM: ``input_kernel (D, 4H)``, ``recurrent_kernel (H, 4H)``, ``bias (4H,)`` with
  column blocks ``[input, forget, output, candidate]``; ``p_gates (3H,)`` for the
  three sigmoid gates, ``p_candidate (H,)`` for the candidate tanh and ``p_cell (H,)``
  for the tanh of the new cell state.
* GRU: ``input_kernel (D, 3H)``, ``recurrent_kernel (H, 3H)``, ``bias (3H,)`` with
  blocks ``[reset, update, candidate]``, ``recurrent_bias (H,)`` inside the reset
  product (as in ``flax.linen.GRUCell``); ``p_gates (2H,)``, ``p_candidate (H,)``.

Neither a single step nor a whole sequence keeps its noise or gate values for the
backward pass: a noisy step's elementwise part is wrapped in ``jax.checkpoint``, and
the whole-sequence scans (:func:`lstm_sequence`, :func:`gru_sequence`) have a
hand-written VJP that keeps the pre-activations and previous states and draws the
noise again, for all steps at once before its loop. Either way each draw is made
twice per training step: once forward, once in the backward pass.
"""

import functools
import inspect
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from noisy_jax._src import activations
from noisy_jax._src import checks
from noisy_jax._src import noise

UnitNoise = activations.UnitNoise
SIGMOID_UNIT = activations.SIGMOID_UNIT
TANH_UNIT = activations.TANH_UNIT

LSTM_GATES = ("input", "forget", "output", "candidate", "cell")
GRU_GATES = ("reset", "update", "candidate")


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


class _Static(NamedTuple):
  """Hashable, trace-time settings of one step: the units without c and alpha."""

  sigmoid: UnitNoise
  tanh: UnitNoise
  sigmoid_noisy: tuple[bool, ...]  # one flag per sigmoid gate, in column order
  tanh_noisy: tuple[bool, ...]  # one flag per tanh unit, in CellSpec.tanh_gates order
  deterministic: bool
  # A single step (in a caller's loop, under remat): each draw made once, in a
  # kernel of its own, for its several consumers in the backward pass.
  materialize_noise: bool = False
  # Also compute the units' UnitStatistics (a monitoring pass; off in training).
  statistics: bool = False


class UnitGroups(NamedTuple):
  """What one noisy call of an elementwise step read: the statistics' raw material.

  One per :func:`activate` call, in stream order; ``x`` holds ``len(noisy)``
  equal column blocks, one per unit group.
  """

  x: jax.Array
  seed: Any  # the call's seed words, its draw, or None
  p: jax.Array
  unit: UnitNoise
  noisy: tuple[bool, ...]


class CellSpec(NamedTuple):
  """One kind of noisy recurrent cell: what the steps, the scans and the adapters look up.

  A step's pre-activations ``pre`` are what its elementwise part reads, computed by
  ``split`` from the input half ``x W + b`` and the recurrent half ``h U`` of the
  fused matmuls.

  Attributes:
    name: the kind's key in :data:`CELLS`, e.g. ``"lstm"``.
    title: its name in messages, e.g. ``"LSTM"``.
    gates: every gate ``noisy_gates`` may name.
    sigmoid_gates: the gates whose units are sigmoids, in column order.
    tanh_gates: the tanh units, in the order the step applies them.
    carry_parts: names of the carry's arrays (one array, or a tuple of them).
    num_streams: independent noise streams per step: a step's key is split into
      this many keys (``jax.random.split``), one per noisy call.
    stream_widths: ``H -> widths``: the last axis of each stream's draw (its
      pre-activation's width), e.g. ``(3H, H, H)`` for the LSTM.
    num_blocks: column blocks of the fused kernels (``G = num_blocks * H``).
    weights_type: the NamedTuple of parameters; field order = parameter order.
    shapes: ``(D, H) -> {name: shape}`` of the parameters.
    small: ``weights -> tuple``: the per-unit parameters the elementwise step reads.
    split: ``(x_proj, r) -> pre``.
    split_transpose: ``d_pre -> (d_x_proj, d_r)``, the transpose of ``split``.
    store: ``pre -> (row, extra)``: ``row`` (``G`` columns) overwrites the step's
      input projection in the scan's buffer; ``extra`` (or None) is stacked apart.
    load: ``(row, extra) -> pre``, the inverse of ``store``.
    kernel_grad: ``(h_prev, d_rows, d_extras, x_axes) -> d_recurrent_kernel`` from
      the stacked previous outputs and the cotangents of the rows and extras.
    elementwise: ``(static, pre, carry, seeds, small, scales) -> (new_carry,
      groups)``, where ``seeds`` is None (nothing is drawn) or holds one entry per
      stream: the ``(num_streams, 2)`` seed words of the step's split keys
      (:func:`noise.stream_seeds`), or, in the scan's backward pass, the draws
      themselves. Stream ``i`` is drawn by :func:`activate` from ``seeds[i]``;
      ``groups`` holds the :class:`UnitGroups` of each call, in stream order,
      whose column blocks are the gates ``sigmoid_gates + tanh_gates`` in turn
      (they only name values the step computes anyway).
  """

  name: str
  title: str
  gates: tuple[str, ...]
  sigmoid_gates: tuple[str, ...]
  tanh_gates: tuple[str, ...]
  carry_parts: tuple[str, ...]
  num_streams: int
  stream_widths: Callable[[int], tuple[int, ...]]
  num_blocks: int
  weights_type: type
  shapes: Callable[[int, int], dict[str, tuple[int, ...]]]
  small: Callable[[Any], tuple]
  split: Callable
  split_transpose: Callable
  store: Callable
  load: Callable
  kernel_grad: Callable
  elementwise: Callable


def activate(x, seed, p, unit: UnitNoise, noisy: tuple[bool, ...], static: _Static):
  """Noisy activation of ``len(noisy)`` equal column blocks of ``x``; quiet blocks get h(x).

  The building block of a :class:`CellSpec`'s elementwise step: ``seed`` is one
  entry of its ``seeds`` (None when nothing is drawn).
  """
  if not any(noisy):
    return activations.activation(x, kind=unit.kind)
  # No remat of its own: the single step's checkpoint and the scan's hand-written
  # VJP each regenerate the draw once in the backward pass.
  y = activations.noisy_unit(x, seed, p, unit, deterministic=static.deterministic,
                             materialize=static.materialize_noise)
  if all(noisy):
    return y
  mask = np.repeat(np.asarray(noisy), x.shape[-1] // len(noisy))
  return jnp.where(mask, y, activations.activation(x, kind=unit.kind))


def group_statistics(spec: CellSpec, static: _Static, groups: Sequence[UnitGroups],
                     where: jax.Array | None = None) -> dict[str, activations.UnitStatistics]:
  """The :class:`~noisy_jax.activations.UnitStatistics` of every gate of one step, by name.

  ``groups`` is the second output of ``spec.elementwise``; its column blocks are the
  gates ``spec.sigmoid_gates + spec.tanh_gates`` in turn. A call's draw spans all
  its blocks, so NANIL's reference scale (whose :math:`\\sigma` reads the draw)
  draws it again whole from the seed words, and each block reads its columns.
  """
  names = iter(spec.sigmoid_gates + spec.tanh_gates)
  statistics = {}
  for group in groups:
    blocks = len(group.noisy)
    drawn = any(group.noisy) and not static.deterministic and group.seed is not None
    seed = group.seed if drawn else None
    if (drawn and group.unit.mode == "nanil" and group.unit.nanil_scale == "reference"
        and not jnp.issubdtype(seed.dtype, jnp.floating)):
      seed = noise.normal_from_seed(seed, group.x.shape,
                                    jnp.promote_types(group.x.dtype, jnp.float32))
    split = lambda a: jnp.split(a, blocks, axis=-1)
    p = jnp.broadcast_to(group.p, group.x.shape[-1:])
    is_draw = seed is not None and jnp.issubdtype(seed.dtype, jnp.floating)
    draws = split(seed) if is_draw else [seed] * blocks
    for noisy, x, p_block, draw in zip(group.noisy, split(group.x), split(p), draws):
      statistics[next(names)] = activations.unit_statistics(
          x, p_block, group.unit, seed=draw, noisy=noisy and drawn, where=where)
  return statistics


def units(static: _Static, scales):
  """The resolved sigmoid and tanh units: the static settings with ``(c, alpha)``."""
  c_sig, alpha_sig, c_tanh, alpha_tanh = scales
  return (static.sigmoid._replace(c=c_sig, alpha=alpha_sig),
          static.tanh._replace(c=c_tanh, alpha=alpha_tanh))


def _lstm_elementwise(static: _Static, pre, carry, seeds, small, scales):
  """The elementwise part of an LSTM step: ``(z,)`` and ``(cell, hidden)`` -> new carry."""
  (z,), (cell, _) = pre, carry
  p_gates, p_candidate, p_cell = small
  sigmoid, tanh = units(static, scales)
  hidden = cell.shape[-1]
  seeds = (None,) * 3 if seeds is None else seeds
  groups = [UnitGroups(z[..., : 3 * hidden], seeds[0], p_gates, sigmoid, static.sigmoid_noisy),
            UnitGroups(z[..., 3 * hidden:], seeds[1], p_candidate, tanh, static.tanh_noisy[:1])]
  gates, candidate = (activate(*group, static) for group in groups)
  input_gate, forget_gate, output_gate = jnp.split(gates, 3, axis=-1)
  new_cell = forget_gate * cell + input_gate * candidate
  groups.append(UnitGroups(new_cell, seeds[2], p_cell, tanh, static.tanh_noisy[1:]))
  squashed = activate(*groups[-1], static)
  return (new_cell, output_gate * squashed), tuple(groups)


def _gru_elementwise(static: _Static, pre, carry, seeds, small, scales):
  """The elementwise part of a GRU step: the gates' sum, the candidate halves, h -> h."""
  gate_pre, x_candidate, h_candidate = pre
  recurrent_bias, p_gates, p_candidate = small
  sigmoid, tanh = units(static, scales)
  seeds = (None,) * 2 if seeds is None else seeds
  groups = [UnitGroups(gate_pre, seeds[0], p_gates, sigmoid, static.sigmoid_noisy)]
  reset, update = jnp.split(activate(*groups[0], static), 2, axis=-1)
  groups.append(UnitGroups(x_candidate + reset * (h_candidate + recurrent_bias), seeds[1],
                           p_candidate, tanh, static.tanh_noisy))
  candidate = activate(*groups[1], static)
  return (1.0 - update) * candidate + update * carry, tuple(groups)


def _gru_split(x_proj, r):
  """The gates' sum, then the input and recurrent halves of the candidate apart.

  The reset gate multiplies only the recurrent half.
  """
  hidden = r.shape[-1] // 3
  return (x_proj[..., : 2 * hidden] + r[..., : 2 * hidden], x_proj[..., 2 * hidden:],
          r[..., 2 * hidden:])


def _gru_split_transpose(d_pre):
  d_gates, d_x_candidate, d_h_candidate = d_pre
  return (jnp.concatenate([d_gates, d_x_candidate], axis=-1),
          jnp.concatenate([d_gates, d_h_candidate], axis=-1))


def _gru_load(row, h_candidate):
  hidden = h_candidate.shape[-1]
  return row[..., : 2 * hidden], row[..., 2 * hidden:], h_candidate


def _gru_kernel_grad(h_prev, d_rows, d_h_candidates, x_axes):
  """``d_r = [d_gates, d_h_candidate]``: the gates' part from the rows, the rest apart."""
  hidden = h_prev.shape[-1]
  return jnp.concatenate([
      jnp.einsum(f"tbh,{x_axes}->hg", h_prev, d_rows[..., : 2 * hidden]),
      jnp.einsum("tbh,tbg->hg", h_prev, d_h_candidates)], axis=-1)


LSTM = CellSpec(
    name="lstm", title="LSTM", gates=LSTM_GATES,
    sigmoid_gates=("input", "forget", "output"), tanh_gates=("candidate", "cell"),
    carry_parts=("cell", "hidden"), num_streams=3, stream_widths=lambda h: (3 * h, h, h),
    num_blocks=4, weights_type=LSTMWeights,
    shapes=lambda d, h: {
        "input_kernel": (d, 4 * h), "recurrent_kernel": (h, 4 * h), "bias": (4 * h,),
        "p_gates": (3 * h,), "p_candidate": (h,), "p_cell": (h,)},
    small=lambda w: (w.p_gates, w.p_candidate, w.p_cell),
    split=lambda x_proj, r: (x_proj + r,),
    split_transpose=lambda d_pre: (d_pre[0], d_pre[0]),  # z = x_proj + r
    store=lambda pre: (pre[0], None),
    load=lambda row, extra: (row,),
    kernel_grad=lambda h_prev, d_rows, d_extras, x_axes: jnp.einsum(
        f"tbh,{x_axes}->hg", h_prev, d_rows),  # d_r = d_z = d_x_proj
    elementwise=_lstm_elementwise,
)

GRU = CellSpec(
    name="gru", title="GRU", gates=GRU_GATES,
    sigmoid_gates=("reset", "update"), tanh_gates=("candidate",),
    carry_parts=("hidden",), num_streams=2, stream_widths=lambda h: (2 * h, h), num_blocks=3, weights_type=GRUWeights,
    shapes=lambda d, h: {
        "input_kernel": (d, 3 * h), "recurrent_kernel": (h, 3 * h), "bias": (3 * h,),
        "recurrent_bias": (h,), "p_gates": (2 * h,), "p_candidate": (h,)},
    small=lambda w: (w.recurrent_bias, w.p_gates, w.p_candidate),
    split=_gru_split,
    split_transpose=_gru_split_transpose,
    # The candidate's input half is already in place; the gates' sum replaces the
    # gates' input half; the candidate's recurrent half is stacked apart.
    store=lambda pre: (jnp.concatenate(pre[:2], axis=-1), pre[2]),
    load=_gru_load,
    kernel_grad=_gru_kernel_grad,
    elementwise=_gru_elementwise,
)

CELLS: dict[str, CellSpec] = {"lstm": LSTM, "gru": GRU}


def cell_spec(cell: str | CellSpec) -> CellSpec:
  """The :class:`CellSpec` of ``cell`` (a key of :data:`CELLS`, or a spec itself)."""
  if isinstance(cell, CellSpec):
    return cell
  return CELLS[checks.choice(cell, "cell", tuple(CELLS))]


def weight_shapes(cell: str, in_features: int, hidden_features: int) -> dict[str, tuple[int, ...]]:
  """Shapes of the parameters of a noisy ``"lstm"`` or ``"gru"``, by name, in order.

  Args:
    cell: ``"lstm"`` or ``"gru"`` (a key of :data:`CELLS`).
    in_features: input size :math:`D`.
    hidden_features: hidden size :math:`H`.

  Returns:
    A dict from parameter name to shape, in the field order of
    :class:`LSTMWeights` / :class:`GRUWeights`.

  Example:
    >>> import noisy_jax
    >>> noisy_jax.rnn.weight_shapes("gru", 3, 2)["recurrent_bias"]
    (2,)
  """
  return cell_spec(cell).shapes(in_features, hidden_features)


# flax's own cells with these fields: the smooth sigmoid and tanh, nothing noisy, no p.
PLAIN: Mapping[str, Any] = types.MappingProxyType({
    "sigmoid": UnitNoise("sigmoid", SIGMOID_UNIT.mode),
    "tanh": UnitNoise("tanh", TANH_UNIT.mode),
    "noisy_gates": (),
})


def declared_shapes(cell: str | CellSpec, in_features: int, hidden_features: int,
                    noisy_gates: Sequence[str]) -> dict[str, tuple[int, ...]]:
  """The parameters a module declares: :func:`weight_shapes`, without ``p`` if nothing is noisy.

  A quiet unit never reads its ``p``; with no noisy unit at all (:data:`PLAIN`) a
  cell has exactly flax's parameters. :func:`weights_from_params` fills the gap.
  """
  shapes = cell_spec(cell).shapes(in_features, hidden_features)
  if noisy_gates:
    return shapes
  return {name: shape for name, shape in shapes.items() if not name.startswith("p_")}


def weights_from_params(cell: str | CellSpec, params: Mapping[str, jax.Array]) -> Any:
  """The ``weights_type`` of ``cell`` from declared parameters (missing ``p``: zeros)."""
  spec = cell_spec(cell)
  kernel = params["recurrent_kernel"]
  shapes = spec.shapes(0, kernel.shape[0])
  return spec.weights_type(**{
      name: params[name] if name in params else jnp.zeros(shapes[name], kernel.dtype)
      for name in spec.weights_type._fields})


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


def initializers(cell: str | CellSpec, *, kernel_init: Callable,
                 recurrent_kernel_init: Callable, bias_init: Callable,
                 p_init: Callable) -> dict[str, Callable]:
  """The initializer of every parameter of ``cell``, by name, in parameter order.

  The one parameter table of both Flax adapters: the kernels start block by block
  (:func:`blockwise`), the ``p`` with ``p_init``, the biases with ``bias_init``.
  """
  spec = cell_spec(cell)
  return {name: initializer_for(name, kernel_init, recurrent_kernel_init, bias_init, p_init,
                                spec.num_blocks)
          for name in spec.weights_type._fields}


def carry_from_parts(cell: str | CellSpec, parts: Sequence[jax.Array]) -> Any:
  """The carry of ``cell`` from its arrays in ``carry_parts`` order."""
  return tuple(parts) if len(cell_spec(cell).carry_parts) > 1 else parts[0]


# The flat, deprecated form of a module's two UnitNoise fields: `sigmoid_<field>`.
LEGACY_UNIT_FIELDS = activations.UnitNoise._fields


def units_with_legacy_fields(sigmoid: UnitNoise, tanh: UnitNoise, owner: str,
                             **flat: Any) -> tuple[UnitNoise, UnitNoise]:
  """``(sigmoid, tanh)`` with the deprecated flat fields (``sigmoid_c=...``) merged in.

  Both Flax adapters accept the flat names of the previous release for one more
  release, with a ``DeprecationWarning``; a flat value that is None is unset.
  """
  given = {name: value for name, value in flat.items() if value is not None}
  if given:
    warnings.warn(
        f"{owner}({', '.join(f'{name}=' for name in given)}) is deprecated and will be "
        "removed in the next release. Fix: pass sigmoid=noisy_jax.UnitNoise(kind, mode, "
        "c, alpha) and tanh=noisy_jax.UnitNoise(...) instead.",
        DeprecationWarning, stacklevel=4)
  units = {"sigmoid": sigmoid, "tanh": tanh}
  for name, value in given.items():
    prefix, field = name.split("_", 1)
    units[prefix] = units[prefix]._replace(**{field: value})
  return units["sigmoid"], units["tanh"]


def _hidden(spec: CellSpec, carry):
  """The part of the carry that multiplies the recurrent kernel (and is the output)."""
  return carry[-1] if len(spec.carry_parts) > 1 else carry


def _add_to_hidden(spec: CellSpec, carry, d_hidden):
  if len(spec.carry_parts) > 1:
    return (*carry[:-1], carry[-1] + d_hidden)
  return carry + d_hidden


def _static(spec: CellSpec, sigmoid: UnitNoise, tanh: UnitNoise, noisy_gates,
            deterministic) -> _Static:
  checks.unit_noise(sigmoid, "sigmoid")
  checks.unit_noise(tanh, "tanh")
  return _Static(
      sigmoid._replace(c=None, alpha=None), tanh._replace(c=None, alpha=None),
      tuple(g in noisy_gates for g in spec.sigmoid_gates),
      tuple(g in noisy_gates for g in spec.tanh_gates), bool(deterministic),
  )


def _scales(spec: CellSpec, sigmoid: UnitNoise, tanh: UnitNoise, batch_shape, hidden: int):
  """``(c, alpha)`` of the sigmoid gates then of the tanh units, resolved and checked.

  Checked where a Python ``c`` is still concrete, not inside a scan.
  """
  sigmoid = sigmoid.resolved(batch_shape + (len(spec.sigmoid_gates) * hidden,), "sigmoid")
  tanh = tanh.resolved(batch_shape + (hidden,), "tanh")
  return sigmoid.c, sigmoid.alpha, tanh.c, tanh.alpha


def _elementwise(spec: CellSpec, static: _Static, pre, carry, seeds, small, scales):
  """The new carry, and with ``static.statistics`` also the step's unit statistics."""
  new_carry, groups = spec.elementwise(static, pre, carry, seeds, small, scales)
  if not static.statistics:
    return new_carry
  return new_carry, group_statistics(spec, static, groups)


# For a single step under autodiff: jax.checkpoint makes the backward pass recompute
# gates and noise from the pre-activations, the previous state and the seed words
# (one draw forward, one in the backward pass). The jit lets an eager-mode gradient
# run the same fused kernels as a jitted caller.
_step_elementwise = jax.jit(jax.checkpoint(_elementwise, static_argnums=(0, 1)),
                            static_argnums=(0, 1))


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


def _for_cell(generic: Callable, spec: CellSpec, name: str, doc: str) -> Callable:
  """``generic`` with its first argument bound to ``spec``, as a documented function.

  The per-kind entry points (:func:`lstm_step`, ...) are the generic step and scan
  with the cell fixed, so their signatures cannot drift apart.
  """

  def bound(*args, **kwargs):
    return generic(spec, *args, **kwargs)

  signature = inspect.signature(generic)
  bound.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
  bound.__name__ = bound.__qualname__ = name
  bound.__doc__ = doc
  return bound


def step(cell: str | CellSpec, carry: Any, x_proj: jax.typing.ArrayLike, weights: Any,
         key: jax.Array | None = None, *,
         sigmoid: UnitNoise = SIGMOID_UNIT, tanh: UnitNoise = TANH_UNIT,
         noisy_gates: Sequence[str] | None = None, deterministic: bool = False,
         remat: bool = True, statistics: bool = False):
  """One step of any cell of :data:`CELLS`; see :func:`lstm_step` and :func:`gru_step`."""
  spec = cell_spec(cell)
  weights = spec.weights_type(*weights)
  recurrent_kernel = jnp.asarray(weights.recurrent_kernel)
  hidden = recurrent_kernel.shape[0]
  carry = checks.carry(carry, spec.carry_parts, hidden, spec.title)
  noisy_gates = checks.gate_names(spec.gates if noisy_gates is None else noisy_gates,
                                  spec.gates)
  static = _static(spec, sigmoid, tanh, noisy_gates, deterministic)._replace(
      materialize_noise=True, statistics=bool(statistics))
  key = checks.noise_key(key, static.deterministic or not noisy_gates, "the noisy cell")
  r = jnp.dot(_hidden(spec, carry), recurrent_kernel)
  # Only what the elementwise part reads is kept for the backward pass, not the
  # input and recurrent halves whole.
  pre = spec.split(x_proj, r)
  scales = _scales(spec, sigmoid, tanh, r.shape[:-1], hidden)
  seeds = None if key is None else noise.stream_seeds(key, spec.num_streams)
  # Nothing drawn, nothing to regenerate: without noise the step keeps its gate
  # values for the backward pass, as flax's cells do.
  elementwise = _step_elementwise if remat and seeds is not None else _elementwise
  new_carry = elementwise(spec, static, pre, carry, seeds, spec.small(weights), scales)
  if statistics:
    new_carry, unit_statistics = new_carry
    return new_carry, _hidden(spec, new_carry), unit_statistics
  return new_carry, _hidden(spec, new_carry)


lstm_step = _for_cell(step, LSTM, "lstm_step", r"""One step of the noisy LSTM (every gate a noisy unit).

  .. math::
    [z_i, z_f, z_o, z_g] = x_t W + b + h_{t-1} U, \qquad
    i, f, o = \phi_s([z_i, z_f, z_o], \xi_1), \quad g = \phi_t(z_g, \xi_2),

    c_t = f \odot c_{t-1} + i \odot g, \qquad
    h_t = o \odot \phi_t(c_t, \xi_3)

  where :math:`\phi_s`, :math:`\phi_t` are the noisy hard-sigmoid and hard-tanh of
  Eq. 12 (or the input-noise variants of Eqs. 14-15), with one learned ``p`` per
  unit per gate (Gulcehre et al., 2016, Sec. 6.3). The cell state :math:`c_t` is
  called ``cell`` here: ``c`` is only the paper's noise scale.

  Args:
    carry: ``(cell, hidden)``, each ``(..., H)``.
    x_proj: ``(..., 4H)``, the step's :func:`input_projection`.
    weights: :class:`LSTMWeights` (only the recurrent kernel and ``p`` are used).
    key: PRNG key for this step's noise; split into the three noisy calls.
      Required unless ``deterministic``.
    sigmoid: :class:`~noisy_jax.UnitNoise` of the input, forget and output gates.
    tanh: :class:`~noisy_jax.UnitNoise` of the candidate and of the cell-state squashing.
    noisy_gates: names from ``("input", "forget", "output", "candidate", "cell")``
      whose activation is noisy; the others use the plain activation ``kind``.
    deterministic: replace the noise by its expectation (Eq. 13).
    remat: with noise, wrap the elementwise part in ``jax.checkpoint`` (default),
      so that a gradient draws the noise once more instead of storing it and the
      gate values. Pass False only inside a checkpoint of your own (as the NTM
      does). Without noise there is no remat: the gate values are kept.
    statistics: also return the saturation diagnostics of this step: a dict
      from gate name to :class:`~noisy_jax.activations.UnitStatistics`.

  Returns:
    ``((cell_t, hidden_t), hidden_t)``, the new carry and the output; with
    ``statistics``, ``((cell_t, hidden_t), hidden_t, statistics)``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import noisy_jax
    >>> h = 2
    >>> w = noisy_jax.rnn.LSTMWeights(jnp.ones((3, 4 * h)), jnp.ones((h, 4 * h)),
    ...     jnp.zeros(4 * h), jnp.ones(3 * h), jnp.ones(h), jnp.ones(h))
    >>> carry = (jnp.zeros((1, h)), jnp.zeros((1, h)))
    >>> x_proj = noisy_jax.rnn.input_projection(jnp.ones((1, 3)), w.input_kernel, w.bias)
    >>> (cell, hidden), y = noisy_jax.rnn.lstm_step(carry, x_proj, w, jax.random.key(0))
    >>> y.shape
    (1, 2)

  References:
    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, 2016.
  """)


gru_step = _for_cell(step, GRU, "gru_step", r"""One step of the noisy GRU (every gate a noisy unit).

  .. math::
    r, u = \phi_s([x_t W_r + b_r + h_{t-1} U_r,\; x_t W_u + b_u + h_{t-1} U_u], \xi_1),

    n = \phi_t(x_t W_n + b_n + r \odot (h_{t-1} U_n + b_{hn}), \xi_2), \qquad
    h_t = (1 - u) \odot n + u \odot h_{t-1}

  as ``flax.linen.GRUCell`` with the paper's noisy hard-sigmoid/hard-tanh
  (Gulcehre et al., 2016, Sec. 6.1).

  Args:
    carry: ``hidden``, ``(..., H)``.
    x_proj: ``(..., 3H)``, the step's :func:`input_projection`.
    weights: :class:`GRUWeights` (the recurrent kernel and bias and ``p`` are used).
    key: PRNG key for this step's noise. Required unless ``deterministic``.
    sigmoid: :class:`~noisy_jax.UnitNoise` of the reset and update gates.
    tanh: :class:`~noisy_jax.UnitNoise` of the candidate.
    noisy_gates: names from ``("reset", "update", "candidate")`` whose activation
      is noisy; the others use the plain activation ``kind``.
    deterministic: replace the noise by its expectation (Eq. 13).
    remat: see :func:`lstm_step`.
    statistics: see :func:`lstm_step`.

  Returns:
    ``(hidden_t, hidden_t)``, the new carry and the output (and the statistics,
    with ``statistics``).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import noisy_jax
    >>> h = 2
    >>> w = noisy_jax.rnn.GRUWeights(jnp.ones((3, 3 * h)), jnp.ones((h, 3 * h)),
    ...     jnp.zeros(3 * h), jnp.zeros(h), jnp.ones(2 * h), jnp.ones(h))
    >>> x_proj = noisy_jax.rnn.input_projection(jnp.ones((1, 3)), w.input_kernel, w.bias)
    >>> hidden, y = noisy_jax.rnn.gru_step(jnp.zeros((1, h)), x_proj, w, deterministic=True)
    >>> y.shape
    (1, 2)

  References:
    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, 2016.
  """)


class _Scan(NamedTuple):
  """Hashable description of a whole-sequence recurrence."""

  spec: CellSpec
  static: _Static
  unroll: int
  time_axis: int = 0  # of the input projections: 1 keeps batch-major inputs untransposed


def _masked_step(scan: _Scan, pre, carry, seeds, valid, small, scales):
  """One step's elementwise part, masked: ``(new_carry, (y, statistics))``.

  ``statistics`` is None unless ``scan.static.statistics``; then it is the step's
  :func:`group_statistics` over its valid sequences and their number.
  """
  new_carry, groups = scan.spec.elementwise(scan.static, pre, carry, seeds, small, scales)
  statistics = None
  if scan.static.statistics:
    count = jnp.ones(()) if valid is None else valid.sum(dtype=jnp.float32)
    statistics = (group_statistics(scan.spec, scan.static, groups, valid), count)
  y = _hidden(scan.spec, new_carry)
  if valid is not None:
    # Past its length a sequence keeps its carry and outputs zeros.
    new_carry = jax.tree.map(lambda new, old: jnp.where(valid, new, old), new_carry, carry)
    y = jnp.where(valid, y, jnp.zeros_like(y))
  return new_carry, (y, statistics)


def _row(scan: _Scan, buffer, t):
  """Step ``t``'s slice of a buffer laid out along ``scan.time_axis``."""
  return jax.lax.dynamic_index_in_dim(buffer, t, axis=scan.time_axis, keepdims=False)


def _forward(scan: _Scan, recurrent_kernel, small, scales, x_proj, seeds, valid, carry):
  def body(carry, inputs):
    t, seeds_t, valid_t = inputs
    pre = scan.spec.split(_row(scan, x_proj, t),
                          jnp.dot(_hidden(scan.spec, carry), recurrent_kernel))
    return _masked_step(scan, pre, carry, seeds_t, valid_t, small, scales)

  steps = jnp.arange(x_proj.shape[scan.time_axis])
  return jax.lax.scan(body, carry, (steps, seeds, valid), unroll=scan.unroll)


# The whole recurrence has a hand-written VJP, as cuDNN's RNNs do. The forward scan
# overwrites each step's input projection in place with what its elementwise part
# reads (CellSpec.store) and stacks the previous states; no gate value and no noise
# is kept. The backward scan regenerates the noise from the step seeds, does one
# (B, G) x (G, H) matmul per step and writes each step's cotangent over its
# pre-activations, in the same buffer; the recurrent kernel's gradient is then one
# (H, T B) x (T B, G) matmul instead of T small ones inside the loop.
@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _recurrence(scan: _Scan, recurrent_kernel, small, scales, x_proj, seeds, valid, carry):
  return _forward(scan, recurrent_kernel, small, scales, x_proj, seeds, valid, carry)


def _overwrite_and_prefetch(buffer, row, t, next_t, axis):
  """``buffer[t] = row`` along ``axis``, then reads row ``next_t`` of the updated buffer.

  Reading the next row after the write (not the current row before it) leaves the
  write as the old buffer's only use, so XLA updates the loop-carried buffer in
  place instead of copying all of it at every step.
  """
  buffer = jax.lax.dynamic_update_index_in_dim(buffer, row, t, axis)
  return buffer, jax.lax.dynamic_index_in_dim(buffer, next_t, axis=axis, keepdims=False)


def _recurrence_fwd(scan, recurrent_kernel, small, scales, x_proj, seeds, valid, carry):
  last = x_proj.shape[scan.time_axis] - 1

  def body(state, inputs):
    carry, x_proj_t, buffer = state
    t, seeds_t, valid_t = inputs
    pre = scan.spec.split(x_proj_t, jnp.dot(_hidden(scan.spec, carry), recurrent_kernel))
    new_carry, outputs = _masked_step(scan, pre, carry, seeds_t, valid_t, small, scales)
    row, extra = scan.spec.store(pre)
    buffer, x_proj_next = _overwrite_and_prefetch(buffer, row, t, jnp.minimum(t + 1, last),
                                                  scan.time_axis)
    return (new_carry, x_proj_next, buffer), (outputs, carry, extra)

  (carry, _, buffer), (outputs, carries, extras) = jax.lax.scan(
      body, (carry, _row(scan, x_proj, 0), x_proj), (jnp.arange(last + 1), seeds, valid),
      unroll=scan.unroll)
  residuals = (recurrent_kernel, small, scales, seeds, valid, buffer, carries, extras)
  return (carry, outputs), residuals


def _draws(spec: CellSpec, seeds, carries):
  """Every step's noise, ``(T, B, width)`` per stream, from ``(T, num_streams, 2)`` seeds."""
  if seeds is None:
    return None
  hidden = _hidden(spec, carries)
  batch_shape = hidden.shape[1:-1]
  return tuple(
      jax.vmap(lambda s, w=width: noise.normal_from_seed(s, batch_shape + (w,), hidden.dtype))(
          seeds[:, i])
      for i, width in enumerate(spec.stream_widths(hidden.shape[-1])))


def _recurrence_bwd(scan, residuals, cotangents):
  recurrent_kernel, small, scales, seeds, valid, buffer, carries, extras = residuals
  d_carry, (d_ys, _) = cotangents  # the statistics are not differentiated
  # The backward steps recompute no statistics.
  scan = scan._replace(static=scan.static._replace(statistics=False))
  last = buffer.shape[scan.time_axis] - 1
  # The forward steps' noise drawn again, all steps at once, before the loop: a
  # step's several cotangent computations then read its draw from memory.
  draws = _draws(scan.spec, seeds, carries)

  def body(state, inputs):
    d_carry, d_small, row, buffer, extra, extras = state
    t, carry, draws_t, valid_t, d_y = inputs
    step_fn = lambda pre, carry, small: _masked_step(scan, pre, carry, draws_t, valid_t,
                                                     *small)
    _, vjp = jax.vjp(step_fn, scan.spec.load(row, extra), carry, (small, scales))
    d_pre, d_carry_prev, d_small_t = vjp((d_carry, (d_y, None)))
    d_x_proj, d_r = scan.spec.split_transpose(d_pre)
    d_carry_prev = _add_to_hidden(scan.spec, d_carry_prev, jnp.dot(d_r, recurrent_kernel.T))
    # Each step's cotangent overwrites the pre-activations it was computed from.
    previous = jnp.maximum(t - 1, 0)
    buffer, row = _overwrite_and_prefetch(buffer, d_x_proj, t, previous, scan.time_axis)
    if extras is not None:
      _, d_extra = scan.spec.store(d_pre)
      extras, extra = _overwrite_and_prefetch(extras, d_extra, t, previous, 0)
    d_small = jax.tree.map(jnp.add, d_small, d_small_t)
    return (d_carry_prev, d_small, row, buffer, extra, extras), None

  zeros = jax.tree.map(jnp.zeros_like, (small, scales))
  extra = None if extras is None else extras[last]
  state = (d_carry, zeros, _row(scan, buffer, last), buffer, extra, extras)
  (d_carry, (d_small, d_scales), _, d_rows, _, d_extras), _ = jax.lax.scan(
      body, state, (jnp.arange(last + 1), carries, draws, valid, d_ys), reverse=True,
      unroll=scan.unroll)
  h_prev = _hidden(scan.spec, carries)  # (T, B, H)
  x_axes = "tbg" if scan.time_axis == 0 else "btg"
  d_recurrent_kernel = scan.spec.kernel_grad(h_prev, d_rows, d_extras, x_axes)
  return d_recurrent_kernel, d_small, d_scales, d_rows, None, None, d_carry


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def _flip(xs: jax.Array, seq_lengths: jax.Array | None, time_axis: int) -> jax.Array:
  """Reverses each sequence's first ``seq_lengths`` steps; padding stays at the end.

  As ``flax.linen.RNN`` does for ``reverse=True``.
  """
  num_steps = xs.shape[time_axis]
  if seq_lengths is None:
    return jnp.flip(xs, axis=time_axis)
  steps = jnp.arange(num_steps)
  index = (seq_lengths[None, :] - 1 - steps[:, None]) % num_steps  # (T, B)
  index = index if time_axis == 0 else index.T
  return jnp.take_along_axis(xs, index[..., None], axis=time_axis)


def _step_seeds(key: jax.Array | None, num_steps: int, num_streams: int):
  """``(T, num_streams, 2)`` seed words of the step keys (one key split, or one per step).

  All computed at once, before the loop: a step then only hashes its elements.
  """
  if key is None:
    return None
  # One key is split into the step keys; a (T,) array already is one key per step
  # (the Flax layers pass the keys their cells would draw under nn.RNN/nnx.RNN).
  keys = jax.random.split(key, num_steps) if key.ndim == 0 else key
  if keys.shape != (num_steps,):
    raise ValueError(
        f"key must be one PRNG key or one key per step, of shape ({num_steps},), got "
        f"a key array of shape {key.shape}. Fix: pass jax.random.key(seed), or "
        f"jax.random.split(key, {num_steps}) for explicit step keys."
    )
  return noise.stream_seeds(keys, num_streams)


def sequence(
    cell: str | CellSpec,
    inputs: jax.typing.ArrayLike,
    weights,
    key: jax.Array | None = None,
    *,
    initial_carry=None,
    seq_lengths: jax.typing.ArrayLike | None = None,
    reverse: bool = False,
    keep_order: bool = False,
    time_major: bool = False,
    unroll: int = 1,
    sigmoid: UnitNoise = SIGMOID_UNIT,
    tanh: UnitNoise = TANH_UNIT,
    noisy_gates: Sequence[str] | None = None,
    deterministic: bool = False,
    statistics: bool = False,
):
  """Any cell of :data:`CELLS` over a whole sequence; see :func:`lstm_sequence`."""
  spec = cell_spec(cell)
  weights = spec.weights_type(*weights)
  hidden = jnp.shape(weights.recurrent_kernel)[0]
  inputs = checks.sequence_input(inputs, jnp.shape(weights.input_kernel)[0])
  noisy_gates = checks.gate_names(spec.gates if noisy_gates is None else noisy_gates,
                                  spec.gates)
  static = _static(spec, sigmoid, tanh, noisy_gates, deterministic)._replace(
      statistics=bool(statistics))
  key = checks.noise_key(key, static.deterministic or not noisy_gates, "the noisy cell")
  time_axis = 0 if time_major else 1
  num_steps, batch = inputs.shape[time_axis], inputs.shape[1 - time_axis]
  if initial_carry is None:
    initial_carry = carry_from_parts(
        spec, [jnp.zeros((batch, hidden), inputs.dtype)] * len(spec.carry_parts))
  scales = _scales(spec, sigmoid, tanh, (), hidden)
  initial_carry = checks.carry(initial_carry, spec.carry_parts, hidden, spec.title,
                               "initial_carry")
  valid = None
  if seq_lengths is not None:
    seq_lengths = checks.seq_lengths(seq_lengths, batch)
    valid = (jnp.arange(num_steps)[:, None] < seq_lengths[None, :])[..., None]
  xs = _flip(inputs, seq_lengths, time_axis) if reverse else inputs
  # All T input projections in one matmul, in the inputs' own layout: the scan
  # indexes the time axis in place rather than transposing this big buffer.
  x_proj = jnp.dot(xs, weights.input_kernel) + weights.bias
  seeds = _step_seeds(key, num_steps, spec.num_streams)
  if valid is not None:
    # The padding mask gives each draw several consumers in the forward step (the
    # masked carry, the output), into each of which XLA would fuse a generator.
    static = static._replace(materialize_noise=True)
  scan = _Scan(spec, static, unroll, time_axis)
  carry, (ys, per_step) = _recurrence(scan, weights.recurrent_kernel, spec.small(weights),
                                      scales, x_proj, seeds, valid, initial_carry)
  if not time_major:
    ys = jnp.swapaxes(ys, 0, 1)
  if reverse and keep_order:
    ys = _flip(ys, seq_lengths, time_axis)
  if statistics:
    return carry, ys, _over_steps(*per_step)
  return carry, ys


def _over_steps(per_step, counts):
  """The steps' statistics ``(T,)`` as one, each step weighted by its valid sequences."""
  total = jnp.maximum(counts.sum(), 1.0)
  return jax.tree.map(lambda values: (values * counts).sum() / total, per_step)


lstm_sequence = _for_cell(sequence, LSTM, "lstm_sequence", r"""Runs the noisy LSTM of :func:`lstm_step` over a whole sequence.

  The input projections of all steps are one ``(B T, D) x (D, 4H)`` matmul outside
  the scan; each step does one ``(B, H) x (H, 4H)`` matmul and its elementwise
  gates. Step ``t`` (in processing order) draws its noise from
  ``jax.random.split(key, T)[t]`` (or from ``key[t]`` if ``key`` holds one key per
  step), so scanning :func:`lstm_step` with those keys gives the same numbers,
  gradients included. The backward pass is hand-written:
  it keeps ``6H`` floats per step and sequence (pre-activations, previous
  ``cell`` and ``hidden``), regenerates the noise, and computes the recurrent
  kernel's gradient as one matmul after the loop.

  Args:
    inputs: ``(B, T, D)``, or ``(T, B, D)`` with ``time_major``.
    weights: :class:`LSTMWeights`.
    key: PRNG key for the whole sequence, or a ``(T,)`` array of step keys in
      processing order; required unless ``deterministic``.
    initial_carry: ``(cell, hidden)`` of shape ``(B, H)`` each; zeros by default.
    seq_lengths: optional ``(B,)`` integer lengths. Past its length a sequence's
      carry is frozen and its outputs are zero; the returned carry is the carry
      at the last valid step (as ``flax.linen.RNN``).
    reverse: process the sequence right to left (padding stays at the end).
    keep_order: with ``reverse``, return the outputs in the original order.
    time_major: inputs and outputs are ``(T, B, ...)``.
    unroll: scan iterations unrolled per loop iteration (``jax.lax.scan``).
    sigmoid: :class:`~noisy_jax.UnitNoise` of the sigmoid gates.
    tanh: :class:`~noisy_jax.UnitNoise` of the tanh units.
    noisy_gates: see :func:`lstm_step`.
    deterministic: replace the noise by its expectation (Eq. 13).
    statistics: also return the saturation diagnostics of the whole call: a
      dict from gate name to :class:`~noisy_jax.activations.UnitStatistics`,
      averaged over every valid step and sequence. Computed in the same forward
      scan; the backward pass is unchanged and ignores them. Off (the default),
      nothing of them is traced.

  Returns:
    ``((cell_T, hidden_T), outputs)`` with outputs ``(B, T, H)`` (``(T, B, H)``
    time-major); with ``statistics``, ``((cell_T, hidden_T), outputs, statistics)``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import noisy_jax
    >>> shapes = noisy_jax.rnn.weight_shapes("lstm", 3, 2)
    >>> w = noisy_jax.rnn.LSTMWeights(*(0.1 * jnp.ones(s) for s in shapes.values()))
    >>> carry, ys = noisy_jax.rnn.lstm_sequence(jnp.ones((4, 5, 3)), w, jax.random.key(0))
    >>> ys.shape
    (4, 5, 2)
  """)


gru_sequence = _for_cell(sequence, GRU, "gru_sequence", r"""Runs the noisy GRU of :func:`gru_step` over a whole sequence.

  Same contract as :func:`lstm_sequence` (one input matmul outside the scan, one
  recurrent matmul per step, step ``t`` keyed by ``jax.random.split(key, T)[t]`` or
  by ``key[t]``, hand-written backward pass keeping ``5H`` floats per step and
  sequence), with the carry ``hidden`` of shape ``(B, H)``.

  Args:
    inputs: ``(B, T, D)``, or ``(T, B, D)`` with ``time_major``.
    weights: :class:`GRUWeights`.
    key: PRNG key for the whole sequence, or a ``(T,)`` array of step keys (see
      :func:`lstm_sequence`); required unless ``deterministic``.
    initial_carry: ``hidden`` of shape ``(B, H)``; zeros by default.
    seq_lengths: optional ``(B,)`` integer lengths (see :func:`lstm_sequence`).
    reverse: process the sequence right to left (padding stays at the end).
    keep_order: with ``reverse``, return the outputs in the original order.
    time_major: inputs and outputs are ``(T, B, ...)``.
    unroll: scan iterations unrolled per loop iteration.
    sigmoid: :class:`~noisy_jax.UnitNoise` of the reset and update gates.
    tanh: :class:`~noisy_jax.UnitNoise` of the candidate.
    noisy_gates: see :func:`gru_step`.
    deterministic: replace the noise by its expectation (Eq. 13).
    statistics: see :func:`lstm_sequence`.

  Returns:
    ``(hidden_T, outputs)`` with outputs ``(B, T, H)`` (``(T, B, H)`` time-major),
    and the statistics with ``statistics``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import noisy_jax
    >>> shapes = noisy_jax.rnn.weight_shapes("gru", 3, 2)
    >>> w = noisy_jax.rnn.GRUWeights(*(0.1 * jnp.ones(s) for s in shapes.values()))
    >>> h, ys = noisy_jax.rnn.gru_sequence(jnp.ones((4, 5, 3)), w, deterministic=True)
    >>> h.shape, ys.shape
    ((4, 2), (4, 5, 2))
  """)



def layer_call(layer: Any, inputs: jax.Array, weights, key: jax.Array | None, *,
               sigmoid: UnitNoise, tanh: UnitNoise, deterministic: bool, time_major: bool,
               initial_carry=None, seq_lengths=None, return_carry: bool | None = None,
               reverse: bool | None = None, keep_order: bool | None = None,
               statistics: bool = False):
  """A Flax layer's whole-sequence call, once its inputs, weights and key are ready.

  ``layer`` is a Linen or NNX layer (its ``_spec``, ``noisy_gates``, ``unroll`` and
  the defaults of the per-call options are read); a per-call option that is None
  takes the layer's attribute of the same name. With ``statistics``, returns
  ``(result, statistics)`` (see :func:`sequence`).
  """
  pick = lambda value, name: getattr(layer, name) if value is None else value
  carry, outputs, *unit_statistics = sequence(
      layer._spec, inputs, weights, key, initial_carry=initial_carry,
      seq_lengths=seq_lengths, reverse=pick(reverse, "reverse"),
      keep_order=pick(keep_order, "keep_order"), time_major=time_major, unroll=layer.unroll,
      sigmoid=sigmoid, tanh=tanh, noisy_gates=layer.noisy_gates, deterministic=deterministic,
      statistics=statistics)
  result = (carry, outputs) if pick(return_carry, "return_carry") else outputs
  return (result, *unit_statistics) if statistics else result
