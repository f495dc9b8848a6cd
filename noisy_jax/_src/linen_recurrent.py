"""Flax Linen noisy recurrent cells and whole-sequence layers.

Thin wrappers: the modules declare parameters, fetch keys from the ``"noise"``
RNG stream and call the pure functions of :mod:`noisy_jax._src.recurrent`.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import initializers
from flax.linen.dtypes import promote_dtype
from flax.typing import Dtype, Initializer

from noisy_jax._src import activations
from noisy_jax._src import recurrent

# nn.RNN keeps only the RNG streams named in its split_rngs; "noise" must be split
# so that every step draws fresh noise.
RNN_SPLIT_RNGS: Mapping[str, bool] = {"params": False, "noise": True}

_MISSING_NOISE_STREAM = (
    "{name} needs the {collection!r} RNG stream when deterministic=False, but none is "
    "visible here. Fix: pass rngs={{{collection!r}: key}} to apply/init; under "
    "flax.linen.RNN also split that stream at every step: "
    "noisy_jax.nn.noisy_rnn(cell) or nn.RNN(cell, split_rngs=noisy_jax.nn.RNN_SPLIT_RNGS) "
    "(plain nn.RNN drops the stream). Or set deterministic=True for evaluation."
)


def noisy_rnn(cell: nn.RNNCellBase, **kwargs) -> nn.RNN:
  """``flax.linen.RNN(cell, **kwargs)`` with the ``"noise"`` stream split per step.

  ``flax.linen.RNN`` passes only the RNG streams named in its ``split_rngs`` to the
  scanned cell; this adds :data:`RNN_SPLIT_RNGS` (and the cell's own
  ``rng_collection``) so that each time step draws fresh noise. A plain
  ``nn.RNN(cell)`` drops the stream, and the cell then raises a ``ValueError`` that
  names this fix instead of running with the same noise at every step.

  With the same ``rngs``, ``noisy_rnn(NoisyLSTMCell(...), name=N)`` and
  ``NoisyLSTM(..., name=N)`` in the same parent draw the same key at every step
  (see :class:`NoisyLSTM`), provided the cell is the ``nn.RNN``'s own child
  ``"cell"``: create it outside any ``@nn.compact`` method (at the top level or in
  ``setup``) or with ``parent=None``. A cell created inside a parent's
  ``@nn.compact`` method belongs to that parent (``"NoisyLSTMCell_0"``, where its
  parameters are too) and draws its noise there.

  Note:
    The only way to get the same noise at every step is to ask for it:
    ``nn.RNN(cell, split_rngs={"params": False, "noise": False})`` broadcasts the
    stream into the scan, and a cell cannot tell a broadcast key from a split one.

  Args:
    cell: a noisy cell, e.g. :class:`NoisyLSTMCell`.
    **kwargs: any other ``flax.linen.RNN`` attribute (``time_major``,
      ``return_carry``, ``reverse``, ``unroll``, ...). A ``split_rngs`` given here
      is merged, with the noise stream forced to be split.

  Returns:
    A configured ``flax.linen.RNN``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import noisy_jax.nn
    >>> rnn = noisy_jax.nn.noisy_rnn(noisy_jax.nn.NoisyLSTMCell(4))
    >>> x = jnp.ones((2, 5, 3))
    >>> variables = rnn.init({"params": jax.random.key(0), "noise": jax.random.key(1)}, x)
    >>> rnn.apply(variables, x, rngs={"noise": jax.random.key(2)}).shape
    (2, 5, 4)
  """
  collection = getattr(cell, "rng_collection", "noise")
  split_rngs = {**RNN_SPLIT_RNGS, **dict(kwargs.pop("split_rngs", {})), collection: True}
  return nn.RNN(cell, split_rngs=split_rngs, **kwargs)


def _gates(module) -> tuple[recurrent.GateNoise, recurrent.GateNoise]:
  sigmoid = recurrent.check_gate_noise(
      recurrent.GateNoise(module.sigmoid_kind, module.sigmoid_mode, module.sigmoid_c,
                          module.sigmoid_alpha, module.sigmoid_nanil_scale), "sigmoid")
  tanh = recurrent.check_gate_noise(
      recurrent.GateNoise(module.tanh_kind, module.tanh_mode, module.tanh_c,
                          module.tanh_alpha, module.tanh_nanil_scale), "tanh")
  return sigmoid, tanh


def _weights(module, cell: str, in_features: int, dtype: Dtype | None, inputs):
  """Declares (or fetches) the parameters of ``cell``; returns (inputs, weights) promoted."""
  shapes = recurrent.weight_shapes(cell, in_features, module.features)
  num_blocks = 4 if cell == "lstm" else 3
  params = []
  for name, shape in shapes.items():
    init = recurrent.initializer_for(
        name, module.kernel_init, module.recurrent_kernel_init, module.bias_init,
        module.p_init, num_blocks)
    params.append(module.param(name, init, shape, module.param_dtype))
  inputs, *params = promote_dtype(inputs, *params, dtype=dtype)
  weights_type = recurrent.LSTMWeights if cell == "lstm" else recurrent.GRUWeights
  return inputs, weights_type(*params)


def _in_features(module) -> int | None:
  """The input size the existing parameters expect; None while initialising."""
  if module.has_variable("params", "input_kernel"):
    return module.get_variable("params", "input_kernel").shape[0]
  return None


class _StepKey(nn.Module):
  """One step's draw from the noise stream: what a cell under :func:`noisy_rnn` draws."""

  rng_collection: str

  @nn.compact
  def __call__(self, carry, _):
    return carry, self.make_rng(self.rng_collection)


