"""Flax NNX noisy recurrent cells and whole-sequence layers.

Thin wrappers over :mod:`noisy_jax._src.recurrent`, with the parameters of the
Linen modules (same names and shapes, so both give the same numbers). ``c`` and
``alpha`` live in :class:`NoiseScale` variables: state that ``nnx.jit`` traces, so
annealing them between steps does not retrace, and that optimizers over
``nnx.Param`` leave alone.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx.nn import dtypes as nnx_dtypes
from flax.nnx.nn import initializers
from flax.typing import Dtype, Initializer

from noisy_jax._src import activations
from noisy_jax._src import recurrent


class NoiseScale(nnx.Variable):
  """A noisy unit's ``c`` or ``alpha``: annealable state, not a learned ``nnx.Param``.

  Example:
    >>> from flax import nnx
    >>> import noisy_jax.nnx
    >>> cell = noisy_jax.nnx.NoisyLSTMCell(3, 4, rngs=nnx.Rngs(0))
    >>> cell.tanh_c[...] = 0.25  # e.g. the next value of an annealing schedule
    >>> float(cell.tanh_c[...])
    0.25
  """


def set_noise_scale(module: nnx.Module, c: jax.typing.ArrayLike, *,
                    kinds: Sequence[str] = ("sigmoid", "tanh")) -> None:
  """Sets ``c`` of every noisy recurrent module inside ``module`` (in place).

  The paper anneals one ``c`` for the whole network (Sec. 6.6); this writes it into
  the ``sigmoid_c`` and/or ``tanh_c`` :class:`NoiseScale` of each nested
  :class:`NoisyLSTMCell`, :class:`NoisyGRUCell`, :class:`NoisyLSTM` and
  :class:`NoisyGRU`. Works inside ``nnx.jit`` without retracing.

  Args:
    module: any NNX module (graph) containing noisy recurrent modules.
    c: the new ``c``, a scalar (or per-unit array of an unchanged shape).
    kinds: which gate kinds to set, from ``("sigmoid", "tanh")``.

  Example:
    >>> from flax import nnx
    >>> import noisy_jax.nnx
    >>> layer = noisy_jax.nnx.NoisyGRU(3, 4, rngs=nnx.Rngs(0))
    >>> noisy_jax.nnx.set_noise_scale(layer, 30.0)
    >>> float(layer.sigmoid_c[...]), float(layer.tanh_c[...])
    (30.0, 30.0)
  """
  for kind in kinds:
    activations._check_choice(kind, "kinds entry", ("sigmoid", "tanh"))
  activations._check_scale(c, np.shape(c))  # a concrete c must be finite and >= 0
  found = False
  for _, node in nnx.iter_graph(module):
    if isinstance(node, _NoisyNNXBase):
      found = True
      for kind in kinds:
        getattr(node, f"{kind}_c")[...] = c
  if not found:
    raise ValueError(
        f"set_noise_scale found no noisy recurrent module inside {type(module).__name__}. "
        "Fix: pass a module that contains noisy_jax.nnx cells or layers."
    )


def _stream(rngs: nnx.Rngs | nnx.RngStream | None, collection: str):
  """Forks the noise stream out of ``rngs``; None if ``rngs`` has no such stream."""
  if isinstance(rngs, nnx.RngStream):
    return rngs.fork()
  if isinstance(rngs, nnx.Rngs):
    try:
      return rngs[collection].fork()
    except KeyError:
      return nnx.data(None)
  return nnx.data(None)


def _successive_draws(stream: nnx.RngStream, num_steps: int) -> jax.Array:
  """The keys of ``num_steps`` successive ``stream()`` calls, derived at once.

  ``nnx.Rngs`` documents a draw as ``jax.random.fold_in(key, count)`` followed by
  ``count += 1``; under ``nnx.RNN`` a cell makes one such draw per step. Vectorised,
  the ``num_steps`` draws are one small fused op instead of a loop.
  """
  count = stream.count[...]
  keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(
      stream.key[...], count + jnp.arange(num_steps, dtype=count.dtype))
  stream.count[...] = count + num_steps
  return keys


def init_noise_fields(module: nnx.Module, **gates) -> None:
  """Sets ``<gate>_kind/_mode/_c/_alpha/_nanil_scale`` from ``gate=(kind, mode, c, alpha,
  nanil_scale)``.

  ``c`` and ``alpha`` default to :func:`noisy_jax.activations.reference_defaults`
  and become :class:`NoiseScale` variables (annealable with :func:`set_noise_scale`).
  """
  for prefix, (kind, mode, c, alpha, nanil_scale) in gates.items():
    recurrent.check_gate_noise(
        recurrent.GateNoise(kind, mode, nanil_scale=nanil_scale), prefix)
    if c is not None:
      activations._check_scale(c, np.shape(c), f"{prefix}_c")
    default_c, default_alpha = activations.reference_defaults(mode, kind)
    setattr(module, f"{prefix}_kind", kind)
    setattr(module, f"{prefix}_mode", mode)
    setattr(module, f"{prefix}_nanil_scale", nanil_scale)
    setattr(module, f"{prefix}_c", NoiseScale(
        jnp.asarray(default_c if c is None else c, jnp.float32)))
    setattr(module, f"{prefix}_alpha", NoiseScale(
        jnp.asarray(default_alpha if alpha is None else alpha, jnp.float32)))


class _NoisyNNXBase(nnx.Module):
  """Parameters, noise settings and key logic shared by the NNX cells and layers."""

  _cell: str  # "lstm" or "gru"

  def __init__(
      self,
      in_features: int,
      hidden_features: int,
      *,
      sigmoid_kind: str = recurrent.SIGMOID_GATE.kind,
      sigmoid_mode: str = recurrent.SIGMOID_GATE.mode,
      sigmoid_c: jax.typing.ArrayLike | None = None,
      sigmoid_alpha: jax.typing.ArrayLike | None = None,
      sigmoid_nanil_scale: str = recurrent.SIGMOID_GATE.nanil_scale,
      tanh_kind: str = recurrent.TANH_UNIT.kind,
      tanh_mode: str = recurrent.TANH_UNIT.mode,
      tanh_c: jax.typing.ArrayLike | None = None,
      tanh_alpha: jax.typing.ArrayLike | None = None,
      tanh_nanil_scale: str = recurrent.TANH_UNIT.nanil_scale,
      noisy_gates: Sequence[str] | None = None,
      deterministic: bool = False,
      kernel_init: Initializer = initializers.lecun_normal(),
      recurrent_kernel_init: Initializer = initializers.orthogonal(),
      bias_init: Initializer = initializers.zeros_init(),
      p_init: Initializer = activations.p_init,
      dtype: Dtype | None = None,
      param_dtype: Dtype = jnp.float32,
      rng_collection: str = "noise",
      rngs: nnx.Rngs,
  ):
    all_gates = recurrent.LSTM_GATES if self._cell == "lstm" else recurrent.GRU_GATES
    self.noisy_gates = recurrent.check_noisy_gates(
        all_gates if noisy_gates is None else noisy_gates, all_gates)
    self.in_features = in_features
    self.hidden_features = hidden_features
    self.deterministic = deterministic
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.rng_collection = rng_collection
    init_noise_fields(
        self, sigmoid=(sigmoid_kind, sigmoid_mode, sigmoid_c, sigmoid_alpha, sigmoid_nanil_scale),
        tanh=(tanh_kind, tanh_mode, tanh_c, tanh_alpha, tanh_nanil_scale))
    num_blocks = 4 if self._cell == "lstm" else 3
    shapes = recurrent.weight_shapes(self._cell, in_features, hidden_features)
    self._weight_names = tuple(shapes)
    for name, shape in shapes.items():
      init = recurrent.initializer_for(
          name, kernel_init, recurrent_kernel_init, bias_init, p_init, num_blocks)
      setattr(self, name, nnx.Param(init(rngs.params(), shape, param_dtype)))
    self.rngs = _stream(rngs, rng_collection)

  def _gates(self) -> tuple[recurrent.GateNoise, recurrent.GateNoise]:
    return (
        recurrent.GateNoise(self.sigmoid_kind, self.sigmoid_mode, self.sigmoid_c[...],
                            self.sigmoid_alpha[...], self.sigmoid_nanil_scale),
        recurrent.GateNoise(self.tanh_kind, self.tanh_mode, self.tanh_c[...],
                            self.tanh_alpha[...], self.tanh_nanil_scale),
    )

  def _weights(self, inputs):
    inputs, *params = nnx_dtypes.promote_dtype(
        (inputs, *(getattr(self, name)[...] for name in self._weight_names)),
        dtype=self.dtype)
    weights_type = recurrent.LSTMWeights if self._cell == "lstm" else recurrent.GRUWeights
    return inputs, weights_type(*params)

  def _key(self, deterministic: bool, rngs, num_steps: int | None = None) -> jax.Array | None:
    """A key as given; from a stream, one draw (a step) or ``num_steps`` (a sequence)."""
    if deterministic:
      return None
    if rngs is None:
      rngs = self.rngs
    if rngs is None:
      raise ValueError(
          f"{type(self).__name__} has no {self.rng_collection!r} RNG stream and "
          "deterministic=False. Fix: construct it with rngs=nnx.Rngs(params=..., "
          f"{self.rng_collection}=...) (or nnx.Rngs(seed)), pass rngs= at call time, or "
          "set deterministic=True (e.g. model.eval()) for evaluation."
      )
    if isinstance(rngs, nnx.Rngs):
      rngs = rngs[self.rng_collection]
    if isinstance(rngs, nnx.RngStream):
      return rngs() if num_steps is None else _successive_draws(rngs, num_steps)
    return rngs

  def set_view(self, deterministic: bool | None = None):
    """Used by ``nnx.view``: ``deterministic=True`` uses the noise's expectation."""
    if deterministic is not None:
      self.deterministic = deterministic


