"""Neural Turing Machine step with a noisy controller (Graves et al., 2014; Gulcehre et al., 2016).

One pure step, :func:`ntm_step`, shared by the Linen (``noisy_jax.nn.NTMCell``) and
NNX (``noisy_jax.nnx.NTMCell``) cells. It is split the way DeepMind's DNC splits
its memory access, one private function per part: the step-0 substitution of the
learned initial state (``_previous_reads_and_weighting``), the controller
(``_controller_step``, running an entry of :data:`CONTROLLERS`), the parse of its
output into the heads' parameters (``_head_params``, a :class:`HeadParams`), the
addressing (``_address``, Eqs. 5-9 of :mod:`noisy_jax._src.addressing`) and the
memory update (``_update_memory``: the read heads read the previous memory, then
the write heads erase and add).

Noise (Gulcehre et al., 2016, Sec. 6.6, "noisy activations in the controller"):
the controller's gates and the heads' interpolation and erase gates are noisy
hard-sigmoids, the controller's tanh units noisy hard-tanhs (Eq. 12, or the
input-noise variants). Keys, add vectors (tanh), key strengths and sharpening
exponents (softplus) and shift weightings (softmax) are not noisy.

Initialisation for reliable training (Collier and Beel, 2018): memory starts at
the small constant 1e-6, the initial read vectors and the heads' initial
weightings are learned, and everything the controller sees and emits is clipped
to ``+-clip_value`` (20).

Parameter layout (``R`` read heads, ``W`` write heads, ``K = R + W`` heads in
that order, memory ``N x M``, controller size ``H``, controller input
``D + R M``, shifts ``-S..S``):

* ``controller``: the controller's weights, of its :class:`ControllerSpec`'s
  ``weights_type``: the noisy LSTM's :class:`noisy_jax._src.rnn.LSTMWeights`, or
  :class:`FeedForwardWeights`.
* ``head_kernel (H, P)``, ``head_bias (P,)``: the controller output's map to the
  heads' parameters, laid out field by field of :class:`HeadParams` over all heads:
  ``[content_key K*M | key_strength K | interpolation_gate K | shift_weighting
  K*(2S+1) | sharpening K | erase W*M | add W*M]``.
* ``p_gate (K,)``, ``p_erase (W, M)``: the learned ``p`` of the noisy gates.
* ``initial_reads (R, M)``, ``initial_read_logits (R, N)``,
  ``initial_write_logits (W, N)``: the learned initial state.
"""

import itertools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from noisy_jax._src import activations
from noisy_jax._src import addressing
from noisy_jax._src import checks
from noisy_jax._src import noise
from noisy_jax._src import rnn

HEAD_GATES = ("interpolation", "erase")
FEEDFORWARD_GATES = ("hidden",)
# Constant initial memory: Collier and Beel (2018) found it the most reliable.
MEMORY_INIT = 1e-6
# Clip of the controller's input, state and output and of the heads' parameters.
CLIP_VALUE = 20.0


class FeedForwardWeights(NamedTuple):
  """A noisy feed-forward controller: ``hidden = phi_t(x kernel + bias)``, one ``p`` per unit."""

  kernel: jax.Array
  bias: jax.Array
  p: jax.Array


class NTMWeights(NamedTuple):
  """Learned parameters of an NTM (layout in the module docstring)."""

  controller: Any  # the controller's ControllerSpec.weights_type
  head_kernel: jax.Array
  head_bias: jax.Array
  p_gate: jax.Array
  p_erase: jax.Array
  initial_reads: jax.Array
  initial_read_logits: jax.Array
  initial_write_logits: jax.Array


def _deprecated_field(old: str, new: str) -> property:
  def getter(self):
    warnings.warn(f"NTMState.{old} is deprecated; use NTMState.{new}.", DeprecationWarning,
                  stacklevel=2)
    return getattr(self, new)

  return property(getter, doc=f"Deprecated name of :attr:`{new}`.")