def _noise_key(module, deterministic: bool, rng: jax.Array | None,
               num_steps: int | None = None) -> jax.Array | None:
  """The noise key of a cell, or with ``num_steps`` the ``(T,)`` step keys of a layer.

  ``rng``, if given, is returned as it is. A layer's step keys come from flax's own
  machinery, not a copy of it: a child named ``"cell"`` draws once per step inside
  ``nn.scan`` with ``nn.RNN``'s configuration, as ``noisy_rnn(cell)``'s cell (also
  named ``"cell"``) does, so both see the same keys. The scan body is one key
  derivation per step; it runs before the recurrence.
  """
  if deterministic:
    return None
  if rng is not None:
    return rng
  if not module.has_rng(module.rng_collection):
    raise ValueError(_MISSING_NOISE_STREAM.format(
        name=type(module).__name__, collection=module.rng_collection))
  if num_steps is None:
    return module.make_rng(module.rng_collection)
  draw = nn.scan(_StepKey, variable_broadcast="params",
                 split_rngs={**RNN_SPLIT_RNGS, module.rng_collection: True},
                 length=num_steps)
  _, keys = draw(module.rng_collection, name="cell")(None, None)
  return keys


class _NoiseFields(nn.Module):
  """Fields shared by the noisy Linen cells and layers (documented on NoisyLSTMCell)."""

  features: int
  sigmoid_kind: str = recurrent.SIGMOID_GATE.kind
  sigmoid_mode: str = recurrent.SIGMOID_GATE.mode
  sigmoid_c: Any = None
  sigmoid_alpha: Any = None
  sigmoid_nanil_scale: str = recurrent.SIGMOID_GATE.nanil_scale
  tanh_kind: str = recurrent.TANH_UNIT.kind
  tanh_mode: str = recurrent.TANH_UNIT.mode
  tanh_c: Any = None
  tanh_alpha: Any = None
  tanh_nanil_scale: str = recurrent.TANH_UNIT.nanil_scale
  deterministic: bool = False
  kernel_init: Initializer = nn.linear.default_kernel_init
  recurrent_kernel_init: Initializer = initializers.orthogonal()
  bias_init: Initializer = initializers.zeros_init()
  p_init: Initializer = activations.p_init
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  carry_init: Initializer = initializers.zeros_init()
  rng_collection: str = "noise"


class _NoisyCellBase(_NoiseFields, nn.RNNCellBase):
  """A noisy cell: one feature axis, as the Flax cells."""

  @property
  def num_feature_axes(self) -> int:
    return 1