class _NoisyNNXCell(_NoisyNNXBase):
  """``nnx.RNN`` cell protocol on top of the shared base."""

  def __call__(self, carry: Any, inputs: jax.Array, *, deterministic: bool | None = None,
               rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None):
    """One step.

    Args:
      carry: ``(c, h)`` (LSTM) or ``h`` (GRU) from :meth:`initialize_carry`.
      inputs: ``(..., in_features)``.
      deterministic: overrides the attribute of the same name if given.
      rngs: a key, ``RngStream`` or ``Rngs`` to draw this step's noise from instead
        of the stream stored at construction.

    Returns:
      ``(new_carry, h)``.
    """
    inputs = recurrent.check_step_input(inputs, self.in_features)
    deterministic = self.deterministic if deterministic is None else deterministic
    sigmoid, tanh = self._gates()
    key = self._key(deterministic or not self.noisy_gates, rngs)
    inputs, weights = self._weights(inputs)
    x_proj = recurrent.input_projection(inputs, weights.input_kernel, weights.bias)
    step = recurrent.lstm_step if self._cell == "lstm" else recurrent.gru_step
    return step(carry, x_proj, weights, key, sigmoid=sigmoid, tanh=tanh,
                noisy_gates=self.noisy_gates, deterministic=deterministic)

  def initialize_carry(self, input_shape: tuple[int, ...],
                       rngs: nnx.Rngs | nnx.RngStream | None = None,
                       carry_init: Initializer | None = None):
    """Zero carry for inputs of ``input_shape`` (``carry_init`` draws from ``rngs``)."""
    shape = tuple(input_shape[:-1]) + (self.hidden_features,)
    parts = 2 if self._cell == "lstm" else 1
    if carry_init is None:
      carry = [jnp.zeros(shape, self.param_dtype) for _ in range(parts)]
    else:
      if isinstance(rngs, nnx.Rngs):
        rngs = rngs.carry
      if rngs is None:
        raise ValueError("rngs is required to initialise the carry with carry_init. Fix: "
                         "pass rngs=nnx.Rngs(...) to initialize_carry, or no carry_init.")
      carry = [carry_init(rngs(), shape, self.param_dtype) for _ in range(parts)]
    return tuple(carry) if parts == 2 else carry[0]

  @property
  def num_feature_axes(self) -> int:
    return 1