class NTMState(NamedTuple):
  """The NTM's recurrent state (the carry), every field with leading batch axes ``...``.

  Attributes:
    controller: the controller's state, a tuple of its ``state_parts`` (each
      ``(..., H)``): the LSTM's ``(cell, hidden)``; ``()`` for a feed-forward
      controller.
    memory: ``(..., N, M)``.
    reads: the last read vectors, ``(..., R, M)``.
    read_weighting: the read heads' last weightings, ``(..., R, N)``.
    write_weighting: the write heads' last weightings, ``(..., W, N)``.
    step: ``(...)`` int32, the number of steps taken. At step 0 the learned
      initial reads and weightings replace ``reads``, ``read_weighting`` and
      ``write_weighting``.

  Note:
    ``read_weights`` and ``write_weights``, the fields' old names, still read
    (with a ``DeprecationWarning``) for one release.
  """

  controller: Any
  memory: jax.Array
  reads: jax.Array
  read_weighting: jax.Array
  write_weighting: jax.Array
  step: jax.Array

  read_weights = _deprecated_field("read_weights", "read_weighting")
  write_weights = _deprecated_field("write_weights", "write_weighting")


class HeadParams(NamedTuple):
  r"""Every head's addressing and writing parameters for one step (Graves et al., 2014).

  Parsed from the controller's output by a linear map, field by field in this
  order (the columns of ``head_kernel``). The addressing fields hold all
  ``K = R + W`` heads, read heads first; ``erase`` and ``add`` the ``W`` write
  heads. As a layout (:func:`head_layout`) each field holds its shape instead.

  Attributes:
    content_key: :math:`\mathbf{k}_t = \tanh(\cdot)`, ``(..., K, M)``: the key
      matched against every location (Eqs. 5-6).
    key_strength: :math:`\beta_t = \mathrm{softplus}(\cdot) \ge 0`, ``(..., K)``
      (Eq. 5).
    interpolation_gate: :math:`g_t = \phi_s(\cdot) \in [0, 1]`, ``(..., K)``,
      a noisy hard-sigmoid (Eq. 7).
    shift_weighting: :math:`\mathbf{s}_t = \mathrm{softmax}(\cdot)`,
      ``(..., K, 2S + 1)``, over the shifts ``-S..S`` (Eq. 8).
    sharpening: :math:`\gamma_t = 1 + \mathrm{softplus}(\cdot) \ge 1`,
      ``(..., K)`` (Eq. 9).
    erase: :math:`\mathbf{e}_t = \phi_s(\cdot) \in [0, 1]^M`, ``(..., W, M)``,
      noisy hard-sigmoids (Eq. 3).
    add: :math:`\mathbf{a}_t = \tanh(\cdot)`, ``(..., W, M)`` (Eq. 4).
  """

  content_key: Any
  key_strength: Any
  interpolation_gate: Any
  shift_weighting: Any
  sharpening: Any
  erase: Any
  add: Any


def head_layout(memory_width: int, num_read_heads: int, num_write_heads: int,
                shift_range: int) -> HeadParams:
  """Each head parameter's shape per example, a :class:`HeadParams` of shapes.

  Example:
    >>> from noisy_jax import ntm
    >>> ntm.head_layout(20, 1, 1, 1).shift_weighting
    (2, 3)
  """
  heads = num_read_heads + num_write_heads
  return HeadParams(
      content_key=(heads, memory_width), key_strength=(heads,),
      interpolation_gate=(heads,), shift_weighting=(heads, 2 * shift_range + 1),
      sharpening=(heads,), erase=(num_write_heads, memory_width),
      add=(num_write_heads, memory_width))


def _num_head_params(layout: HeadParams) -> int:
  return sum(math.prod(shape) for shape in layout)


def _clip(x, clip_value):
  return x if clip_value is None else jnp.clip(x, -clip_value, clip_value)


def _gate(x, key, p, gate: activations.UnitNoise, noisy: bool, deterministic: bool):
  """A sigmoid-family gate: noisy (Eq. 12 or 14-15) or plain, then kept in [0, 1].

  The clip is straight-through: its forward value is in [0, 1], its gradient is
  that of the noisy unit, so a saturated gate keeps Eq. 10's gradient.
  """
  if not noisy:
    return activations.activation(x, kind=gate.kind)
  y = _noisy_unit(x, key, p, gate, deterministic)
  return y + jax.lax.stop_gradient(jnp.clip(y, 0.0, 1.0) - y)


def _noisy_unit(x, key, p, unit: activations.UnitNoise, deterministic: bool):
  """A noisy unit with no remat of its own: ntm_step checkpoints its noisy part once."""
  seed = None if deterministic else noise.seed_words(key)
  return activations.noisy_unit(x, seed, p, unit, deterministic=deterministic,
                                materialize=True)


