"""Flax NNX adapters: noisy recurrent cells, whole-sequence layers and the NTM cell.

Thin wrappers over :mod:`noisy_jax._src.rnn` and :mod:`noisy_jax._src.ntm`, with the
parameters of the Linen modules (the same table, names and shapes, so both give
the same numbers). A unit's ``c`` and ``alpha`` live in :class:`NoiseScale`
variables inside its :class:`~noisy_jax.UnitNoise` (``module.sigmoid.c``): state
that ``nnx.jit`` traces, so annealing them between steps does not retrace, and
that optimizers over ``nnx.Param`` leave alone.
"""

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx.nn import dtypes as nnx_dtypes
from flax.nnx.nn import initializers
from flax.typing import Dtype, Initializer

from noisy_jax._src import activations
from noisy_jax._src import checks
from noisy_jax._src import convert
from noisy_jax._src import ntm
from noisy_jax._src import rnn

_LEGACY_NAMES = tuple(f"{prefix}_{field}" for prefix in ("sigmoid", "tanh")
                      for field in rnn.LEGACY_UNIT_FIELDS)


class NoiseScale(nnx.Variable):
  """A noisy unit's ``c`` or ``alpha``: annealable state, not a learned ``nnx.Param``.

  Example:
    >>> from flax import nnx
    >>> import noisy_jax.nnx
    >>> cell = noisy_jax.nnx.NoisyLSTMCell(3, 4, rngs=nnx.Rngs(0))
    >>> cell.tanh.c[...] = 0.25  # e.g. the next value of an annealing schedule
    >>> float(cell.tanh.c[...])
    0.25
  """


def set_noise_scale(module: nnx.Module, c: jax.typing.ArrayLike, *,
                    kinds: Sequence[str] = ("sigmoid", "tanh")) -> None:
  """Sets ``c`` of every noisy module inside ``module`` (in place).

  The paper anneals one ``c`` for the whole network (Sec. 6.6); this writes it into
  the ``sigmoid.c`` and/or ``tanh.c`` :class:`NoiseScale` of each nested
  :class:`NoisyLSTMCell`, :class:`NoisyGRUCell`, :class:`NoisyLSTM`,
  :class:`NoisyGRU` and :class:`NTMCell`. Works inside ``nnx.jit`` without
  retracing.

  Args:
    module: any NNX module (graph) containing noisy modules.
    c: the new ``c``, a scalar (or per-unit array of an unchanged shape).
    kinds: which unit families to set, from ``("sigmoid", "tanh")``.

  Example:
    >>> from flax import nnx
    >>> import noisy_jax.nnx
    >>> layer = noisy_jax.nnx.NoisyGRU(3, 4, rngs=nnx.Rngs(0))
    >>> noisy_jax.nnx.set_noise_scale(layer, 30.0)
    >>> float(layer.sigmoid.c[...]), float(layer.tanh.c[...])
    (30.0, 30.0)
  """
  for kind in kinds:
    checks.choice(kind, "kinds entry", ("sigmoid", "tanh"))
  checks.noise_scale(c, np.shape(c))  # a concrete c must be finite and >= 0
  found = False
  for _, node in nnx.iter_graph(module):
    if isinstance(node, _NoisyModule):
      found = True
      for kind in kinds:
        getattr(node, kind).c[...] = c
  if not found:
    raise ValueError(
        f"set_noise_scale found no noisy module inside {type(module).__name__}. "
        "Fix: pass a module that contains noisy_jax.nnx cells or layers."
    )


PLAIN = rnn.PLAIN

# flax's NNX cells by class name -> their row of convert.LAYOUTS (the noisy kind).
_FLAX_CELLS = {"LSTMCell": "lstm", "OptimizedLSTMCell": "lstm", "GRUCell": "gru"}


def _flax_layout(module: Any) -> str | None:
  """The :data:`convert.LAYOUTS` key of a flax NNX cell; None for any other object."""
  name = type(module).__name__
  if name in _FLAX_CELLS and getattr(nnx, name, None) is type(module):
    return f"nnx.{name}"
  return None