class NoisyLSTMCell(_NoisyNNXCell, nnx.RNNCellBase):
  r"""Noisy LSTM cell (NNX): every gate a noisy hard-sigmoid, every tanh a noisy hard-tanh.

  .. math::
    i, f, o = \phi_s(\cdot), \quad g = \phi_t(\cdot), \quad
    c_t = f \odot c_{t-1} + i \odot g, \quad h_t = o \odot \phi_t(c_t)

  The NNX twin of :class:`noisy_jax.nn.NoisyLSTMCell` (same parameters, same
  numbers for the same key), a drop-in for ``nnx.OptimizedLSTMCell`` under
  ``nnx.RNN``. The cell keeps its own fork of the ``"noise"`` stream; ``nnx.RNN``
  carries that stream's counter through its scan, so every step draws fresh noise
  (the stream's next key) without any call-time ``rngs``.

  Args:
    in_features: input size ``D``.
    hidden_features: hidden size ``H``.
    sigmoid_kind: activation of the gates, ``"hard_sigmoid"`` (paper) or ``"sigmoid"``.
    sigmoid_mode: noise variant of the gates; default ``"nah"`` (reference ``NSigmoidP``).
    sigmoid_c: the paper's ``c`` for the gates (``None``: the reference default);
      stored as a :class:`NoiseScale`, annealable without retracing
      (:func:`set_noise_scale` checks a concrete value; a traced one is not checked).
    sigmoid_alpha: the paper's ``alpha`` for the gates (``None``: 1.1).
    sigmoid_nanil_scale: how ``sigmoid_mode="nanil"`` learns its noise scale:
      ``"reference"`` (default, the reference code's form, which injects noise)
      or ``"paper"`` (Eq. 9 read literally, inert at the paper's ``c``); see
      :func:`noisy_jax.noisy_activation`.
    tanh_kind: activation of the tanh units, ``"hard_tanh"`` (paper) or ``"tanh"``.
    tanh_mode: noise variant of the tanh units; default ``"nan"`` (reference ``NTanhP``).
    tanh_c: the paper's ``c`` for the tanh units (``None``: 0.5 for NAN/NAH).
    tanh_alpha: the paper's ``alpha`` for the tanh units (``None``: 1.15).
    tanh_nanil_scale: as ``sigmoid_nanil_scale``, for the tanh units.
    noisy_gates: which of ``("input", "forget", "output", "candidate", "cell")`` are
      noisy (default all); the others use the plain activation.
    deterministic: use the noise's expectation (Eq. 13); ``model.eval()`` sets it.
    kernel_init, recurrent_kernel_init, bias_init: initializers (per gate block).
    p_init: initializer of the learned ``p`` (U[-1, 1], paper Sec. 6).
    dtype: computation dtype; param_dtype: parameter dtype.
    rng_collection: name of the noise stream taken from ``rngs``.
    rngs: ``nnx.Rngs``; ``params`` initialises the weights, ``rng_collection`` (or
      ``default``) seeds the noise.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> import noisy_jax.nnx
    >>> cell = noisy_jax.nnx.NoisyLSTMCell(3, 4, rngs=nnx.Rngs(0))
    >>> rnn = nnx.RNN(cell)
    >>> rnn(jnp.ones((2, 5, 3))).shape
    (2, 5, 4)

  References:
    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, 2016.
  """

  _cell = "lstm"