class NoisyLSTMCell(_NoisyCellBase):
  r"""Noisy LSTM cell: every gate a noisy hard-sigmoid, every tanh a noisy hard-tanh.

  .. math::
    i, f, o = \phi_s(\cdot), \quad g = \phi_t(\cdot), \quad
    c_t = f \odot c_{t-1} + i \odot g, \quad h_t = o \odot \phi_t(c_t)

  with the noisy units of Gulcehre et al. (2016), Eq. 12, and one learned ``p``
  per unit per gate (see :func:`noisy_jax._src.recurrent.lstm_step`). A drop-in for
  ``flax.linen.OptimizedLSTMCell`` under ``flax.linen.RNN``; the noise comes from
  the ``"noise"`` RNG stream, which ``nn.RNN`` must split per step: use
  :func:`noisy_rnn` (or ``split_rngs=RNN_SPLIT_RNGS``). A cell that cannot see the
  stream raises, so the same noise is never reused silently at every step.

  Parameters: ``input_kernel (D, 4H)``, ``recurrent_kernel (H, 4H)``, ``bias (4H,)``
  (gate blocks ``[input, forget, output, candidate]``), ``p_gates (3H,)``,
  ``p_candidate (H,)``, ``p_cell (H,)`` -- the same as :class:`NoisyLSTM`'s.

  Attributes:
    features: hidden size ``H``.
    noisy_gates: which of ``("input", "forget", "output", "candidate", "cell")``
      are noisy; the others use the plain ``sigmoid_kind``/``tanh_kind``.
    sigmoid_kind: activation of the gates, ``"hard_sigmoid"`` (paper) or ``"sigmoid"``.
    sigmoid_mode: noise variant of the gates (``"nan"``, ``"nah"``, ``"nani"``,
      ``"nanil"``, ``"nanis"``); default ``"nah"`` (reference ``NSigmoidP``).
    sigmoid_c: the paper's ``c`` for the gates (``None``: reference default 0.15 for
      NAN/NAH). May be a traced jax array, so an annealed value does not retrace
      (a traced value is not checked: it must be >= 0; see the README's Linen
      annealing example).
    sigmoid_alpha: the paper's ``alpha`` for the gates (``None``: 1.1).
    sigmoid_nanil_scale: how ``sigmoid_mode="nanil"`` learns its noise scale:
      ``"reference"`` (default, the reference code's form, which injects noise)
      or ``"paper"`` (Eq. 9 read literally, inert at the paper's ``c``); see
      :func:`noisy_jax.noisy_activation`.
    tanh_kind: activation of the tanh units, ``"hard_tanh"`` (paper) or ``"tanh"``.
    tanh_mode: noise variant of the tanh units; default ``"nan"`` (reference ``NTanhP``).
    tanh_c: the paper's ``c`` for the tanh units (``None``: 0.5 for NAN/NAH). May be
      traced (and is then not checked).
    tanh_alpha: the paper's ``alpha`` for the tanh units (``None``: 1.15).
    tanh_nanil_scale: as ``sigmoid_nanil_scale``, for the tanh units.
    deterministic: use the noise's expectation (paper Eq. 13), for evaluation.
    kernel_init: initializer of each gate's block of the input kernel.
    recurrent_kernel_init: initializer of each gate's block of the recurrent kernel.
    bias_init: initializer of the biases.
    p_init: initializer of the learned ``p`` (U[-1, 1], paper Sec. 6).
    dtype: computation dtype (default: inferred from inputs and parameters).
    param_dtype: parameter dtype.
    rng_collection: the RNG stream the noise is drawn from.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import noisy_jax.nn
    >>> cell = noisy_jax.nn.NoisyLSTMCell(features=4)
    >>> x = jnp.ones((2, 3))
    >>> carry = cell.initialize_carry(jax.random.key(0), x.shape)
    >>> keys = {"params": jax.random.key(1), "noise": jax.random.key(2)}
    >>> variables = cell.init(keys, carry, x)
    >>> (c, h), y = cell.apply(variables, carry, x, rngs={"noise": jax.random.key(3)})
    >>> y.shape
    (2, 4)

  References:
    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, 2016.
  """

  noisy_gates: Sequence[str] = recurrent.LSTM_GATES

  @nn.compact
  def __call__(self, carry, inputs, *, deterministic: bool | None = None,
               rng: jax.Array | None = None):
    """One step.

    Args:
      carry: ``(c, h)`` from :meth:`initialize_carry`, each ``(..., H)``.
      inputs: ``(..., D)``.
      deterministic: overrides the field of the same name if given.
      rng: explicit noise key for this step (instead of the ``"noise"`` stream).

    Returns:
      ``((c, h), h)``.
    """
    inputs = recurrent.check_step_input(inputs, _in_features(self))
    deterministic = self.deterministic if deterministic is None else deterministic
    sigmoid, tanh = _gates(self)
    key = _noise_key(self, deterministic or not self.noisy_gates, rng)
    inputs, weights = _weights(self, "lstm", inputs.shape[-1], self.dtype, inputs)
    x_proj = recurrent.input_projection(inputs, weights.input_kernel, weights.bias)
    return recurrent.lstm_step(
        carry, x_proj, weights, key, sigmoid=sigmoid, tanh=tanh,
        noisy_gates=self.noisy_gates, deterministic=deterministic,
    )

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]):
    """Zero ``(c, h)`` of shape ``input_shape[:-1] + (features,)`` (``carry_init``)."""
    key_c, key_h = jax.random.split(rng)
    shape = tuple(input_shape[:-1]) + (self.features,)
    return (self.carry_init(key_c, shape, self.param_dtype),
            self.carry_init(key_h, shape, self.param_dtype))