def _unit_statistics(x, key, p, unit: activations.UnitNoise, noisy: bool,
                     deterministic: bool) -> activations.UnitStatistics:
  """The statistics of a unit drawn by :func:`_noisy_unit` (or plain, if not ``noisy``)."""
  drawn = noisy and not deterministic
  # The unit's own seed words again (NANIL's scale reads its draw): the key's second
  # use is on purpose, hence the clone.
  seed = noise.seed_words(jax.random.clone(key)) if drawn else None
  return activations.unit_statistics(x, p, unit, noisy=drawn, seed=seed)


# The controllers. A step maps (state, x, weights, key) to (new_state, hidden), both
# clipped; it sees only its own gates in noisy_gates.


def _lstm_step(state, x, weights: rnn.LSTMWeights, key, *, sigmoid, tanh, noisy_gates,
               deterministic, clip_value, statistics):
  x_proj = rnn.input_projection(x, weights.input_kernel, weights.bias)
  (c, h), *rest = rnn.lstm_step(
      state, x_proj, weights, key, sigmoid=sigmoid, tanh=tanh, noisy_gates=noisy_gates,
      deterministic=deterministic, remat=False, statistics=statistics)
  new_state = (_clip(c, clip_value), _clip(h, clip_value))
  return new_state, new_state[1], rest[1] if statistics else {}


def _lstm_initializers(kernel_init, recurrent_kernel_init, bias_init, p_init):
  return {name: rnn.initializer_for(name, kernel_init, recurrent_kernel_init, bias_init,
                                    p_init, 4)
          for name in rnn.LSTMWeights._fields}


def _feedforward_step(state, x, weights: FeedForwardWeights, key, *, sigmoid, tanh,
                      noisy_gates, deterministic, clip_value, statistics):
  del state, sigmoid  # stateless; its one layer is a tanh unit
  z = jnp.dot(x, weights.kernel) + weights.bias
  noisy = "hidden" in noisy_gates
  if not noisy:
    hidden = activations.activation(z, kind=tanh.kind)
  else:
    hidden = _noisy_unit(z, key, weights.p, tanh, deterministic)
  unit_statistics = {}
  if statistics:
    unit_statistics["hidden"] = _unit_statistics(z, key, weights.p, tanh, noisy,
                                                 deterministic)
  return (), _clip(hidden, clip_value), unit_statistics


class ControllerSpec(NamedTuple):
  """One kind of NTM controller, as data: what every function here looks up.

  Attributes:
    name: its key in :data:`CONTROLLERS`, e.g. ``"lstm"``.
    gates: its units that ``noisy_gates`` may name, in order.
    weights_type: the NamedTuple of its parameters; field order = parameter order.
    shapes: ``(controller_in, features) -> {name: shape}`` of its parameters, with
      ``controller_in = D + R M`` (the input and the previous reads).
    initializers: ``(kernel_init, recurrent_kernel_init, bias_init, p_init) ->
      {name: initializer}`` of its parameters.
    state_parts: names of its state's arrays, each ``(..., H)`` and zero in a
      fresh state; ``()`` for a stateless controller.
    step: ``(state, x, weights, key, *, sigmoid, tanh, noisy_gates, deterministic,
      clip_value, statistics) -> (new_state, hidden, unit_statistics)``, the first
      two clipped to ``clip_value``; ``unit_statistics`` maps each of its gates
      to its :class:`~noisy_jax.activations.UnitStatistics` with ``statistics``,
      and is ``{}`` without. It runs inside :func:`ntm_step`'s checkpoint, so its
      noisy units have no remat of their own (``rnn.lstm_step(..., remat=False)``,
      :func:`activations.noisy_unit`).
  """

  name: str
  gates: tuple[str, ...]
  weights_type: type
  shapes: Callable[[int, int], dict[str, tuple[int, ...]]]
  initializers: Callable[..., dict[str, Callable]]
  state_parts: tuple[str, ...]
  step: Callable


LSTM = ControllerSpec(
    name="lstm", gates=rnn.LSTM_GATES, weights_type=rnn.LSTMWeights,
    shapes=lambda d, h: rnn.weight_shapes("lstm", d, h),
    initializers=_lstm_initializers, state_parts=("cell", "hidden"), step=_lstm_step)

FEEDFORWARD = ControllerSpec(
    name="feedforward", gates=FEEDFORWARD_GATES, weights_type=FeedForwardWeights,
    shapes=lambda d, h: {"kernel": (d, h), "bias": (h,), "p": (h,)},
    initializers=lambda kernel_init, recurrent_kernel_init, bias_init, p_init: {
        "kernel": kernel_init, "bias": bias_init, "p": p_init},
    state_parts=(), step=_feedforward_step)