class NoisyGRUCell(_NoisyNNXCell, nnx.RNNCellBase):
  r"""Noisy GRU cell (NNX): noisy hard-sigmoid reset/update gates, noisy hard-tanh candidate.

  .. math::
    r, u = \phi_s(\cdot), \quad n = \phi_t(x W_n + b_n + r \odot (h U_n + b_{hn})),
    \quad h_t = (1 - u) \odot n + u \odot h_{t-1}

  The NNX twin of :class:`noisy_jax.nn.NoisyGRUCell`; arguments as
  :class:`NoisyLSTMCell`, with ``noisy_gates`` from ``("reset", "update",
  "candidate")``.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> import noisy_jax.nnx
    >>> cell = noisy_jax.nnx.NoisyGRUCell(3, 4, deterministic=True, rngs=nnx.Rngs(0))
    >>> h, y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
    >>> y.shape
    (2, 4)

  References:
    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, 2016.
  """

  _cell = "gru"


class _NoisyNNXSequence(_NoisyNNXBase):
  """Whole-sequence call on top of the shared base."""

  def __init__(self, in_features: int, hidden_features: int, *, time_major: bool = False,
               return_carry: bool = False, reverse: bool = False,
               keep_order: bool = False, unroll: int = 1, rngs: nnx.Rngs, **kwargs):
    super().__init__(in_features, hidden_features, rngs=rngs, **kwargs)
    self.time_major = time_major
    self.return_carry = return_carry
    self.reverse = reverse
    self.keep_order = keep_order
    self.unroll = unroll

  def __call__(self, inputs: jax.Array, *, initial_carry: Any = None,
               seq_lengths: jax.Array | None = None, deterministic: bool | None = None,
               rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None,
               return_carry: bool | None = None, time_major: bool | None = None,
               reverse: bool | None = None, keep_order: bool | None = None):
    """Runs the whole sequence.

    Args:
      inputs: ``(B, T, D)`` (``(T, B, D)`` if ``time_major``).
      initial_carry: optional initial carry (zeros by default).
      seq_lengths: optional ``(B,)`` integer lengths; past its length a sequence's
        carry is frozen and its outputs are zero; the carry returned is the one at
        the last valid step.
      deterministic, return_carry, time_major, reverse, keep_order: override the
        attributes of the same names.
      rngs: a key, ``RngStream`` or ``Rngs`` for this call's noise instead of the
        stored stream. From a stream, step ``t`` uses its ``t``-th next draw, as
        for the stored one; a key gives step ``t`` the key
        ``jax.random.split(key, T)[t]`` (or ``key[t]`` for a ``(T,)`` array of
        step keys), in processing order.

    Returns:
      ``outputs`` of shape ``(B, T, H)``, or ``(carry, outputs)`` with ``return_carry``.
    """
    inputs = recurrent.check_sequence_input(inputs, self.in_features)
    deterministic = self.deterministic if deterministic is None else deterministic
    sigmoid, tanh = self._gates()
    time_major = self.time_major if time_major is None else time_major
    key = self._key(deterministic or not self.noisy_gates, rngs,
                    inputs.shape[0 if time_major else 1])
    inputs, weights = self._weights(inputs)
    sequence = recurrent.lstm_sequence if self._cell == "lstm" else recurrent.gru_sequence
    carry, outputs = sequence(
        inputs, weights, key, initial_carry=initial_carry, seq_lengths=seq_lengths,
        reverse=self.reverse if reverse is None else reverse,
        keep_order=self.keep_order if keep_order is None else keep_order,
        time_major=time_major, unroll=self.unroll, sigmoid=sigmoid, tanh=tanh,
        noisy_gates=self.noisy_gates, deterministic=deterministic,
    )
    return_carry = self.return_carry if return_carry is None else return_carry
    return (carry, outputs) if return_carry else outputs