def copy_params(source: nnx.Module, target: nnx.Module) -> None:
  """Copies the weights of a flax NNX cell into a noisy one, or back (in place).

  One of ``source`` and ``target`` is flax's ``nnx.LSTMCell``,
  ``nnx.OptimizedLSTMCell`` or ``nnx.GRUCell``, the other a noisy module of the
  same kind (:class:`NoisyLSTMCell` or :class:`NoisyLSTM` for the LSTMs,
  :class:`NoisyGRUCell` or :class:`NoisyGRU` for the GRU) and the same sizes. The
  noisy module's ``p`` is left as it is (flax's cells have none); with the
  :data:`PLAIN` arguments the noisy module then computes the flax cell's function.
  flax's NNX ``GRUCell`` has no recurrent bias of the candidate: copying from it
  sets the noisy GRU's ``recurrent_bias`` to zeros, copying into it needs that bias
  to be zero.

  Args:
    source: the module whose weights are read.
    target: the module whose weights are overwritten.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> import noisy_jax.nnx
    >>> flax_cell = nnx.OptimizedLSTMCell(3, 4, rngs=nnx.Rngs(0))
    >>> cell = noisy_jax.nnx.NoisyLSTMCell(3, 4, **noisy_jax.nnx.PLAIN, rngs=nnx.Rngs(1))
    >>> noisy_jax.nnx.copy_params(flax_cell, cell)
    >>> carry, x = flax_cell.initialize_carry((2, 3), rngs=nnx.Rngs(2)), jnp.ones((2, 3))
    >>> bool(jnp.allclose(cell(carry, x)[1], flax_cell(carry, x)[1], atol=1e-6))
    True
  """
  to_flax = _flax_layout(target) is not None
  flax_cell, noisy = (target, source) if to_flax else (source, target)
  layout = _flax_layout(flax_cell)
  if layout is None or not isinstance(noisy, _NoisyRNNBase):
    raise TypeError(
        "copy_params copies between one of flax.nnx's LSTMCell, OptimizedLSTMCell, "
        "GRUCell and a noisy_jax.nnx LSTM/GRU cell or layer, got "
        f"{type(source).__name__} -> {type(target).__name__}. Fix: pass one of each "
        "(for Linen parameters use noisy_jax.nn.params_from_flax)."
    )
  if _FLAX_CELLS[type(flax_cell).__name__] != noisy._spec.name:
    raise TypeError(
        f"copy_params: {type(flax_cell).__name__} and {type(noisy).__name__} are different "
        f"kinds of cell ({_FLAX_CELLS[type(flax_cell).__name__]} vs {noisy._spec.name}). "
        "Fix: pair the LSTMs (NoisyLSTMCell, NoisyLSTM) with nnx.LSTMCell or "
        "nnx.OptimizedLSTMCell, and the GRUs (NoisyGRUCell, NoisyGRU) with nnx.GRUCell."
    )
  flax_params = {path: node for path, node in nnx.iter_graph(flax_cell)
                 if isinstance(node, nnx.Param)}  # e.g. ("dense_h", "bias")
  if to_flax:
    values = convert.to_flax(layout, _values(noisy))
    for (dense, field), param in flax_params.items():
      param[...] = jnp.asarray(values[dense][field], param[...].dtype)
    return
  nested: dict[str, dict[str, Any]] = {}
  for (dense, field), param in flax_params.items():
    nested.setdefault(dense, {})[field] = param[...]
  for name, value in convert.from_flax(layout, nested).items():
    param = getattr(noisy, name)
    if param[...].shape != value.shape:
      raise ValueError(
          f"copy_params: {name} of {type(noisy).__name__} has shape {param[...].shape}, the "
          f"flax cell's gives {value.shape}. Fix: build both with the same in_features "
          "and hidden_features."
      )
    param[...] = jnp.asarray(value, param[...].dtype)


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