class NoisyGRUCell(_NoisyCellBase):
  r"""Noisy GRU cell: noisy hard-sigmoid reset/update gates, noisy hard-tanh candidate.

  .. math::
    r, u = \phi_s(\cdot), \quad n = \phi_t(x W_n + b_n + r \odot (h U_n + b_{hn})),
    \quad h_t = (1 - u) \odot n + u \odot h_{t-1}

  The equations of ``flax.linen.GRUCell`` with the noisy units of Gulcehre et al.
  (2016), Eq. 12 (see :func:`noisy_jax._src.recurrent.gru_step`). Use under
  ``flax.linen.RNN`` via :func:`noisy_rnn`, as :class:`NoisyLSTMCell`.

  Parameters: ``input_kernel (D, 3H)``, ``recurrent_kernel (H, 3H)``, ``bias (3H,)``
  (blocks ``[reset, update, candidate]``), ``recurrent_bias (H,)``,
  ``p_gates (2H,)``, ``p_candidate (H,)`` -- the same as :class:`NoisyGRU`'s.

  Attributes:
    features: hidden size ``H``.
    noisy_gates: which of ``("reset", "update", "candidate")`` are noisy.
    sigmoid_kind, sigmoid_mode, sigmoid_c, sigmoid_alpha, sigmoid_nanil_scale,
    tanh_kind, tanh_mode, tanh_c, tanh_alpha, tanh_nanil_scale, deterministic,
    kernel_init, recurrent_kernel_init, bias_init, p_init, dtype, param_dtype,
    rng_collection: as :class:`NoisyLSTMCell`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import noisy_jax.nn
    >>> cell = noisy_jax.nn.NoisyGRUCell(features=4, deterministic=True)
    >>> x = jnp.ones((2, 3))
    >>> carry = cell.initialize_carry(jax.random.key(0), x.shape)
    >>> variables = cell.init(jax.random.key(1), carry, x)
    >>> h, y = cell.apply(variables, carry, x)
    >>> y.shape
    (2, 4)

  References:
    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, 2016.
  """

  noisy_gates: Sequence[str] = recurrent.GRU_GATES

  @nn.compact
  def __call__(self, carry, inputs, *, deterministic: bool | None = None,
               rng: jax.Array | None = None):
    """One step.

    Args:
      carry: ``h`` from :meth:`initialize_carry`, ``(..., H)``.
      inputs: ``(..., D)``.
      deterministic: overrides the field of the same name if given.
      rng: explicit noise key for this step (instead of the ``"noise"`` stream).

    Returns:
      ``(h, h)``.
    """
    inputs = recurrent.check_step_input(inputs, _in_features(self))
    deterministic = self.deterministic if deterministic is None else deterministic
    sigmoid, tanh = _gates(self)
    key = _noise_key(self, deterministic or not self.noisy_gates, rng)
    inputs, weights = _weights(self, "gru", inputs.shape[-1], self.dtype, inputs)
    x_proj = recurrent.input_projection(inputs, weights.input_kernel, weights.bias)
    return recurrent.gru_step(
        carry, x_proj, weights, key, sigmoid=sigmoid, tanh=tanh,
        noisy_gates=self.noisy_gates, deterministic=deterministic,
    )

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]):
    """Zero ``h`` of shape ``input_shape[:-1] + (features,)`` (``carry_init``)."""
    shape = tuple(input_shape[:-1]) + (self.features,)
    return self.carry_init(rng, shape, self.param_dtype)


