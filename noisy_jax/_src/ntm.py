"""Neural Turing Machine step with a noisy controller (Graves et al., 2014; Gulcehre et al., 2016).

One pure step, :func:`ntm_step`, shared by the Linen (:class:`NTMCell`) and NNX
(:class:`noisy_jax._src.ntm_nnx.NTMCell`) cells. The controller (a noisy LSTM, or
one noisy feed-forward layer) reads the input and the previous read vectors; a
linear map of its output parameterises every head; the heads address memory with
:mod:`noisy_jax._src.addressing`; the read heads read the previous memory, then
the write heads erase and add.

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

* ``controller``: the noisy LSTM's :class:`noisy_jax._src.recurrent.LSTMWeights`,
  or :class:`FeedForwardWeights`.
* ``head_kernel (H, P)``, ``head_bias (P,)``: the controller output's map to the
  heads' parameters, laid out field by field over all K heads:
  ``[keys K*M | betas K | gates K | shifts K*(2S+1) | gammas K | erase W*M | add W*M]``.
* ``p_gate (K,)``, ``p_erase (W, M)``: the learned ``p`` of the noisy gates.
* ``initial_reads (R, M)``, ``initial_read_logits (R, N)``,
  ``initial_write_logits (W, N)``: the learned initial state.
"""

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import initializers
from flax.linen.dtypes import promote_dtype
from flax.typing import Dtype, Initializer

from noisy_jax._src import activations
from noisy_jax._src import addressing
from noisy_jax._src import linen_recurrent
from noisy_jax._src import recurrent

CONTROLLERS = ("lstm", "feedforward")
HEAD_GATES = ("interpolation", "erase")
FEEDFORWARD_GATES = ("hidden",)
# Constant initial memory: Collier and Beel (2018) found it the most reliable.
MEMORY_INIT = 1e-6
# Clip of the controller's input, state and output and of the heads' parameters.
CLIP_VALUE = 20.0


def gate_names(controller: str) -> tuple[str, ...]:
  """Every gate of an NTM with ``controller`` that ``noisy_gates`` may name.

  Example:
    >>> from noisy_jax import ntm
    >>> ntm.gate_names("feedforward")
    ('hidden', 'interpolation', 'erase')
  """
  activations._check_choice(controller, "controller", CONTROLLERS)
  controller_gates = recurrent.LSTM_GATES if controller == "lstm" else FEEDFORWARD_GATES
  return controller_gates + HEAD_GATES


class FeedForwardWeights(NamedTuple):
  """A noisy feed-forward controller: ``hidden = phi_t(x kernel + bias)``, one ``p`` per unit."""

  kernel: jax.Array
  bias: jax.Array
  p: jax.Array


class NTMWeights(NamedTuple):
  """Learned parameters of an NTM (layout in the module docstring)."""

  controller: Any  # recurrent.LSTMWeights or FeedForwardWeights
  head_kernel: jax.Array
  head_bias: jax.Array
  p_gate: jax.Array
  p_erase: jax.Array
  initial_reads: jax.Array
  initial_read_logits: jax.Array
  initial_write_logits: jax.Array


class NTMState(NamedTuple):
  """The NTM's recurrent state (the carry), every field with leading batch axes ``...``.

  Attributes:
    controller: the LSTM's ``(c, h)``, each ``(..., H)``; ``()`` for a
      feed-forward controller.
    memory: ``(..., N, M)``.
    reads: the last read vectors, ``(..., R, M)``.
    read_weights: the read heads' last weightings, ``(..., R, N)``.
    write_weights: the write heads' last weightings, ``(..., W, N)``.
    step: ``(...)`` int32, the number of steps taken. At step 0 the learned
      initial reads and weightings replace ``reads``, ``read_weights`` and
      ``write_weights``.
  """

  controller: Any
  memory: jax.Array
  reads: jax.Array
  read_weights: jax.Array
  write_weights: jax.Array
  step: jax.Array