def _unit_state(unit: activations.UnitNoise, prefix: str) -> activations.UnitNoise:
  """``unit`` with ``c`` and ``alpha`` (reference defaults filled in) as NoiseScale state."""
  checks.unit_noise(unit, prefix)
  if unit.c is not None:
    checks.noise_scale(unit.c, np.shape(unit.c), f"{prefix}.c")
  default_c, default_alpha = activations.reference_defaults(unit.mode, unit.kind)
  c = default_c if unit.c is None else unit.c
  alpha = default_alpha if unit.alpha is None else unit.alpha
  return nnx.data(unit._replace(c=NoiseScale(jnp.asarray(c, jnp.float32)),
                                alpha=NoiseScale(jnp.asarray(alpha, jnp.float32))))


def _declare(owner: nnx.Module, shapes: Mapping[str, Any], inits: Mapping[str, Any],
             param_dtype, rngs: nnx.Rngs) -> None:
  """One ``nnx.Param`` attribute of ``owner`` per entry of ``shapes``, in order.

  A nested dict of shapes (the NTM's controller) becomes a nested group.
  """
  owner.param_names = tuple(shapes)
  for name, shape in shapes.items():
    if isinstance(shape, Mapping):
      value = _ParamGroup(shape, inits[name], param_dtype, rngs)
    else:
      value = nnx.Param(inits[name](rngs.params(), shape, param_dtype))
    setattr(owner, name, value)


def _values(owner: nnx.Module) -> dict[str, Any]:
  """The (nested) values of the parameters :func:`_declare` gave ``owner``."""
  return {name: _values(node) if isinstance(node, _ParamGroup) else node[...]
          for name in owner.param_names for node in (getattr(owner, name),)}


class _ParamGroup(nnx.Module):
  """A nested group of parameters (see :func:`_declare`)."""

  def __init__(self, shapes: Mapping[str, Any], inits: Mapping[str, Any], param_dtype,
               rngs: nnx.Rngs):
    _declare(self, shapes, inits, param_dtype, rngs)


class _NoisyModule(nnx.Module):
  """What every noisy NNX module shares: noise settings, parameters, the noise stream.

  A subclass passes its gate names, its parameter table (``shapes`` and a function
  making the initializers from the four initializer options) and everything else
  as given by the user.
  """

  def __init__(
      self,
      in_features: int,
      *,
      gates: tuple[str, ...],
      shapes: Mapping[str, Any],
      make_inits: Callable[..., Mapping[str, Any]],
      sigmoid: activations.UnitNoise = activations.SIGMOID_UNIT,
      tanh: activations.UnitNoise = activations.TANH_UNIT,
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
      **legacy,
  ):
    unknown = sorted(set(legacy) - set(_LEGACY_NAMES))
    if unknown:
      raise TypeError(f"{type(self).__name__}() got unexpected keyword arguments {unknown}.")
    sigmoid, tanh = rnn.units_with_legacy_fields(sigmoid, tanh, type(self).__name__,
                                                 **legacy)
    self.noisy_gates = checks.gate_names(gates if noisy_gates is None else noisy_gates, gates)
    self.in_features = in_features
    self.deterministic = deterministic
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.rng_collection = rng_collection
    self.sigmoid = _unit_state(sigmoid, "sigmoid")
    self.tanh = _unit_state(tanh, "tanh")
    inits = make_inits(kernel_init=kernel_init, recurrent_kernel_init=recurrent_kernel_init,
                       bias_init=bias_init, p_init=p_init)
    _declare(self, shapes, inits, param_dtype, rngs)
    self.rngs = _stream(rngs, rng_collection)

  def _units(self) -> tuple[activations.UnitNoise, activations.UnitNoise]:
    return tuple(unit._replace(c=unit.c[...], alpha=unit.alpha[...])
                 for unit in (self.sigmoid, self.tanh))

  def _prepare(self, inputs, deterministic: bool | None, rngs,
               num_steps: int | None = None) -> tuple[Any, ...]:
    """What a call needs: ``(inputs, params, key, sigmoid, tanh, deterministic)``.

    The inputs (already checked) and the (nested) parameter values are promoted to
    one dtype; ``num_steps`` asks for a sequence's step keys.
    """
    deterministic = self.deterministic if deterministic is None else deterministic
    key = self._key(deterministic or not self.noisy_gates, rngs, num_steps)
    leaves, treedef = jax.tree.flatten(_values(self))
    inputs, *leaves = nnx_dtypes.promote_dtype((inputs, *leaves), dtype=self.dtype)
    return (inputs, jax.tree.unflatten(treedef, leaves), key, *self._units(), deterministic)

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

  @property
  def num_feature_axes(self) -> int:
    return 1