class _NoisySequenceBase(_NoiseFields):
  """The whole-sequence layers: shared fields and ``__call__``.

  A subclass sets ``noisy_gates`` and the class constants ``_cell`` (``"lstm"`` or
  ``"gru"``) and ``_sequence_fn`` (the pure sequence function).
  """

  _cell: ClassVar[str]
  _sequence_fn: ClassVar[Callable[..., Any]]

  time_major: bool = False
  return_carry: bool = False
  reverse: bool = False
  keep_order: bool = False
  unroll: int = 1

  @nn.compact
  def __call__(self, inputs, *, initial_carry=None, seq_lengths=None,
               deterministic: bool | None = None, rng: jax.Array | None = None,
               return_carry: bool | None = None, time_major: bool | None = None,
               reverse: bool | None = None, keep_order: bool | None = None):
    """Runs the whole sequence.

    Args:
      inputs: ``(B, T, D)`` (``(T, B, D)`` if ``time_major``).
      initial_carry: optional initial carry (zeros by default).
      seq_lengths: optional ``(B,)`` integer lengths; past its length a sequence's
        carry is frozen and its outputs are zero (``nn.RNN`` leaves them
        unspecified); the carry returned is the one at the last valid step.
      deterministic, return_carry, time_major, reverse, keep_order: override the
        fields of the same names.
      rng: an explicit noise key instead of the stream: step ``t`` (in processing
        order) uses ``jax.random.split(rng, T)[t]``, or ``rng[t]`` for a ``(T,)``
        array of step keys. Without it each step's key is drawn from the
        ``rng_collection`` stream as :func:`noisy_rnn`'s cell draws it.

    Returns:
      ``outputs`` of shape ``(B, T, H)``, or ``(carry, outputs)`` with ``return_carry``.
    """
    deterministic = self.deterministic if deterministic is None else deterministic
    time_major = self.time_major if time_major is None else time_major
    inputs = recurrent.check_sequence_input(inputs, _in_features(self))
    sigmoid, tanh = _gates(self)
    key = _noise_key(self, deterministic or not self.noisy_gates, rng,
                     num_steps=inputs.shape[0 if time_major else 1])
    inputs, weights = _weights(self, self._cell, inputs.shape[-1], self.dtype, inputs)
    carry, outputs = self._sequence_fn(
        inputs, weights, key, initial_carry=initial_carry, seq_lengths=seq_lengths,
        reverse=self.reverse if reverse is None else reverse,
        keep_order=self.keep_order if keep_order is None else keep_order,
        time_major=time_major, unroll=self.unroll, sigmoid=sigmoid, tanh=tanh,
        noisy_gates=self.noisy_gates, deterministic=deterministic,
    )
    return_carry = self.return_carry if return_carry is None else return_carry
    return (carry, outputs) if return_carry else outputs