CONTROLLERS: dict[str, ControllerSpec] = {"lstm": LSTM, "feedforward": FEEDFORWARD}


def controller_spec(controller: str | ControllerSpec) -> ControllerSpec:
  """The :class:`ControllerSpec` of ``controller`` (a key of :data:`CONTROLLERS`, or a spec).

  Example:
    >>> from noisy_jax import ntm
    >>> ntm.controller_spec("lstm").state_parts
    ('cell', 'hidden')
  """
  if isinstance(controller, ControllerSpec):
    return controller
  return CONTROLLERS[checks.choice(controller, "controller", tuple(CONTROLLERS))]


def gate_names(controller: str | ControllerSpec) -> tuple[str, ...]:
  """Every gate of an NTM with ``controller`` that ``noisy_gates`` may name.

  Example:
    >>> from noisy_jax import ntm
    >>> ntm.gate_names("feedforward")
    ('hidden', 'interpolation', 'erase')
  """
  return controller_spec(controller).gates + HEAD_GATES


def weight_shapes(
    controller: str | ControllerSpec,
    in_features: int,
    features: int,
    memory_size: int,
    memory_width: int,
    num_read_heads: int = 1,
    num_write_heads: int = 1,
    shift_range: int = 1,
) -> dict[str, Any]:
  """Shapes of the NTM's parameters, by name, in the field order of :class:`NTMWeights`.

  Args:
    controller: ``"lstm"`` or ``"feedforward"`` (a key of :data:`CONTROLLERS`).
    in_features: input size ``D``.
    features: controller size ``H``.
    memory_size: number of memory locations ``N``.
    memory_width: width of a location ``M``.
    num_read_heads: ``R``.
    num_write_heads: ``W``.
    shift_range: ``S``; the heads shift by ``-S..S``.

  Returns:
    A dict from name to shape; ``"controller"`` maps to a dict of the
    controller's own parameter shapes.

  Example:
    >>> from noisy_jax import ntm
    >>> ntm.weight_shapes("lstm", 9, 100, 128, 20)["head_kernel"]
    (100, 92)
  """
  spec = controller_spec(controller)
  checks.sizes(in_features=in_features, features=features, memory_size=memory_size,
               memory_width=memory_width, num_read_heads=num_read_heads,
               num_write_heads=num_write_heads, shift_range=shift_range)
  num_params = _num_head_params(
      head_layout(memory_width, num_read_heads, num_write_heads, shift_range))
  return {
      "controller": spec.shapes(in_features + num_read_heads * memory_width, features),
      "head_kernel": (features, num_params),
      "head_bias": (num_params,),
      "p_gate": (num_read_heads + num_write_heads,),
      "p_erase": (num_write_heads, memory_width),
      "initial_reads": (num_read_heads, memory_width),
      "initial_read_logits": (num_read_heads, memory_size),
      "initial_write_logits": (num_write_heads, memory_size),
  }


def initializers_for(controller: str | ControllerSpec, kernel_init: Callable,
                     recurrent_kernel_init: Callable, bias_init: Callable,
                     p_init: Callable, initial_state_init: Callable) -> dict[str, Any]:
  """Callables of :func:`weight_shapes`' parameters, by name (nested for the controller)."""
  return {
      "controller": controller_spec(controller).initializers(
          kernel_init, recurrent_kernel_init, bias_init, p_init),
      "head_kernel": kernel_init,
      "head_bias": bias_init,
      "p_gate": p_init,
      "p_erase": p_init,
      "initial_reads": initial_state_init,
      "initial_read_logits": initial_state_init,
      "initial_write_logits": initial_state_init,
  }


def assemble_weights(controller: str | ControllerSpec, params: Mapping[str, Any]) -> NTMWeights:
  """Builds :class:`NTMWeights` from a (nested) dict named as :func:`weight_shapes`."""
  weights_type = controller_spec(controller).weights_type
  return NTMWeights(weights_type(*(params["controller"][name] for name in weights_type._fields)),
                    *(params[name] for name in NTMWeights._fields[1:]))