class NoisyLSTM(_NoisyNNXSequence):
  r"""Fast whole-sequence noisy LSTM (NNX): same numbers as :class:`NoisyLSTMCell` scanned.

  One input matmul for all steps outside the scan, one fused ``(B, H) x (H, 4H)``
  matmul per step, noise regenerated (not stored) in the backward pass. The
  parameters are those of :class:`NoisyLSTMCell`.

  Same noise as the cell: each call draws ``T`` successive keys from the stored
  noise stream, one per step, which are the keys ``nnx.RNN(NoisyLSTMCell(...))``
  draws from the cell's stream. A layer and a cell built with the same arguments
  and the same ``nnx.Rngs(params=..., noise=...)`` therefore start with the same
  parameters and give the same outputs, final carries and gradients (to float
  rounding), call after call (both streams advance by ``T`` per call), also with
  ``reverse``, ``keep_order``, ``time_major`` and ``seq_lengths`` (at the valid
  steps: past a sequence's length this layer outputs zeros, ``nnx.RNN`` leaves them
  unspecified). This needs ``nnx.RNN``'s default handling of the stream (carried
  through the scan; no ``broadcast_rngs``). An explicit key passed as ``rngs=``
  has no counterpart under ``nnx.RNN``; see :meth:`__call__`.

  Args:
    in_features, hidden_features, sigmoid_*, tanh_*, noisy_gates, deterministic,
    kernel_init, recurrent_kernel_init, bias_init, p_init, dtype, param_dtype,
    rng_collection, rngs: as :class:`NoisyLSTMCell`.
    time_major: inputs/outputs are ``(time, batch, ...)``.
    return_carry: also return the final carry, as ``(carry, outputs)``.
    reverse: process right to left (padding stays at the end, as ``nnx.RNN``).
    keep_order: with ``reverse``, return outputs in the original order.
    unroll: scan iterations unrolled per loop iteration.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> import noisy_jax.nnx
    >>> layer = noisy_jax.nnx.NoisyLSTM(3, 4, rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((2, 5, 3))).shape
    (2, 5, 4)

  References:
    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, 2016.
  """

  _cell = "lstm"


class NoisyGRU(_NoisyNNXSequence):
  r"""Fast whole-sequence noisy GRU (NNX): same numbers as :class:`NoisyGRUCell` scanned.

  Arguments as :class:`NoisyLSTM`, parameters as :class:`NoisyGRUCell`; the same
  parameters and noise as ``nnx.RNN(NoisyGRUCell(...))`` under the conditions of
  :class:`NoisyLSTM`.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> import noisy_jax.nnx
    >>> layer = noisy_jax.nnx.NoisyGRU(3, 4, return_carry=True, rngs=nnx.Rngs(0))
    >>> h, ys = layer(jnp.ones((2, 5, 3)))
    >>> h.shape, ys.shape
    ((2, 4), (2, 5, 4))

  References:
    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, 2016.
  """

  _cell = "gru"