class NoisyLSTM(_NoisySequenceBase):
  r"""Fast whole-sequence noisy LSTM: same numbers as :class:`NoisyLSTMCell` under ``nn.RNN``.

  The input projections of all steps are one matmul outside the scan, each step is
  one fused ``(B, H) x (H, 4H)`` matmul plus one fused elementwise block, and the
  backward pass regenerates the noise from the per-step keys instead of storing
  it (see :func:`noisy_jax._src.recurrent.lstm_sequence`). The parameters are those
  of :class:`NoisyLSTMCell` (nested under ``"cell"`` in ``noisy_rnn(cell)``'s
  variables), so one can train with this layer and step with the cell.

  Same noise as the cell: with the same ``rngs={"noise": key}``, this layer and
  ``noisy_rnn(NoisyLSTMCell(...))`` with the same fields draw the same key at every
  step, so given the same parameters their outputs, final carries and gradients
  agree (to float rounding), also with ``reverse``, ``keep_order``, ``time_major``
  and ``seq_lengths`` (at the valid steps: past a sequence's length this layer
  outputs zeros, ``nn.RNN`` leaves them unspecified), and call after call within
  one ``apply``. The layer draws its step keys with flax's own ``nn.scan`` in a
  child named ``"cell"``, so both modules must sit at the same module path (e.g.
  the same ``name=`` in the same parent), with the cell as the ``nn.RNN``'s child
  ``"cell"`` (see :func:`noisy_rnn`). An explicit ``rng=`` key instead gives step
  ``t`` the key ``jax.random.split(rng, T)[t]``, as scanning the cell with
  ``rng=`` those keys does.

  Note:
    Initialisation differs: ``init`` draws this layer's parameters at its own path
    and the cell's at ``<path>/cell``, so the same ``"params"`` key gives different
    parameters. Copy them (``{"params": {"cell": params}}``) to compare the two.

  Attributes:
    features: hidden size ``H``.
    noisy_gates: which of ``("input", "forget", "output", "candidate", "cell")``
      are noisy.
    sigmoid_kind, sigmoid_mode, sigmoid_c, sigmoid_alpha, sigmoid_nanil_scale,
    tanh_kind, tanh_mode, tanh_c, tanh_alpha, tanh_nanil_scale, deterministic,
    kernel_init, recurrent_kernel_init, bias_init, p_init, dtype, param_dtype,
    rng_collection: as :class:`NoisyLSTMCell`.
    time_major: inputs/outputs are ``(time, batch, ...)`` instead of ``(batch, time, ...)``.
    return_carry: also return the final carry, as ``(carry, outputs)``.
    reverse: process right to left (padding stays at the end, as ``nn.RNN``).
    keep_order: with ``reverse``, return outputs in the original order.
    unroll: scan iterations unrolled per loop iteration (``jax.lax.scan``).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import noisy_jax.nn
    >>> layer = noisy_jax.nn.NoisyLSTM(features=4)
    >>> x = jnp.ones((2, 5, 3))
    >>> variables = layer.init({"params": jax.random.key(0), "noise": jax.random.key(1)}, x)
    >>> layer.apply(variables, x, rngs={"noise": jax.random.key(2)}).shape
    (2, 5, 4)

  References:
    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, 2016.
  """

  noisy_gates: Sequence[str] = recurrent.LSTM_GATES
  _cell: ClassVar[str] = "lstm"
  _sequence_fn: ClassVar[Callable[..., Any]] = staticmethod(recurrent.lstm_sequence)


class NoisyGRU(_NoisySequenceBase):
  r"""Fast whole-sequence noisy GRU: same numbers as :class:`NoisyGRUCell` under ``nn.RNN``.

  One input matmul outside the scan, one ``(B, H) x (H, 3H)`` matmul per step, noise
  regenerated in the backward pass (see
  :func:`noisy_jax._src.recurrent.gru_sequence`). Parameters as
  :class:`NoisyGRUCell`; the same noise as ``noisy_rnn(NoisyGRUCell(...))`` under
  the conditions of :class:`NoisyLSTM`, and the same note on initialisation.

  Attributes:
    features: hidden size ``H``.
    noisy_gates: which of ``("reset", "update", "candidate")`` are noisy.
    sigmoid_kind, sigmoid_mode, sigmoid_c, sigmoid_alpha, sigmoid_nanil_scale,
    tanh_kind, tanh_mode, tanh_c, tanh_alpha, tanh_nanil_scale, deterministic,
    kernel_init, recurrent_kernel_init, bias_init, p_init, dtype, param_dtype,
    rng_collection: as :class:`NoisyLSTMCell`.
    time_major: inputs/outputs are ``(time, batch, ...)`` instead of ``(batch, time, ...)``.
    return_carry: also return the final carry, as ``(carry, outputs)``.
    reverse: process right to left (padding stays at the end, as ``nn.RNN``).
    keep_order: with ``reverse``, return outputs in the original order.
    unroll: scan iterations unrolled per loop iteration (``jax.lax.scan``).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import noisy_jax.nn
    >>> layer = noisy_jax.nn.NoisyGRU(features=4, return_carry=True, deterministic=True)
    >>> x = jnp.ones((2, 5, 3))
    >>> variables = layer.init(jax.random.key(0), x)
    >>> h, ys = layer.apply(variables, x)
    >>> h.shape, ys.shape
    ((2, 4), (2, 5, 4))

  References:
    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, 2016.
  """

  noisy_gates: Sequence[str] = recurrent.GRU_GATES
  _cell: ClassVar[str] = "gru"
  _sequence_fn: ClassVar[Callable[..., Any]] = staticmethod(recurrent.gru_sequence)