def initial_state(
    batch_shape: tuple[int, ...],
    *,
    controller: str | ControllerSpec,
    features: int,
    memory_size: int,
    memory_width: int,
    num_read_heads: int = 1,
    num_write_heads: int = 1,
    memory_init: float = MEMORY_INIT,
    dtype: jax.typing.DTypeLike = jnp.float32,
) -> NTMState:
  """A fresh :class:`NTMState`: memory at ``memory_init``, controller at zero, step 0.

  The reads and weightings are placeholders (zeros and uniform); :func:`ntm_step`
  replaces them with the learned initial values at step 0.

  Args:
    batch_shape: leading axes, e.g. ``(batch,)``.
    controller: ``"lstm"`` or ``"feedforward"`` (a key of :data:`CONTROLLERS`).
    features: controller size ``H``.
    memory_size: ``N``.
    memory_width: ``M``.
    num_read_heads: ``R``.
    num_write_heads: ``W``.
    memory_init: the constant every memory cell starts at (Collier and Beel, 2018).
    dtype: floating dtype of the state.

  Returns:
    An :class:`NTMState` with leading axes ``batch_shape``.

  Example:
    >>> from noisy_jax import ntm
    >>> state = ntm.initial_state((2,), controller="lstm", features=8,
    ...                           memory_size=16, memory_width=4)
    >>> state.memory.shape, state.read_weighting.shape, state.controller[0].shape
    ((2, 16, 4), (2, 1, 16), (2, 8))
  """
  spec = controller_spec(controller)
  checks.sizes(features=features, memory_size=memory_size, memory_width=memory_width,
               num_read_heads=num_read_heads, num_write_heads=num_write_heads)
  batch_shape = tuple(batch_shape)
  zeros = lambda *shape: jnp.zeros(batch_shape + shape, dtype)
  uniform = lambda heads: jnp.full(batch_shape + (heads, memory_size), 1.0 / memory_size,
                                   dtype)
  return NTMState(
      controller=tuple(zeros(features) for _ in spec.state_parts),
      memory=jnp.full(batch_shape + (memory_size, memory_width), memory_init, dtype),
      reads=zeros(num_read_heads, memory_width),
      read_weighting=uniform(num_read_heads),
      write_weighting=uniform(num_write_heads),
      step=jnp.zeros(batch_shape, jnp.int32),
  )


def _check_state(state: NTMState, weights: NTMWeights, spec: ControllerSpec) -> NTMState:
  if not isinstance(state, NTMState):
    raise TypeError(
        f"state must be an NTMState, got {type(state).__name__}. Fix: build it with "
        "initial_state() or the cell's initialize_carry()."
    )
  num_read_heads, memory_size = jnp.shape(weights.initial_read_logits)
  num_write_heads, memory_width = jnp.shape(weights.p_erase)
  expected = (
      ("memory", (memory_size, memory_width)),
      ("reads", (num_read_heads, memory_width)),
      ("read_weighting", (num_read_heads, memory_size)),
      ("write_weighting", (num_write_heads, memory_size)),
  )
  for name, tail in expected:
    shape = jnp.shape(getattr(state, name))
    if shape[len(shape) - 2:] != tail:
      raise ValueError(
          f"state.{name} has shape {shape}; its last two axes must be {tail} for this "
          "NTM's parameters. Fix: build the state with initial_state() (or the cell's "
          "initialize_carry()) using the same sizes as the parameters."
      )
  parts = state.controller
  if not isinstance(parts, (tuple, list)) or len(parts) != len(spec.state_parts):
    raise ValueError(
        f"state.controller does not fit controller={spec.name!r}, whose state is "
        f"({', '.join(spec.state_parts)}). Fix: build the state with initial_state() "
        "(or the cell's initialize_carry()) for the same controller."
    )
  return state


def _check_head_bias(weights: NTMWeights, shift_range: int) -> None:
  num_read_heads, _ = jnp.shape(weights.initial_read_logits)
  num_write_heads, memory_width = jnp.shape(weights.p_erase)
  num_params = _num_head_params(
      head_layout(memory_width, num_read_heads, num_write_heads, shift_range))
  if jnp.shape(weights.head_bias) != (num_params,):
    raise ValueError(
        f"weights.head_bias has shape {jnp.shape(weights.head_bias)} but shift_range="
        f"{shift_range} and these heads need ({num_params},). Fix: pass the "
        "shift_range the weights were built for."
    )