class _NoisyRNNBase(_NoisyModule):
  """An LSTM or GRU module; the subclass's ``_spec`` is its kind."""

  _spec: rnn.CellSpec

  def __init__(self, in_features: int, hidden_features: int, *, rngs: nnx.Rngs, **options):
    noisy_gates = options.get("noisy_gates")
    shapes = rnn.declared_shapes(self._spec, in_features, hidden_features,
                                 self._spec.gates if noisy_gates is None else noisy_gates)
    super().__init__(in_features, gates=self._spec.gates, shapes=shapes,
                     make_inits=functools.partial(rnn.initializers, self._spec), rngs=rngs,
                     **options)
    self.hidden_features = hidden_features


class _NoisyNNXCell(_NoisyRNNBase):
  """``nnx.RNN`` cell protocol on top of the shared base."""

  def __call__(self, carry: Any, inputs: jax.Array, *, deterministic: bool | None = None,
               rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None):
    """One step.

    Args:
      carry: ``(cell, hidden)`` (LSTM) or ``hidden`` (GRU) from :meth:`initialize_carry`.
      inputs: ``(..., in_features)``.
      deterministic: overrides the attribute of the same name if given.
      rngs: a key, ``RngStream`` or ``Rngs`` to draw this step's noise from instead
        of the stream stored at construction.

    Returns:
      ``(new_carry, hidden)``.
    """
    inputs, params, key, sigmoid, tanh, deterministic = self._prepare(
        checks.step_input(inputs, self.in_features), deterministic, rngs)
    weights = rnn.weights_from_params(self._spec, params)
    x_proj = rnn.input_projection(inputs, weights.input_kernel, weights.bias)
    return rnn.step(self._spec, carry, x_proj, weights, key, sigmoid=sigmoid, tanh=tanh,
                    noisy_gates=self.noisy_gates, deterministic=deterministic)

  def initialize_carry(self, input_shape: tuple[int, ...],
                       rngs: nnx.Rngs | nnx.RngStream | None = None,
                       carry_init: Initializer | None = None):
    """Zero carry for inputs of ``input_shape`` (``carry_init`` draws from ``rngs``)."""
    shape = tuple(input_shape[:-1]) + (self.hidden_features,)
    num_parts = len(self._spec.carry_parts)
    if carry_init is None:
      parts = [jnp.zeros(shape, self.param_dtype) for _ in range(num_parts)]
    else:
      if isinstance(rngs, nnx.Rngs):
        rngs = rngs.carry
      if rngs is None:
        raise ValueError("rngs is required to initialise the carry with carry_init. Fix: "
                         "pass rngs=nnx.Rngs(...) to initialize_carry, or no carry_init.")
      parts = [carry_init(rngs(), shape, self.param_dtype) for _ in range(num_parts)]
    return rnn.carry_from_parts(self._spec, parts)