def _head_param_sizes(memory_width: int, num_read_heads: int, num_write_heads: int,
                      shift_range: int) -> dict[str, int]:
  heads = num_read_heads + num_write_heads
  return {
      "keys": heads * memory_width, "betas": heads, "gates": heads,
      "shifts": heads * (2 * shift_range + 1), "gammas": heads,
      "erase": num_write_heads * memory_width, "add": num_write_heads * memory_width,
  }


def _check_sizes(**sizes: int) -> None:
  for name, value in sizes.items():
    minimum = 0 if name in ("shift_range",) else 1
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
      raise ValueError(
          f"{name} must be an integer >= {minimum}, got {name}={value!r}. "
          f"Fix: pass e.g. {name}={max(minimum, 1)}."
      )


def weight_shapes(
    controller: str,
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
    controller: ``"lstm"`` or ``"feedforward"``.
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
    >>> from noisy_jax._src import ntm
    >>> ntm.weight_shapes("lstm", 9, 100, 128, 20)["head_kernel"]
    (100, 92)
  """
  activations._check_choice(controller, "controller", CONTROLLERS)
  _check_sizes(in_features=in_features, features=features, memory_size=memory_size,
               memory_width=memory_width, num_read_heads=num_read_heads,
               num_write_heads=num_write_heads, shift_range=shift_range)
  controller_in = in_features + num_read_heads * memory_width
  if controller == "lstm":
    controller_shapes = recurrent.weight_shapes("lstm", controller_in, features)
  else:
    controller_shapes = {"kernel": (controller_in, features), "bias": (features,),
                         "p": (features,)}
  num_params = sum(_head_param_sizes(memory_width, num_read_heads, num_write_heads,
                                     shift_range).values())
  return {
      "controller": controller_shapes,
      "head_kernel": (features, num_params),
      "head_bias": (num_params,),
      "p_gate": (num_read_heads + num_write_heads,),
      "p_erase": (num_write_heads, memory_width),
      "initial_reads": (num_read_heads, memory_width),
      "initial_read_logits": (num_read_heads, memory_size),
      "initial_write_logits": (num_write_heads, memory_size),
  }


def initial_state(
    batch_shape: tuple[int, ...],
    *,
    controller: str,
    features: int,
    memory_size: int,
    memory_width: int,
    num_read_heads: int = 1,
    num_write_heads: int = 1,
    memory_init: float = MEMORY_INIT,
    dtype: Dtype = jnp.float32,
) -> NTMState:
  """A fresh :class:`NTMState`: memory at ``memory_init``, controller at zero, step 0.

  The reads and weightings are placeholders (zeros and uniform); :func:`ntm_step`
  replaces them with the learned initial values at step 0.

  Args:
    batch_shape: leading axes, e.g. ``(batch,)``.
    controller: ``"lstm"`` or ``"feedforward"``.
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
    >>> state.memory.shape, state.read_weights.shape, state.controller[0].shape
    ((2, 16, 4), (2, 1, 16), (2, 8))
  """
  activations._check_choice(controller, "controller", CONTROLLERS)
  _check_sizes(features=features, memory_size=memory_size, memory_width=memory_width,
               num_read_heads=num_read_heads, num_write_heads=num_write_heads)
  batch_shape = tuple(batch_shape)
  zeros = lambda *shape: jnp.zeros(batch_shape + shape, dtype)
  uniform = lambda heads: jnp.full(batch_shape + (heads, memory_size), 1.0 / memory_size,
                                   dtype)
  return NTMState(
      controller=(zeros(features), zeros(features)) if controller == "lstm" else (),
      memory=jnp.full(batch_shape + (memory_size, memory_width), memory_init, dtype),
      reads=zeros(num_read_heads, memory_width),
      read_weights=uniform(num_read_heads),
      write_weights=uniform(num_write_heads),
      step=jnp.zeros(batch_shape, jnp.int32),
  )


def _clip(x, clip_value):
  return x if clip_value is None else jnp.clip(x, -clip_value, clip_value)


def _gate(x, key, p, gate: recurrent.GateNoise, noisy: bool, deterministic: bool):
  """A sigmoid-family gate: noisy (Eq. 12 or 14-15) or plain, then kept in [0, 1].

  The clip is straight-through: its forward value is in [0, 1], its gradient is
  that of the noisy unit, so a saturated gate keeps Eq. 10's gradient.
  """
  if not noisy:
    return activations.activation(x, kind=gate.kind)
  y = activations.noisy_activation(x, key, p, gate.c, gate.alpha, gate.mode, kind=gate.kind,
                                   deterministic=deterministic, nanil_scale=gate.nanil_scale)
  return y + jax.lax.stop_gradient(jnp.clip(y, 0.0, 1.0) - y)


def _feedforward_step(x, weights: FeedForwardWeights, key, tanh: recurrent.GateNoise,
                      noisy: bool, deterministic: bool):
  z = jnp.dot(x, weights.kernel) + weights.bias
  if not noisy:
    return activations.activation(z, kind=tanh.kind)
  return activations.noisy_activation(z, key, weights.p, tanh.c, tanh.alpha, tanh.mode,
                                      kind=tanh.kind, deterministic=deterministic,
                                      nanil_scale=tanh.nanil_scale)


def _check_state(state: NTMState, weights: NTMWeights, controller: str) -> NTMState:
  if not isinstance(state, NTMState):
    raise TypeError(
        f"state must be an NTMState, got {type(state).__name__}. Fix: build it with "
        "initial_state() or the cell's initialize_carry()."
    )
  num_read_heads, memory_size = jnp.shape(weights.initial_read_logits)
  num_write_heads, memory_width = jnp.shape(weights.p_erase)
  expected = {
      "memory": (memory_size, memory_width),
      "reads": (num_read_heads, memory_width),
      "read_weights": (num_read_heads, memory_size),
      "write_weights": (num_write_heads, memory_size),
  }
  for name, tail in expected.items():
    shape = jnp.shape(getattr(state, name))
    if shape[len(shape) - 2:] != tail:
      raise ValueError(
          f"state.{name} has shape {shape}; its last two axes must be {tail} for this "
          "NTM's parameters. Fix: build the state with initial_state() (or the cell's "
          "initialize_carry()) using the same sizes as the parameters."
      )
  if (controller == "lstm") != (state.controller != ()):
    raise ValueError(
        f"state.controller does not fit controller={controller!r} (an LSTM's state is "
        "(c, h); a feed-forward controller's is ()). Fix: build the state with the same "
        "controller."
    )
  return state


def ntm_step(
    state: NTMState,
    inputs: jax.typing.ArrayLike,
    weights: NTMWeights,
    key: jax.Array | None = None,
    *,
    controller: str = "lstm",
    shift_range: int = 1,
    sigmoid: recurrent.GateNoise = recurrent.SIGMOID_GATE,
    tanh: recurrent.GateNoise = recurrent.TANH_UNIT,
    noisy_gates: Sequence[str] | None = None,
    clip_value: float | None = CLIP_VALUE,
    deterministic: bool = False,
) -> tuple[NTMState, jax.Array]:
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
  :math:`\gamma = 1 + \mathrm{softplus}(\cdot)`, :math:`\mathbf{a} = \tanh(\cdot)`.
  The controller is a noisy LSTM (:func:`noisy_jax._src.recurrent.lstm_step`) or
  one noisy hard-tanh layer :math:`\phi_t([\mathbf{x}_t, \mathbf{r}_{t-1}] W + b)`.

  Args:
    state: :class:`NTMState` from :func:`initial_state` (or a previous step).
    inputs: ``(..., D)``, leading axes as the state's.
    weights: :class:`NTMWeights` (shapes from :func:`weight_shapes`).
    key: PRNG key for this step's noise; required unless ``deterministic``.
    controller: ``"lstm"`` or ``"feedforward"``.
    shift_range: ``S``: each head shifts by ``-S..S`` (Eq. 8); default 1.
    sigmoid: :class:`~noisy_jax._src.recurrent.GateNoise` of the controller's
      gates and of the interpolation and erase gates.
    tanh: :class:`~noisy_jax._src.recurrent.GateNoise` of the controller's tanh units.
    noisy_gates: names from :func:`gate_names` whose activation is noisy; the
      others use the plain ``kind``. ``None`` (default): all of them.
    clip_value: clip of the controller's input, state and output and of the
      heads' parameters (Collier and Beel, 2018); ``None`` disables it.
    deterministic: replace the noise by its expectation (Gulcehre et al., Eq. 13).

  Returns:
    ``(new_state, output)``, with ``output`` the controller's output and the new
    read vectors concatenated, ``(..., H + R M)``; a task's output layer (e.g. a
    ``Dense`` and a sigmoid) goes on top.

  Raises:
    ValueError: unknown ``controller`` or gate names, a state that does not fit
      the weights, a missing ``key`` while not deterministic.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from noisy_jax._src import ntm
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
    >>> y.shape, state.read_weights.sum(-1).round(5).tolist()
    ((2, 12), [[1.0], [1.0]])

  Note:
    The noisy interpolation and erase gates are clipped to [0, 1] after the
    noise: Eq. 12's output leaves [0, 1] when a gate saturates, and Eqs. 3 and
    7 need a fraction. The clip is straight-through (its gradient is the noisy
    unit's), since a plain clip would zero the gradient that the noise gives a
    saturated gate (Paper A, Eq. 10) just where it matters. Collier and Beel clip the controller's output; this also
    clips its input and (for the LSTM) its state, which keeps the noisy LSTM's
    state finite when Eq. 12's linear term (``alpha != 1``) grows with huge
    inputs or a large ``c``. The read heads read :math:`\mathbf{M}_{t-1}` before
    the write heads write, the order of Collier and Beel's implementation (the
    paper does not fix one).

  References:
    Graves et al., `Neural Turing Machines <https://arxiv.org/abs/1410.5401>`_, 2014.

    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, 2016.

    Collier and Beel, `Implementing Neural Turing Machines
    <https://arxiv.org/abs/1807.08518>`_, ICANN 2018.
  """
  activations._check_choice(controller, "controller", CONTROLLERS)
  valid_gates = gate_names(controller)
  noisy_gates = valid_gates if noisy_gates is None else recurrent.check_noisy_gates(
      noisy_gates, valid_gates)
  recurrent.check_gate_noise(sigmoid, "sigmoid")
  recurrent.check_gate_noise(tanh, "tanh")
  _check_sizes(shift_range=shift_range)
  state = _check_state(state, weights, controller)
  inputs = recurrent.check_step_input(inputs, None)
  deterministic = bool(deterministic)
  deterministic = deterministic or not noisy_gates
  key = recurrent._check_keyed(key, deterministic)
  controller_key, gate_key, erase_key = (
      (None,) * 3 if deterministic else jax.random.split(key, 3))

  num_read_heads, memory_size = jnp.shape(weights.initial_read_logits)
  num_write_heads, memory_width = jnp.shape(weights.p_erase)
  heads = num_read_heads + num_write_heads
  sizes = _head_param_sizes(memory_width, num_read_heads, num_write_heads, shift_range)
  if jnp.shape(weights.head_bias) != (sum(sizes.values()),):
    raise ValueError(
        f"weights.head_bias has shape {jnp.shape(weights.head_bias)} but shift_range="
        f"{shift_range} and these heads need ({sum(sizes.values())},). Fix: pass the "
        "shift_range the weights were built for."
    )

  # At step 0 the learned initial reads and weightings stand in for the state's.
  fresh = (state.step == 0)[..., None, None]
  reads = jnp.where(fresh, weights.initial_reads, state.reads)
  prev_weights = jnp.where(
      fresh,
      jax.nn.softmax(jnp.concatenate([weights.initial_read_logits,
                                      weights.initial_write_logits]), axis=-1),
      jnp.concatenate([state.read_weights, state.write_weights], axis=-2),
  )

  batch_shape = inputs.shape[:-1]
  controller_in = jnp.concatenate(
      [inputs, reads.reshape(batch_shape + (num_read_heads * memory_width,))], axis=-1)
  controller_in = _clip(controller_in, clip_value)
  if controller == "lstm":
    lstm = recurrent.LSTMWeights(*weights.controller)
    x_proj = recurrent.input_projection(controller_in, lstm.input_kernel, lstm.bias)
    (c, h), _ = recurrent.lstm_step(
        state.controller, x_proj, lstm, controller_key, sigmoid=sigmoid, tanh=tanh,
        noisy_gates=tuple(g for g in noisy_gates if g in recurrent.LSTM_GATES),
        deterministic=deterministic,
    )
    controller_state = (_clip(c, clip_value), _clip(h, clip_value))
    hidden = controller_state[1]
  else:
    hidden = _clip(_feedforward_step(
        controller_in, FeedForwardWeights(*weights.controller), controller_key, tanh,
        "hidden" in noisy_gates, deterministic), clip_value)
    controller_state = ()

  params = _clip(jnp.dot(hidden, weights.head_kernel) + weights.head_bias, clip_value)
  split_points = list(itertools.accumulate(sizes.values()))[:-1]
  pieces = dict(zip(sizes, jnp.split(params, split_points, axis=-1)))
  per_head = lambda x: x.reshape(batch_shape + (heads, -1))
  keys = jnp.tanh(per_head(pieces["keys"]))
  beta = jax.nn.softplus(pieces["betas"])
  gate = _gate(pieces["gates"], gate_key, weights.p_gate, sigmoid,
               "interpolation" in noisy_gates, deterministic)
  shift_weights = jax.nn.softmax(per_head(pieces["shifts"]), axis=-1)
  gamma = 1.0 + jax.nn.softplus(pieces["gammas"])
  erase = _gate(pieces["erase"].reshape(batch_shape + (num_write_heads, memory_width)),
                erase_key, weights.p_erase, sigmoid, "erase" in noisy_gates, deterministic)
  add = jnp.tanh(pieces["add"].reshape(batch_shape + (num_write_heads, memory_width)))

  memory = state.memory
  new_weights = addressing.address(memory, prev_weights, keys, beta, gate,
                                   shift_weights, gamma)
  read_weights = new_weights[..., :num_read_heads, :]
  write_weights = new_weights[..., num_read_heads:, :]
  new_reads = addressing.read(memory, read_weights)
  new_memory = addressing.write(memory, write_weights, erase, add)

  output = jnp.concatenate(
      [hidden, new_reads.reshape(batch_shape + (num_read_heads * memory_width,))], axis=-1)
  new_state = NTMState(controller_state, new_memory, new_reads, read_weights, write_weights,
                       state.step + 1)
  return new_state, output


def initializers_for(controller: str, kernel_init: Initializer,
                     recurrent_kernel_init: Initializer, bias_init: Initializer,
                     p_init: Initializer, initial_state_init: Initializer) -> dict[str, Any]:
  """Initializers of :func:`weight_shapes`' parameters, by name (nested for the controller)."""
  if controller == "lstm":
    controller_inits = {
        name: recurrent.initializer_for(name, kernel_init, recurrent_kernel_init, bias_init,
                                        p_init, 4)
        for name in recurrent.LSTMWeights._fields
    }
  else:
    controller_inits = {"kernel": kernel_init, "bias": bias_init, "p": p_init}
  return {
      "controller": controller_inits,
      "head_kernel": kernel_init,
      "head_bias": bias_init,
      "p_gate": p_init,
      "p_erase": p_init,
      "initial_reads": initial_state_init,
      "initial_read_logits": initial_state_init,
      "initial_write_logits": initial_state_init,
  }


def assemble_weights(controller: str, params: Mapping[str, Any]) -> NTMWeights:
  """Builds :class:`NTMWeights` from a (nested) dict named as :func:`weight_shapes`."""
  controller_type = recurrent.LSTMWeights if controller == "lstm" else FeedForwardWeights
  controller_weights = controller_type(
      *(params["controller"][name] for name in controller_type._fields))
  return NTMWeights(controller_weights,
                    *(params[name] for name in NTMWeights._fields[1:]))


class _ParamGroup(nn.Module):
  """Declares one parameter per entry of ``shapes``; returns them as a dict."""

  shapes: Mapping[str, tuple[int, ...]]
  inits: Mapping[str, Initializer]
  param_dtype: Dtype

  @nn.compact
  def __call__(self) -> dict[str, jax.Array]:
    return {name: self.param(name, self.inits[name], shape, self.param_dtype)
            for name, shape in self.shapes.items()}


class NTMCell(linen_recurrent._NoisyCellBase):
  r"""Neural Turing Machine cell with noisy controller gates (Linen).

  One step of :func:`ntm_step`: a noisy LSTM (or feed-forward) controller reads
  the input and the previous reads, and drives ``num_read_heads`` read and
  ``num_write_heads`` write heads over a ``memory_size x memory_width`` memory
  (Graves et al., 2014). The controller's gates and the heads' interpolation and
  erase gates are noisy hard-sigmoids, its tanh units noisy hard-tanhs
  (Gulcehre et al., 2016, Sec. 6.6), with the options of
  :class:`~noisy_jax.nn.NoisyLSTMCell`. Initialised as Collier and Beel (2018)
  recommend: constant memory 1e-6, learned initial reads and weightings,
  clipping at ``clip_value``.

  A drop-in cell for ``flax.linen.RNN`` whose noise comes from the ``"noise"``
  RNG stream, split per step: use :func:`noisy_jax.nn.noisy_rnn` (or
  ``split_rngs=noisy_jax.nn.RNN_SPLIT_RNGS``). The carry is an :class:`NTMState`;
  the output is the controller's output and the reads, ``(..., H + R M)``: put a
  ``Dense`` on the RNN's outputs for a task's predictions (one matmul over all
  steps, outside the scan).

  Parameters (layout in :mod:`noisy_jax._src.ntm`): ``controller`` (a dict, the
  noisy LSTM's ``input_kernel``, ``recurrent_kernel``, ``bias``, ``p_gates``,
  ``p_candidate``, ``p_cell``; or ``kernel``, ``bias``, ``p``), ``head_kernel``,
  ``head_bias``, ``p_gate``, ``p_erase``, ``initial_reads``,
  ``initial_read_logits``, ``initial_write_logits``.

  Attributes:
    features: controller size ``H`` (Graves et al.'s LSTM controller: 100).
    memory_size: number of memory locations ``N`` (default 128).
    memory_width: width of a location ``M`` (default 20).
    num_read_heads: ``R`` (default 1).
    num_write_heads: ``W`` (default 1).
    shift_range: ``S``; each head shifts by ``-S..S`` (default 1).
    controller: ``"lstm"`` (default) or ``"feedforward"`` (one noisy hard-tanh layer).
    noisy_gates: names from :func:`gate_names` that are noisy; ``None``: all.
    clip_value: clip of the controller's input, state and output and of the
      heads' parameters (default 20); ``None`` disables it.
    memory_init: the constant the memory starts at (default 1e-6).
    initial_state_init: initializer of the learned initial reads and of the
      logits of the initial weightings.
    sigmoid_kind, sigmoid_mode, sigmoid_c, sigmoid_alpha, sigmoid_nanil_scale,
    tanh_kind, tanh_mode, tanh_c, tanh_alpha, tanh_nanil_scale, deterministic,
    kernel_init, recurrent_kernel_init, bias_init, p_init, dtype, param_dtype, rng_collection: as
    :class:`~noisy_jax.nn.NoisyLSTMCell`; ``kernel_init`` also initialises
    ``head_kernel``, and ``sigmoid_*`` also configure the heads' gates.
    ``sigmoid_c`` and ``tanh_c`` may be traced (annealed without recompiling).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import noisy_jax.nn
    >>> cell = noisy_jax.nn.NTMCell(features=16, memory_size=8, memory_width=4)
    >>> rnn = noisy_jax.nn.noisy_rnn(cell)
    >>> x = jnp.ones((2, 5, 3))
    >>> variables = jax.jit(rnn.init)({"params": jax.random.key(0), "noise": jax.random.key(1)}, x)
    >>> jax.jit(rnn.apply)(variables, x, rngs={"noise": jax.random.key(2)}).shape
    (2, 5, 20)

  References:
    Graves et al., `Neural Turing Machines <https://arxiv.org/abs/1410.5401>`_, 2014.

    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, 2016.

    Collier and Beel, `Implementing Neural Turing Machines
    <https://arxiv.org/abs/1807.08518>`_, ICANN 2018.
  """

  memory_size: int = 128
  memory_width: int = 20
  num_read_heads: int = 1
  num_write_heads: int = 1
  shift_range: int = 1
  controller: str = "lstm"
  noisy_gates: Sequence[str] | None = None
  clip_value: float | None = CLIP_VALUE
  memory_init: float = MEMORY_INIT
  initial_state_init: Initializer = initializers.normal(0.1)

  @nn.compact
  def __call__(self, carry: NTMState, inputs: jax.typing.ArrayLike, *,
               deterministic: bool | None = None, rng: jax.Array | None = None):
    """One step.

    Args:
      carry: :class:`NTMState` from :meth:`initialize_carry`.
      inputs: ``(..., D)``.
      deterministic: overrides the field of the same name if given.
      rng: explicit noise key for this step (instead of the ``"noise"`` stream).

    Returns:
      ``(new_carry, output)`` with output ``(..., features + num_read_heads * memory_width)``.
    """
    inputs = recurrent.check_step_input(inputs, None)
    deterministic = self.deterministic if deterministic is None else deterministic
    shapes = weight_shapes(self.controller, inputs.shape[-1], self.features, self.memory_size,
                           self.memory_width, self.num_read_heads, self.num_write_heads,
                           self.shift_range)
    sigmoid, tanh = linen_recurrent._gates(self)
    no_noisy_gates = self.noisy_gates is not None and not self.noisy_gates  # None: all
    key = linen_recurrent._noise_key(self, deterministic or no_noisy_gates, rng)
    inits = initializers_for(self.controller, self.kernel_init, self.recurrent_kernel_init,
                             self.bias_init, self.p_init, self.initial_state_init)
    params = {
        "controller": _ParamGroup(shapes["controller"], inits["controller"],
                                  self.param_dtype, name="controller")(),
        **{name: self.param(name, inits[name], shape, self.param_dtype)
           for name, shape in shapes.items() if name != "controller"},
    }
    leaves, treedef = jax.tree.flatten(params)
    inputs, *leaves = promote_dtype(inputs, *leaves, dtype=self.dtype)
    params = jax.tree.unflatten(treedef, leaves)
    return ntm_step(
        carry, inputs, assemble_weights(self.controller, params), key,
        controller=self.controller, shift_range=self.shift_range, sigmoid=sigmoid,
        tanh=tanh, noisy_gates=self.noisy_gates, clip_value=self.clip_value,
        deterministic=deterministic,
    )

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> NTMState:
    """A fresh :class:`NTMState` for inputs of ``input_shape`` (see :func:`initial_state`).

    ``rng`` is unused: the initial memory is constant and the learned initial
    reads and weightings are parameters, applied by the first step.
    """
    del rng
    return initial_state(
        tuple(input_shape[:-1]), controller=self.controller, features=self.features,
        memory_size=self.memory_size, memory_width=self.memory_width,
        num_read_heads=self.num_read_heads, num_write_heads=self.num_write_heads,
        memory_init=self.memory_init, dtype=self.param_dtype,
    )