def _previous_reads_and_weighting(state: NTMState, weights: NTMWeights):
  """The last reads ``(..., R, M)`` and weightings ``(..., K, N)``, learned at step 0."""
  fresh = (state.step == 0)[..., None, None]
  reads = jnp.where(fresh, weights.initial_reads, state.reads)
  prev_weighting = jnp.where(
      fresh,
      jax.nn.softmax(jnp.concatenate([weights.initial_read_logits,
                                      weights.initial_write_logits]), axis=-1),
      jnp.concatenate([state.read_weighting, state.write_weighting], axis=-2),
  )
  return reads, prev_weighting


def _flatten_heads(reads, batch_shape):
  """Read vectors ``(..., R, M)`` as ``batch_shape + (R M,)``, head after head."""
  return reads.reshape(tuple(batch_shape) + (reads.shape[-2] * reads.shape[-1],))


def _controller_step(spec: ControllerSpec, state, inputs, reads, weights, key, *,
                     sigmoid, tanh, noisy_gates, deterministic, clip_value, statistics):
  """The controller on ``[x_t, r_{t-1}]`` (clipped): its new state and output ``h_t``."""
  controller_in = jnp.concatenate([inputs, _flatten_heads(reads, inputs.shape[:-1])],
                                  axis=-1)
  return spec.step(
      state, _clip(controller_in, clip_value), spec.weights_type(*weights), key,
      sigmoid=sigmoid, tanh=tanh, noisy_gates=tuple(g for g in noisy_gates if g in spec.gates),
      deterministic=deterministic, clip_value=clip_value, statistics=statistics)


def _head_params(hidden, weights: NTMWeights, gate_key, erase_key, *, shift_range, sigmoid,
                 noisy_gates, deterministic, clip_value, statistics):
  """The controller's output ``h_t`` parsed into every head's parameters.

  Returns:
    The :class:`HeadParams`, and the statistics of the two gates (``{}`` without
    ``statistics``).
  """
  num_read_heads, _ = jnp.shape(weights.initial_read_logits)
  num_write_heads, memory_width = jnp.shape(weights.p_erase)
  layout = head_layout(memory_width, num_read_heads, num_write_heads, shift_range)
  params = _clip(jnp.dot(hidden, weights.head_kernel) + weights.head_bias, clip_value)
  split_points = list(itertools.accumulate(math.prod(shape) for shape in layout))[:-1]
  raw = HeadParams(*(piece.reshape(hidden.shape[:-1] + shape) for piece, shape in
                     zip(jnp.split(params, split_points, axis=-1), layout)))
  gates = {"interpolation": (raw.interpolation_gate, gate_key, weights.p_gate),
           "erase": (raw.erase, erase_key, weights.p_erase)}
  activated = {name: _gate(x, key, p, sigmoid, name in noisy_gates, deterministic)
               for name, (x, key, p) in gates.items()}
  head = HeadParams(
      content_key=jnp.tanh(raw.content_key),
      key_strength=jax.nn.softplus(raw.key_strength),
      interpolation_gate=activated["interpolation"],
      shift_weighting=jax.nn.softmax(raw.shift_weighting, axis=-1),
      sharpening=1.0 + jax.nn.softplus(raw.sharpening),
      erase=activated["erase"],
      add=jnp.tanh(raw.add),
  )
  if not statistics:
    return head, {}
  return head, {name: _unit_statistics(x, key, p, sigmoid, name in noisy_gates, deterministic)
                for name, (x, key, p) in gates.items()}


def _address(memory, prev_weighting, head: HeadParams):
  """Every head's new weighting ``(..., K, N)``: Eqs. 5-9 on ``M_{t-1}``."""
  return addressing.address(memory, prev_weighting, head.content_key, head.key_strength,
                            head.interpolation_gate, head.shift_weighting, head.sharpening)


def _update_memory(memory, weighting, head: HeadParams, num_read_heads: int):
  """The read heads read ``M_{t-1}`` (Eq. 2), then the write heads write (Eqs. 3-4)."""
  read_weighting = weighting[..., :num_read_heads, :]
  write_weighting = weighting[..., num_read_heads:, :]
  reads = addressing.read(memory, read_weighting)
  new_memory = addressing.write(memory, write_weighting, head.erase, head.add)
  return reads, read_weighting, write_weighting, new_memory