class NoisyLSTMCell(_NoisyNNXCell, nnx.RNNCellBase):
  r"""Noisy LSTM cell (NNX): every gate a noisy hard-sigmoid, every tanh a noisy hard-tanh.

  .. math::
    i, f, o = \phi_s(\cdot), \quad g = \phi_t(\cdot), \quad
    c_t = f \odot c_{t-1} + i \odot g, \quad h_t = o \odot \phi_t(c_t)

  The NNX twin of :class:`noisy_jax.nn.NoisyLSTMCell` (same parameters, same
  numbers for the same key), a drop-in for ``nnx.OptimizedLSTMCell`` under
  ``nnx.RNN``: with the :data:`PLAIN` arguments it has no ``p`` and computes flax's
  cell, whose weights :func:`copy_params` copies in either direction. The cell keeps its own fork of the ``"noise"`` stream; ``nnx.RNN``
  carries that stream's counter through its scan, so every step draws fresh noise
  (the stream's next key) without any call-time ``rngs``.

  Args:
    in_features: input size ``D``.
    hidden_features: hidden size ``H``.
    sigmoid: :class:`~noisy_jax.UnitNoise` of the gates: ``kind``
      ``"hard_sigmoid"`` (paper) or ``"sigmoid"``, ``mode`` (default ``"nah"``,
      the reference ``NSigmoidP``), ``c`` (``None``: the reference default),
      ``alpha`` (``None``: 1.1), ``nanil_scale``. ``c`` and ``alpha`` are stored
      as :class:`NoiseScale` state (``cell.sigmoid.c``), annealable without
      retracing (:func:`set_noise_scale` checks a concrete value; a traced one is
      not checked).
    tanh: :class:`~noisy_jax.UnitNoise` of the tanh units: ``kind``
      ``"hard_tanh"`` (paper) or ``"tanh"``, ``mode`` (default ``"nan"``, the
      reference ``NTanhP``), ``c`` (``None``: 0.5 for NAN/NAH), ``alpha``
      (``None``: 1.15), ``nanil_scale``.
    noisy_gates: which of ``("input", "forget", "output", "candidate", "cell")`` are
      noisy (default all); the others use the plain activation.
    deterministic: use the noise's expectation (Eq. 13); ``model.eval()`` sets it.
    kernel_init, recurrent_kernel_init, bias_init: initializers (per gate block).
    p_init: initializer of the learned ``p`` (U[-1, 1], paper Sec. 6).
    dtype: computation dtype; param_dtype: parameter dtype.
    rng_collection: name of the noise stream taken from ``rngs``.
    rngs: ``nnx.Rngs``; ``params`` initialises the weights, ``rng_collection`` (or
      ``default``) seeds the noise.
    **legacy: the deprecated flat forms ``sigmoid_kind``, ``sigmoid_mode``,
      ``sigmoid_c``, ``sigmoid_alpha``, ``sigmoid_nanil_scale`` and their ``tanh_``
      twins (a ``DeprecationWarning``; removed in the next release).

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

  _spec = rnn.LSTM


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

  _spec = rnn.GRU


def _capturing_intermediates(module: nnx.Module) -> bool:
  """Whether an ``nnx.capture(..., nnx.Intermediate)`` collects what ``module`` sows.

  The saturation diagnostics are computed only then (NNX's counterpart of a
  mutable ``"intermediates"`` collection in Linen); otherwise the call traces
  exactly what it did without them.
  """
  return any(type(variable) is nnx.Intermediate
             for variable in getattr(module, "__captures__", ()))


class _NoisyNNXSequence(_NoisyRNNBase):
  """Whole-sequence call on top of the shared base."""

  def __init__(self, in_features: int, hidden_features: int, *, time_major: bool = False,
               return_carry: bool = False, reverse: bool = False,
               keep_order: bool = False, unroll: int = 1, rngs: nnx.Rngs, **options):
    super().__init__(in_features, hidden_features, rngs=rngs, **options)
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
      inputs, initial_carry, seq_lengths, deterministic, return_carry, time_major,
        reverse, keep_order: as for the Linen layers (:class:`noisy_jax.nn.NoisyLSTM`):
        inputs ``(B, T, D)``, zeros by default for the carry, outputs zero and the
        carry frozen past a sequence's length, attributes overridden per call.
      rngs: a key, ``RngStream`` or ``Rngs`` for this call's noise instead of the
        stored stream. From a stream, step ``t`` uses its ``t``-th next draw, as
        for the stored one; a key gives step ``t`` the key
        ``jax.random.split(key, T)[t]`` (or ``key[t]`` for a ``(T,)`` array of
        step keys), in processing order.

    Returns:
      ``outputs`` of shape ``(B, T, H)``, or ``(carry, outputs)`` with ``return_carry``.

    Under ``nnx.capture(..., nnx.Intermediate)`` (flax 0.12 on) the call also sows its saturation
    diagnostics as ``"unit_statistics"``: a dict from gate name to
    :class:`~noisy_jax.activations.UnitStatistics` over the valid steps (see
    :func:`noisy_jax.rnn.sequence`); otherwise they are not computed. The NNX cells
    do not sow them: ``nnx.RNN``'s scan cannot carry sown values (use
    :func:`noisy_jax.rnn.step` with ``statistics=True``, or the Linen cells).
    """
    inputs = checks.sequence_input(inputs, self.in_features)
    time_major = self.time_major if time_major is None else time_major
    inputs, params, key, sigmoid, tanh, deterministic = self._prepare(
        inputs, deterministic, rngs, num_steps=inputs.shape[0 if time_major else 1])
    statistics = _capturing_intermediates(self)
    result = rnn.layer_call(
        self, inputs, rnn.weights_from_params(self._spec, params), key, sigmoid=sigmoid,
        tanh=tanh, deterministic=deterministic, time_major=time_major,
        initial_carry=initial_carry, seq_lengths=seq_lengths, return_carry=return_carry,
        reverse=reverse, keep_order=keep_order, statistics=statistics)
    if not statistics:
      return result
    result, unit_statistics = result
    self.sow(nnx.Intermediate, "unit_statistics", unit_statistics)
    return result


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
    in_features, hidden_features, sigmoid, tanh, noisy_gates, deterministic,
    kernel_init, recurrent_kernel_init, bias_init, p_init, dtype, param_dtype,
    rng_collection, rngs, legacy: as :class:`NoisyLSTMCell`.
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

  _spec = rnn.LSTM


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

  _spec = rnn.GRU