def ntm_step(
    state: NTMState,
    inputs: jax.typing.ArrayLike,
    weights: NTMWeights,
    key: jax.Array | None = None,
    *,
    controller: str | ControllerSpec = "lstm",
    shift_range: int = 1,
    sigmoid: activations.UnitNoise = activations.SIGMOID_UNIT,
    tanh: activations.UnitNoise = activations.TANH_UNIT,
    noisy_gates: Sequence[str] | None = None,
    clip_value: float | None = CLIP_VALUE,
    deterministic: bool = False,
    statistics: bool = False,
):
  r"""One step of a Neural Turing Machine whose controller and gates are noisy units.

  .. math::
    \mathbf{h}_t = \mathrm{controller}([\mathbf{x}_t, \mathbf{r}_{t-1}]), \quad
    (\mathbf{k}, \beta, g, \mathbf{s}, \gamma, \mathbf{e}, \mathbf{a})
    = \mathrm{heads}(\mathbf{h}_t W + b),

    \mathbf{w}_t = \mathrm{address}(\mathbf{M}_{t-1}, \mathbf{w}_{t-1}, \mathbf{k},
    \beta, g, \mathbf{s}, \gamma) \ \text{(Graves et al., 2014, Eqs. 5-9)},

    \mathbf{r}_t = \mathrm{read}(\mathbf{M}_{t-1}, \mathbf{w}^{read}_t)
    \ \text{(Eq. 2)}, \quad
    \mathbf{M}_t = \mathrm{write}(\mathbf{M}_{t-1}, \mathbf{w}^{write}_t,
    \mathbf{e}, \mathbf{a}) \ \text{(Eqs. 3-4)}

  with :math:`\mathbf{k} = \tanh(\cdot)`, :math:`\beta = \mathrm{softplus}(\cdot)`,
  :math:`g, \mathbf{e} = \phi_s(\cdot)` (noisy hard-sigmoid, Gulcehre et al.,
  2016, Eq. 12), :math:`\mathbf{s} = \mathrm{softmax}(\cdot)`,
  :math:`\gamma = 1 + \mathrm{softplus}(\cdot)`, :math:`\mathbf{a} = \tanh(\cdot)`
  (the fields of :class:`HeadParams`). The controller is a noisy LSTM
  (:func:`noisy_jax.rnn.lstm_step`) or one noisy hard-tanh layer
  :math:`\phi_t([\mathbf{x}_t, \mathbf{r}_{t-1}] W + b)`.

  Args:
    state: :class:`NTMState` from :func:`initial_state` (or a previous step).
    inputs: ``(..., D)``, leading axes as the state's.
    weights: :class:`NTMWeights` (shapes from :func:`weight_shapes`).
    key: PRNG key for this step's noise; required unless ``deterministic``.
    controller: ``"lstm"`` or ``"feedforward"`` (a key of :data:`CONTROLLERS`,
      or a :class:`ControllerSpec`).
    shift_range: ``S``: each head shifts by ``-S..S`` (Eq. 8); default 1.
    sigmoid: :class:`~noisy_jax.UnitNoise` of the controller's gates and of the
      interpolation and erase gates.
    tanh: :class:`~noisy_jax.UnitNoise` of the controller's tanh units.
    noisy_gates: names from :func:`gate_names` whose activation is noisy; the
      others use the plain ``kind``. ``None`` (default): all of them.
    clip_value: clip of the controller's input, state and output and of the
      heads' parameters (Collier and Beel, 2018); ``None`` disables it.
    deterministic: replace the noise by its expectation (Gulcehre et al., Eq. 13).
    statistics: also return the saturation diagnostics of the step: a dict from
      each gate of :func:`gate_names` (the controller's, then ``"interpolation"``
      and ``"erase"``) to its :class:`~noisy_jax.activations.UnitStatistics`.

  Returns:
    ``(new_state, output)``, with ``output`` the controller's output and the new
    read vectors concatenated, ``(..., H + R M)``; a task's output layer (e.g. a
    ``Dense`` and a sigmoid) goes on top. With ``statistics``,
    ``(new_state, output, statistics)``.

  Raises:
    ValueError: unknown ``controller`` or gate names, a state that does not fit
      the weights, a missing ``key`` while not deterministic.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from noisy_jax import ntm
    >>> shapes = ntm.weight_shapes("feedforward", 3, 8, 16, 4)
    >>> keys = iter(jax.random.split(jax.random.key(0), 16))
    >>> make = lambda s: 0.1 * jax.random.normal(next(keys), s)
    >>> weights = ntm.NTMWeights(
    ...     ntm.FeedForwardWeights(*map(make, shapes["controller"].values())),
    ...     *(make(s) for n, s in shapes.items() if n != "controller"))
    >>> state = ntm.initial_state((2,), controller="feedforward", features=8,
    ...                           memory_size=16, memory_width=4)
    >>> step = jax.jit(ntm.ntm_step, static_argnames="controller")
    >>> state, y = step(state, jnp.ones((2, 3)), weights, jax.random.key(1),
    ...                 controller="feedforward")
    >>> y.shape, state.read_weighting.sum(-1).round(5).tolist()
    ((2, 12), [[1.0], [1.0]])

  Note:
    The noisy interpolation and erase gates are clipped to [0, 1] after the
    noise: Eq. 12's output leaves [0, 1] when a gate saturates, and Eqs. 3 and
    7 need a fraction. The clip is straight-through (its gradient is the noisy
    unit's), since a plain clip would zero the gradient that the noise gives a
    saturated gate (Paper A, Eq. 10) just where it matters. Collier and Beel clip
    the controller's output; this also clips its input and (for the LSTM) its
    state, which keeps the noisy LSTM's state finite when Eq. 12's linear term
    (``alpha != 1``) grows with huge inputs or a large ``c``. The read heads read
    :math:`\mathbf{M}_{t-1}` before the write heads write, the order of Collier
    and Beel's implementation (the paper does not fix one).

  References:
    Graves et al., `Neural Turing Machines <https://arxiv.org/abs/1410.5401>`_, 2014.

    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, 2016.

    Collier and Beel, `Implementing Neural Turing Machines
    <https://arxiv.org/abs/1807.08518>`_, ICANN 2018.
  """
  spec = controller_spec(controller)
  valid_gates = spec.gates + HEAD_GATES
  noisy_gates = checks.gate_names(valid_gates if noisy_gates is None else noisy_gates,
                                  valid_gates)
  checks.unit_noise(sigmoid, "sigmoid")
  checks.unit_noise(tanh, "tanh")
  checks.sizes(shift_range=shift_range)
  state = _check_state(state, weights, spec)
  _check_head_bias(weights, shift_range)
  inputs = checks.step_input(inputs, None)
  deterministic = bool(deterministic) or not noisy_gates
  key = checks.noise_key(key, deterministic, "the noisy NTM")
  controller_key, gate_key, erase_key = (
      (None,) * 3 if deterministic else jax.random.split(key, 3))

  reads, prev_weighting = _previous_reads_and_weighting(state, weights)

  def noisy_part(controller_state, inputs, reads, weights, keys, scales):
    """The controller and the heads' parameters: every noisy unit of the step."""
    units = (sigmoid._replace(c=scales[0], alpha=scales[1]),
             tanh._replace(c=scales[2], alpha=scales[3]))
    controller_state, hidden, controller_statistics = _controller_step(
        spec, controller_state, inputs, reads, weights.controller, keys[0],
        sigmoid=units[0], tanh=units[1], noisy_gates=noisy_gates,
        deterministic=deterministic, clip_value=clip_value, statistics=statistics)
    head, head_statistics = _head_params(
        hidden, weights, keys[1], keys[2], shift_range=shift_range, sigmoid=units[0],
        noisy_gates=noisy_gates, deterministic=deterministic, clip_value=clip_value,
        statistics=statistics)
    return controller_state, hidden, head, {**controller_statistics, **head_statistics}

  if not deterministic:
    # One checkpoint per step, around all its noise: a gradient draws every unit's
    # noise once more instead of storing it, and keeps the matmuls' outputs.
    noisy_part = jax.checkpoint(
        noisy_part, policy=jax.checkpoint_policies.dots_with_no_batch_dims_saveable)
  controller_state, hidden, head, unit_statistics = noisy_part(
      state.controller, inputs, reads, weights, (controller_key, gate_key, erase_key),
      (sigmoid.c, sigmoid.alpha, tanh.c, tanh.alpha))
  weighting = _address(state.memory, prev_weighting, head)
  new_reads, read_weighting, write_weighting, memory = _update_memory(
      state.memory, weighting, head, jnp.shape(weights.initial_reads)[0])
  output = jnp.concatenate([hidden, _flatten_heads(new_reads, inputs.shape[:-1])], axis=-1)
  new_state = NTMState(controller_state, memory, new_reads, read_weighting, write_weighting,
                       state.step + 1)
  if statistics:
    return new_state, output, unit_statistics
  return new_state, output