class NTMCell(_NoisyModule, nnx.RNNCellBase):
  r"""Neural Turing Machine cell with noisy controller gates (NNX).

  The NNX twin of :class:`noisy_jax.nn.NTMCell`: one step of
  :func:`noisy_jax.ntm.ntm_step`, a noisy LSTM (or feed-forward) controller
  driving ``num_read_heads`` read and ``num_write_heads`` write heads over a
  ``memory_size x memory_width`` memory (Graves et al., 2014), with noisy
  hard-sigmoid gates and noisy hard-tanh units (Gulcehre et al., 2016, Sec. 6.6)
  and the initialisation of Collier and Beel (2018). A drop-in cell for
  ``nnx.RNN``: it keeps its own fork of the ``"noise"`` stream, whose counter
  ``nnx.RNN`` carries through the scan, so every step draws fresh noise. ``c`` and
  ``alpha`` are :class:`~noisy_jax.nnx.NoiseScale` state, annealable without
  retracing (:func:`noisy_jax.nnx.set_noise_scale` finds them).

  The carry is a :class:`noisy_jax.ntm.NTMState`; the output is the controller's
  output and the reads, ``(..., hidden_features + num_read_heads * memory_width)``.

  Args:
    in_features: input size ``D``.
    hidden_features: controller size ``H`` (``features=`` is its deprecated name).
    memory_size, memory_width, num_read_heads, num_write_heads, shift_range,
      controller, noisy_gates, clip_value, memory_init, initial_state_init: the
      sizes (defaults N=128, M=20, one read and one write head, shifts -1..1) and
      options of :class:`noisy_jax.nn.NTMCell`.
    sigmoid, tanh, deterministic, kernel_init, recurrent_kernel_init, bias_init,
      p_init, dtype, param_dtype, rng_collection, rngs, legacy: as
      :class:`noisy_jax.nnx.NoisyLSTMCell`; ``sigmoid`` also configures the
      heads' interpolation and erase gates.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> import noisy_jax.nnx
    >>> cell = noisy_jax.nnx.NTMCell(3, 16, memory_size=8, memory_width=4, rngs=nnx.Rngs(0))
    >>> nnx.RNN(cell)(jnp.ones((2, 5, 3))).shape
    (2, 5, 20)

  References:
    Those of :class:`noisy_jax.nn.NTMCell` (Graves et al., 2014; Gulcehre et al.,
    2016; Collier and Beel, 2018).
  """

  def __init__(
      self,
      in_features: int,
      hidden_features: int | None = None,
      *,
      memory_size: int = 128,
      memory_width: int = 20,
      num_read_heads: int = 1,
      num_write_heads: int = 1,
      shift_range: int = 1,
      controller: str = "lstm",
      clip_value: float | None = ntm.CLIP_VALUE,
      memory_init: float = ntm.MEMORY_INIT,
      initial_state_init: Initializer = initializers.normal(0.1),
      rngs: nnx.Rngs,
      **options,
  ):
    if "features" in options:
      warnings.warn("NTMCell(features=...) is deprecated; use hidden_features=, the name "
                    "of the NNX cells.", DeprecationWarning, stacklevel=2)
      hidden_features = options.pop("features")
    if hidden_features is None:
      raise TypeError("NTMCell() missing the controller size hidden_features. Fix: pass "
                      "NTMCell(in_features, hidden_features, ...).")
    shapes = ntm.weight_shapes(controller, in_features, hidden_features, memory_size,
                               memory_width, num_read_heads, num_write_heads, shift_range)
    make_inits = functools.partial(ntm.initializers_for, controller,
                                   initial_state_init=initial_state_init)
    super().__init__(in_features, gates=ntm.gate_names(controller), shapes=shapes,
                     make_inits=make_inits, rngs=rngs, **options)
    self.hidden_features = hidden_features
    self.memory_size = memory_size
    self.memory_width = memory_width
    self.num_read_heads = num_read_heads
    self.num_write_heads = num_write_heads
    self.shift_range = shift_range
    self.controller_kind = controller
    self.clip_value = clip_value
    self.memory_init = memory_init

  def __call__(self, carry: ntm.NTMState, inputs: jax.Array, *,
               deterministic: bool | None = None,
               rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None):
    """One step.

    Args:
      carry: :class:`~noisy_jax.ntm.NTMState` from :meth:`initialize_carry`.
      inputs: ``(..., in_features)``.
      deterministic: overrides the attribute of the same name if given.
      rngs: a key, ``RngStream`` or ``Rngs`` for this step's noise instead of the
        stream stored at construction.

    Returns:
      ``(new_carry, output)``.
    """
    inputs, params, key, sigmoid, tanh, deterministic = self._prepare(
        checks.step_input(inputs, self.in_features), deterministic, rngs)
    return ntm.ntm_step(
        carry, inputs, ntm.assemble_weights(self.controller_kind, params), key,
        controller=self.controller_kind, shift_range=self.shift_range, sigmoid=sigmoid,
        tanh=tanh, noisy_gates=self.noisy_gates, clip_value=self.clip_value,
        deterministic=deterministic,
    )

  def initialize_carry(self, input_shape: tuple[int, ...],
                       rngs: nnx.Rngs | nnx.RngStream | None = None,
                       carry_init: Initializer | None = None) -> ntm.NTMState:
    """A fresh :class:`~noisy_jax.ntm.NTMState` for inputs of ``input_shape``.

    ``rngs`` and ``carry_init`` are unused: the initial memory is the constant
    ``memory_init`` and the learned initial reads and weightings are parameters,
    applied by the first step.
    """
    del rngs, carry_init
    return ntm.initial_state(
        tuple(input_shape[:-1]), controller=self.controller_kind,
        features=self.hidden_features, memory_size=self.memory_size,
        memory_width=self.memory_width, num_read_heads=self.num_read_heads,
        num_write_heads=self.num_write_heads, memory_init=self.memory_init,
        dtype=self.param_dtype,
    )
