"""Flax Linen adapters: noisy recurrent cells, whole-sequence layers and the NTM cell.

Thin wrappers: each module declares its parameters (the table of
:func:`noisy_jax._src.rnn.initializers`, shared with the NNX adapter), fetches its
keys from the ``"noise"`` RNG stream and calls the pure functions of
:mod:`noisy_jax._src.rnn` and :mod:`noisy_jax._src.ntm`.
"""

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen import initializers
from flax.linen.dtypes import promote_dtype
from flax.typing import Dtype, Initializer

from noisy_jax._src import activations
from noisy_jax._src import checks
from noisy_jax._src import convert
from noisy_jax._src import ntm
from noisy_jax._src import rnn

# nn.RNN keeps only the RNG streams named in its split_rngs; "noise" must be split
# so that every step draws fresh noise.
RNN_SPLIT_RNGS: Mapping[str, bool] = {"params": False, "noise": True}

_MISSING_NOISE_STREAM = (
    "{name} at {path} needs the {collection!r} RNG stream when deterministic=False, but "
    "none is visible there. Fix: pass rngs={{{collection!r}: key}} to apply; under "
    "flax.linen.RNN (or nn.scan) also add {collection!r}: True to the split_rngs already "
    "there, keeping your own entries, e.g. nn.RNN(cell, split_rngs={{'params': False, "
    "{collection!r}: True}}), or wrap it as noisy_jax.nn.noisy_rnn(cell, split_rngs=...) "
    "(plain nn.RNN drops the stream). For evaluation use deterministic=True or "
    "noisy_jax.nn.noise_settings(deterministic=True)."
)

PLAIN = rnn.PLAIN

# The stack of noise_settings contexts entered in this thread, innermost last.
_SETTINGS = threading.local()


@contextlib.contextmanager
def noise_settings(*, c: jax.typing.ArrayLike | None = None,
                   deterministic: bool | None = None,
                   kinds: Sequence[str] = ("sigmoid", "tanh")) -> Iterator[None]:
  """Sets ``c`` and/or ``deterministic`` of every noisy Linen module traced inside.

  The paper anneals one ``c`` for the whole network (Sec. 6.6) and evaluates with
  the noise at its expectation (Eq. 13). Both are set here for a whole model,
  however deeply its noisy cells are nested (under ``nn.RNN``, ``nn.scan``, inside
  user cells), without threading a value through every module: each
  :class:`NoisyLSTMCell`, :class:`NoisyGRUCell`, :class:`NoisyLSTM`,
  :class:`NoisyGRU` and :class:`NTMCell` reads the innermost setting when it is
  traced. ``c`` overrides the units' ``c`` (of the families in ``kinds``);
  ``deterministic`` overrides the modules' field, and a call's own
  ``deterministic=`` argument overrides both. Also a decorator:
  ``noise_settings(c=c)(model.apply)(variables, x, rngs=...)``.

  ``c`` may be a traced value: enter the context inside the jitted function and
  pass ``c`` as its argument, so that a new value neither retraces nor recompiles.

  Note:
    The settings are read while a function is traced, like
    ``flax.linen.logical_axis_rules``: entered around a call of a function that
    ``jax.jit`` has already compiled, they do not reach it (its cached trace
    keeps what it was traced with). Enter them inside the jitted function.

  Args:
    c: the noise scale for every noisy unit of the ``kinds`` families; a scalar,
      or an array broadcastable to each unit's shape; ``None`` leaves ``c`` alone.
    deterministic: ``True`` for the test-time expectation, ``False`` to sample;
      ``None`` leaves each module's own setting.
    kinds: the unit families ``c`` applies to, from ``("sigmoid", "tanh")``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import noisy_jax.nn
    >>> rnn = noisy_jax.nn.noisy_rnn(noisy_jax.nn.NoisyLSTMCell(4))
    >>> x = jnp.ones((2, 5, 3))
    >>> variables = rnn.init(jax.random.key(0), x)
    >>> @jax.jit
    ... def apply(variables, x, c, key):
    ...   with noisy_jax.nn.noise_settings(c=c):
    ...     return rnn.apply(variables, x, rngs={"noise": key})
    >>> y = apply(variables, x, 0.3, jax.random.key(1))  # a new c: no retrace
    >>> with noisy_jax.nn.noise_settings(deterministic=True):
    ...   y_test = rnn.apply(variables, x)  # no noise key needed
    >>> y_test.shape
    (2, 5, 4)
  """
  for kind in kinds:
    checks.choice(kind, "kinds entry", ("sigmoid", "tanh"))
  if c is not None:
    checks.noise_scale(c, np.shape(c))
  if deterministic is not None and not isinstance(deterministic, bool):
    raise TypeError(
        f"deterministic must be True, False or None (it is read at trace time), got "
        f"{deterministic!r}. Fix: pass a Python bool; anneal c instead for a traced value."
    )
  override = {"deterministic": deterministic,
              **{f"{kind}_c": c for kind in kinds}}
  stack = _settings_stack()
  stack.append({k: v for k, v in override.items() if v is not None})
  try:
    yield
  finally:
    stack.pop()


def _settings_stack() -> list[dict[str, Any]]:
  if not hasattr(_SETTINGS, "stack"):
    _SETTINGS.stack = []
  return _SETTINGS.stack


def _setting(name: str) -> Any:
  """The innermost :func:`noise_settings` value of ``name``; None if none is set."""
  for override in reversed(_settings_stack()):
    if name in override:
      return override[name]
  return None


def _deterministic(module, deterministic: bool | None) -> bool:
  """A call's ``deterministic``: its argument, else the context's, else the field.

  ``init`` without the noise stream runs the expectation: no parameter depends on
  a draw, so ``init`` needs no noise key.
  """
  if module.is_initializing() and not module.has_rng(module.rng_collection):
    return True
  for value in (deterministic, _setting("deterministic")):
    if value is not None:
      return value
  return module.deterministic


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
      is merged, with the noise stream forced to be split; ``variable_axes``
      too, where ``{"intermediates": 0}`` (the default) stacks the cell's sown
      unit statistics over the steps.

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
  # The cell's sown unit statistics, one per step, stacked along a leading axis (a
  # collection the scan does not list would be dropped).
  variable_axes = {"intermediates": 0, **dict(kwargs.pop("variable_axes", {}))}
  return nn.RNN(cell, split_rngs=split_rngs, variable_axes=variable_axes, **kwargs)


# flax's Linen cells by class name -> their row of convert.LAYOUTS.
_FLAX_CELLS = ("LSTMCell", "OptimizedLSTMCell", "GRUCell")


def _flax_layout(flax_cell: Any) -> str:
  """The :data:`convert.LAYOUTS` key of a Linen cell class or instance."""
  cls = flax_cell if isinstance(flax_cell, type) else type(flax_cell)
  if cls.__name__ not in _FLAX_CELLS or getattr(nn, cls.__name__) is not cls:
    raise TypeError(
        f"flax_cell must be one of flax.linen's {', '.join(_FLAX_CELLS)} (the class or an "
        f"instance), got {cls.__module__}.{cls.__qualname__}. Fix: pass e.g. nn.LSTMCell; "
        "for NNX cells use noisy_jax.nnx.copy_params."
    )
  return f"linen.{cls.__name__}"


def params_from_flax(params: Mapping[str, Any], flax_cell: Any) -> dict[str, jax.Array]:
  """A flax Linen cell's parameters in the layout of :class:`NoisyLSTMCell`/:class:`NoisyGRUCell`.

  ``nn.LSTMCell`` and ``nn.OptimizedLSTMCell`` give the weights of a noisy LSTM
  (cell or :class:`NoisyLSTM` layer), ``nn.GRUCell`` those of a noisy GRU. With the
  :data:`PLAIN` fields the noisy module then computes the flax cell's function
  (equal to float rounding). For a noisy module, keep its own ``p``:
  ``{**noisy_params, **params_from_flax(flax_params, nn.LSTMCell)}``.

  Args:
    params: the flax cell's parameters, e.g. ``variables["params"]["cell"]`` of an
      ``nn.RNN``.
    flax_cell: ``nn.LSTMCell``, ``nn.OptimizedLSTMCell`` or ``nn.GRUCell`` (class or
      instance).

  Returns:
    ``input_kernel``, ``recurrent_kernel``, ``bias`` (and the GRU's
    ``recurrent_bias``), no ``p``.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import noisy_jax.nn
    >>> x = jnp.ones((2, 5, 3))
    >>> flax_vars = nn.RNN(nn.LSTMCell(4)).init(jax.random.key(0), x)
    >>> params = noisy_jax.nn.params_from_flax(flax_vars["params"]["cell"], nn.LSTMCell)
    >>> plain = nn.RNN(noisy_jax.nn.NoisyLSTMCell(4, **noisy_jax.nn.PLAIN))
    >>> y = plain.apply({"params": {"cell": params}}, x)
    >>> bool(jnp.allclose(y, nn.RNN(nn.LSTMCell(4)).apply(flax_vars, x), atol=1e-6))
    True
  """
  return {name: jnp.asarray(value)
          for name, value in convert.from_flax(_flax_layout(flax_cell), params).items()}


def params_to_flax(params: Mapping[str, Any], flax_cell: Any) -> dict[str, Any]:
  """The inverse of :func:`params_from_flax`: a noisy cell's weights for a flax Linen cell.

  The ``p`` parameters, if any, are dropped: the flax cell has no noise.

  Args:
    params: a :class:`NoisyLSTMCell`'s or :class:`NoisyGRUCell`'s parameters (or
      its layer's).
    flax_cell: ``nn.LSTMCell``, ``nn.OptimizedLSTMCell`` or ``nn.GRUCell``.

  Returns:
    The flax cell's ``params`` (per-gate ``{"kernel", "bias"}`` dicts).
  """
  return jax.tree.map(jnp.asarray, convert.to_flax(_flax_layout(flax_cell), params))


def _units(module) -> tuple[activations.UnitNoise, activations.UnitNoise]:
  """The module's sigmoid and tanh units: deprecated flat fields merged, context ``c`` applied."""
  legacy = {f"{prefix}_{field}": getattr(module, f"{prefix}_{field}")
            for prefix in ("sigmoid", "tanh") for field in rnn.LEGACY_UNIT_FIELDS}
  units = rnn.units_with_legacy_fields(module.sigmoid, module.tanh, type(module).__name__,
                                       **legacy)
  return tuple(unit if c is None else unit._replace(c=c)
               for unit, c in zip(units, (_setting("sigmoid_c"), _setting("tanh_c"))))


def _weights(module, inputs, hidden_features: int):
  """Declares (or fetches) the parameters of the module's cell; (inputs, weights) promoted.

  No ``p`` is declared when no unit is noisy (:func:`rnn.declared_shapes`).
  """
  spec = module._spec
  inits = rnn.initializers(spec, kernel_init=module.kernel_init,
                           recurrent_kernel_init=module.recurrent_kernel_init,
                           bias_init=module.bias_init, p_init=module.p_init)
  shapes = rnn.declared_shapes(spec, inputs.shape[-1], hidden_features, module.noisy_gates)
  params = {name: module.param(name, inits[name], shape, module.param_dtype)
            for name, shape in shapes.items()}
  inputs, *values = promote_dtype(inputs, *params.values(), dtype=module.dtype)
  return inputs, rnn.weights_from_params(spec, dict(zip(params, values)))


def _in_features(module) -> int | None:
  """The input size the existing parameters expect; None while initialising."""
  if module.has_variable("params", "input_kernel"):
    return module.get_variable("params", "input_kernel").shape[0]
  return None


def _with_statistics(module: nn.Module, call: Callable[[bool], Any]) -> Any:
  """``call(statistics)``'s result, its unit statistics sown when asked for (flax's idiom).

  The saturation diagnostics are computed only when the ``"intermediates"``
  collection is mutable (``apply(..., mutable=["intermediates"])``), and not while
  initializing: otherwise ``call(False)`` traces exactly what it did without them.
  """
  if module.is_initializing() or not module.is_mutable_collection("intermediates"):
    return call(False)
  *result, unit_statistics = call(True)
  module.sow("intermediates", "unit_statistics", unit_statistics)
  return result[0] if len(result) == 1 else tuple(result)


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
        name=type(module).__name__, path="/" + "/".join(module.path) if module.path else "/",
        collection=module.rng_collection))
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
  sigmoid: activations.UnitNoise = activations.SIGMOID_UNIT
  tanh: activations.UnitNoise = activations.TANH_UNIT
  deterministic: bool = False
  kernel_init: Initializer = nn.linear.default_kernel_init
  recurrent_kernel_init: Initializer = initializers.orthogonal()
  bias_init: Initializer = initializers.zeros_init()
  p_init: Initializer = activations.p_init
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  carry_init: Initializer = initializers.zeros_init()
  rng_collection: str = "noise"
  # Deprecated: the flat form of `sigmoid` and `tanh`, kept for one release.
  sigmoid_kind: str | None = None
  sigmoid_mode: str | None = None
  sigmoid_c: Any = None
  sigmoid_alpha: Any = None
  sigmoid_nanil_scale: str | None = None
  tanh_kind: str | None = None
  tanh_mode: str | None = None
  tanh_c: Any = None
  tanh_alpha: Any = None
  tanh_nanil_scale: str | None = None


class _NoisyCellBase(_NoiseFields, nn.RNNCellBase):
  """A noisy cell: one feature axis, as the Flax cells; ``_spec`` is its kind."""

  _spec: ClassVar[rnn.CellSpec]

  @property
  def num_feature_axes(self) -> int:
    return 1


class _NoisyRNNCell(_NoisyCellBase):
  """The step and carry of the LSTM and GRU cells (documented on each)."""

  @nn.compact
  def __call__(self, carry, inputs, *, deterministic: bool | None = None,
               rng: jax.Array | None = None):
    """One step.

    Args:
      carry: from :meth:`initialize_carry`: ``(cell, hidden)`` (LSTM) or ``hidden``
        (GRU), each ``(..., H)``.
      inputs: ``(..., D)``.
      deterministic: overrides the field of the same name if given.
      rng: explicit noise key for this step (instead of the ``"noise"`` stream).

    Returns:
      ``(new_carry, hidden)``.
    """
    inputs = checks.step_input(inputs, _in_features(self))
    deterministic = _deterministic(self, deterministic)
    sigmoid, tanh = _units(self)
    key = _noise_key(self, deterministic or not self.noisy_gates, rng)
    # As flax's cells: the hidden size is the carry's, `features` sizes initialize_carry.
    hidden_features = jax.tree.leaves(carry)[-1].shape[-1]
    inputs, weights = _weights(self, inputs, hidden_features)
    x_proj = rnn.input_projection(inputs, weights.input_kernel, weights.bias)
    return _with_statistics(self, lambda statistics: rnn.step(
        self._spec, carry, x_proj, weights, key, sigmoid=sigmoid, tanh=tanh,
        noisy_gates=self.noisy_gates, deterministic=deterministic, statistics=statistics))

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]):
    """The carry for inputs of ``input_shape``: each part from ``carry_init`` (zeros).

    Each part has shape ``input_shape[:-1] + (features,)``.
    """
    num_parts = len(self._spec.carry_parts)
    keys = jax.random.split(rng, num_parts) if num_parts > 1 else (rng,)
    shape = tuple(input_shape[:-1]) + (self.features,)
    return rnn.carry_from_parts(
        self._spec, [self.carry_init(key, shape, self.param_dtype) for key in keys])


class NoisyLSTMCell(_NoisyRNNCell):
  r"""Noisy LSTM cell: every gate a noisy hard-sigmoid, every tanh a noisy hard-tanh.

  .. math::
    i, f, o = \phi_s(\cdot), \quad g = \phi_t(\cdot), \quad
    c_t = f \odot c_{t-1} + i \odot g, \quad h_t = o \odot \phi_t(c_t)

  with the noisy units of Gulcehre et al. (2016), Eq. 12, and one learned ``p``
  per unit per gate (see :func:`noisy_jax._src.rnn.lstm_step`). A drop-in for
  ``flax.linen.OptimizedLSTMCell`` under ``flax.linen.RNN``; the noise comes from
  the ``"noise"`` RNG stream, which ``nn.RNN`` must split per step: use
  :func:`noisy_rnn` (or ``split_rngs=RNN_SPLIT_RNGS``). A cell that cannot see the
  stream raises, so the same noise is never reused silently at every step.

  Parameters: ``input_kernel (D, 4H)``, ``recurrent_kernel (H, 4H)``, ``bias (4H,)``
  (gate blocks ``[input, forget, output, candidate]``), ``p_gates (3H,)``,
  ``p_candidate (H,)``, ``p_cell (H,)`` -- the same as :class:`NoisyLSTM`'s. With
  no noisy gate (``noisy_gates=()``, e.g. the :data:`PLAIN` fields, flax's
  ``LSTMCell``) there is no ``p``; :func:`params_from_flax` converts flax's
  parameters. ``init`` needs no noise key (no parameter depends on a draw).

  Attributes:
    features: the hidden size ``H`` of :meth:`initialize_carry`. As in flax's
      cells, a step takes ``H`` from its carry.
    noisy_gates: which of ``("input", "forget", "output", "candidate", "cell")``
      are noisy; the others use the plain activation of their unit's ``kind``.
    sigmoid: :class:`~noisy_jax.UnitNoise` of the gates: ``kind``
      ``"hard_sigmoid"`` (paper) or ``"sigmoid"``, ``mode`` (default ``"nah"``,
      the reference ``NSigmoidP``), ``c`` (``None``: the reference default 0.15
      for NAN/NAH), ``alpha`` (``None``: 1.1), ``nanil_scale``. ``c`` may be a
      traced jax array, so an annealed value does not retrace (a traced value is
      not checked: it must be >= 0); :func:`noise_settings` sets it for a whole
      model.
    tanh: :class:`~noisy_jax.UnitNoise` of the tanh units: ``kind``
      ``"hard_tanh"`` (paper) or ``"tanh"``, ``mode`` (default ``"nan"``, the
      reference ``NTanhP``), ``c`` (``None``: 0.5 for NAN/NAH), ``alpha``
      (``None``: 1.15), ``nanil_scale``.
    deterministic: use the noise's expectation (paper Eq. 13), for evaluation.
      A field because ``nn.RNN`` passes no call arguments to its cell; or set it
      for a whole model with :func:`noise_settings`.
    kernel_init: initializer of each gate's block of the input kernel.
    recurrent_kernel_init: initializer of each gate's block of the recurrent kernel.
    bias_init: initializer of the biases.
    p_init: initializer of the learned ``p`` (U[-1, 1], paper Sec. 6).
    dtype: computation dtype (default: inferred from inputs and parameters).
    param_dtype: parameter dtype.
    carry_init: initializer of each part of :meth:`initialize_carry` (zeros).
    rng_collection: the RNG stream the noise is drawn from.
    sigmoid_kind, sigmoid_mode, sigmoid_c, sigmoid_alpha, sigmoid_nanil_scale,
    tanh_kind, tanh_mode, tanh_c, tanh_alpha, tanh_nanil_scale: deprecated flat
      forms of ``sigmoid`` and ``tanh`` (a ``DeprecationWarning``; removed in the
      next release).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import noisy_jax.nn
    >>> cell = noisy_jax.nn.NoisyLSTMCell(features=4)
    >>> x = jnp.ones((2, 3))
    >>> carry = cell.initialize_carry(jax.random.key(0), x.shape)
    >>> keys = {"params": jax.random.key(1), "noise": jax.random.key(2)}
    >>> variables = cell.init(keys, carry, x)
    >>> (cell_state, h), y = cell.apply(variables, carry, x, rngs={"noise": jax.random.key(3)})
    >>> y.shape
    (2, 4)

  References:
    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, 2016.
  """

  noisy_gates: Sequence[str] = rnn.LSTM_GATES
  _spec: ClassVar[rnn.CellSpec] = rnn.LSTM


class NoisyGRUCell(_NoisyRNNCell):
  r"""Noisy GRU cell: noisy hard-sigmoid reset/update gates, noisy hard-tanh candidate.

  .. math::
    r, u = \phi_s(\cdot), \quad n = \phi_t(x W_n + b_n + r \odot (h U_n + b_{hn})),
    \quad h_t = (1 - u) \odot n + u \odot h_{t-1}

  The equations of ``flax.linen.GRUCell`` with the noisy units of Gulcehre et al.
  (2016), Eq. 12 (see :func:`noisy_jax._src.rnn.gru_step`). Use under
  ``flax.linen.RNN`` via :func:`noisy_rnn`, as :class:`NoisyLSTMCell`.

  Parameters: ``input_kernel (D, 3H)``, ``recurrent_kernel (H, 3H)``, ``bias (3H,)``
  (blocks ``[reset, update, candidate]``), ``recurrent_bias (H,)``,
  ``p_gates (2H,)``, ``p_candidate (H,)`` -- the same as :class:`NoisyGRU`'s; no
  ``p`` without noisy gates, as :class:`NoisyLSTMCell`.

  Attributes:
    features: the hidden size ``H`` of :meth:`initialize_carry` (a step takes it
      from its carry, as flax's cells).
    noisy_gates: which of ``("reset", "update", "candidate")`` are noisy.
    sigmoid, tanh, deterministic, kernel_init, recurrent_kernel_init, bias_init,
    p_init, dtype, param_dtype, carry_init, rng_collection: as :class:`NoisyLSTMCell`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import noisy_jax.nn
    >>> cell = noisy_jax.nn.NoisyGRUCell(features=4, deterministic=True)
    >>> x = jnp.ones((2, 3))
    >>> carry = cell.initialize_carry(jax.random.key(0), x.shape)
    >>> variables = cell.init(jax.random.key(1), carry, x)
    >>> h, y = cell.apply(variables, carry, x)
    >>> bool((h == y).all()), y.shape
    (True, (2, 4))

  References:
    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, 2016.
  """

  noisy_gates: Sequence[str] = rnn.GRU_GATES
  _spec: ClassVar[rnn.CellSpec] = rnn.GRU


class _NoisySequenceBase(_NoiseFields):
  """The whole-sequence layers: shared fields and ``__call__``.

  A subclass sets ``noisy_gates`` and its kind, the class constant ``_spec``.
  """

  _spec: ClassVar[rnn.CellSpec]

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
    deterministic = _deterministic(self, deterministic)
    time_major = self.time_major if time_major is None else time_major
    inputs = checks.sequence_input(inputs, _in_features(self))
    sigmoid, tanh = _units(self)
    key = _noise_key(self, deterministic or not self.noisy_gates, rng,
                     num_steps=inputs.shape[0 if time_major else 1])
    inputs, weights = _weights(self, inputs, self.features)
    return _with_statistics(self, lambda statistics: rnn.layer_call(
        self, inputs, weights, key, sigmoid=sigmoid, tanh=tanh, deterministic=deterministic,
        time_major=time_major, initial_carry=initial_carry, seq_lengths=seq_lengths,
        return_carry=return_carry, reverse=reverse, keep_order=keep_order,
        statistics=statistics))


class NoisyLSTM(_NoisySequenceBase):
  r"""Fast whole-sequence noisy LSTM: same numbers as :class:`NoisyLSTMCell` under ``nn.RNN``.

  The input projections of all steps are one matmul outside the scan, each step is
  one fused ``(B, H) x (H, 4H)`` matmul plus one fused elementwise block, and the
  backward pass regenerates the noise from the per-step keys instead of storing
  it (see :func:`noisy_jax._src.rnn.lstm_sequence`). The parameters are those
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
    sigmoid, tanh, deterministic, kernel_init, recurrent_kernel_init, bias_init,
    p_init, dtype, param_dtype, carry_init, rng_collection: as :class:`NoisyLSTMCell`.
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

  noisy_gates: Sequence[str] = rnn.LSTM_GATES
  _spec: ClassVar[rnn.CellSpec] = rnn.LSTM


class NoisyGRU(_NoisySequenceBase):
  r"""Fast whole-sequence noisy GRU: same numbers as :class:`NoisyGRUCell` under ``nn.RNN``.

  One input matmul outside the scan, one ``(B, H) x (H, 3H)`` matmul per step, noise
  regenerated in the backward pass (see
  :func:`noisy_jax._src.rnn.gru_sequence`). Parameters as
  :class:`NoisyGRUCell`; the same noise as ``noisy_rnn(NoisyGRUCell(...))`` under
  the conditions of :class:`NoisyLSTM`, and the same note on initialisation.

  Attributes:
    noisy_gates: which of ``("reset", "update", "candidate")`` are noisy.
    features, sigmoid, tanh, deterministic, time_major, return_carry, reverse,
    keep_order, unroll and the initializer, dtype and stream fields: as
    :class:`NoisyLSTM`.

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

  noisy_gates: Sequence[str] = rnn.GRU_GATES
  _spec: ClassVar[rnn.CellSpec] = rnn.GRU


class _ParamGroup(nn.Module):
  """Declares one parameter per entry of ``shapes``; returns them as a dict."""

  shapes: Mapping[str, tuple[int, ...]]
  inits: Mapping[str, Initializer]
  param_dtype: Dtype

  @nn.compact
  def __call__(self) -> dict[str, jax.Array]:
    return {name: self.param(name, self.inits[name], shape, self.param_dtype)
            for name, shape in self.shapes.items()}


class NTMCell(_NoisyCellBase):
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
    sigmoid, tanh, deterministic, kernel_init, recurrent_kernel_init, bias_init,
    p_init, dtype, param_dtype, rng_collection: as
    :class:`~noisy_jax.nn.NoisyLSTMCell`; ``kernel_init`` also initialises
    ``head_kernel``, and ``sigmoid`` also configures the heads' gates. The ``c``
    of ``sigmoid`` and ``tanh`` may be traced (annealed without recompiling).

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
  clip_value: float | None = ntm.CLIP_VALUE
  memory_init: float = ntm.MEMORY_INIT
  initial_state_init: Initializer = initializers.normal(0.1)

  @nn.compact
  def __call__(self, carry: ntm.NTMState, inputs: jax.typing.ArrayLike, *,
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
    inputs = checks.step_input(inputs, None)
    deterministic = _deterministic(self, deterministic)
    shapes = ntm.weight_shapes(self.controller, inputs.shape[-1], self.features,
                               self.memory_size, self.memory_width, self.num_read_heads,
                               self.num_write_heads, self.shift_range)
    sigmoid, tanh = _units(self)
    no_noisy_gates = self.noisy_gates is not None and not self.noisy_gates  # None: all
    key = _noise_key(self, deterministic or no_noisy_gates, rng)
    inits = ntm.initializers_for(self.controller, self.kernel_init,
                                 self.recurrent_kernel_init, self.bias_init, self.p_init,
                                 self.initial_state_init)
    params = {
        "controller": _ParamGroup(shapes["controller"], inits["controller"],
                                  self.param_dtype, name="controller")(),
        **{name: self.param(name, inits[name], shape, self.param_dtype)
           for name, shape in shapes.items() if name != "controller"},
    }
    leaves, treedef = jax.tree.flatten(params)
    inputs, *leaves = promote_dtype(inputs, *leaves, dtype=self.dtype)
    params = jax.tree.unflatten(treedef, leaves)
    return _with_statistics(self, lambda statistics: ntm.ntm_step(
        carry, inputs, ntm.assemble_weights(self.controller, params), key,
        controller=self.controller, shift_range=self.shift_range, sigmoid=sigmoid,
        tanh=tanh, noisy_gates=self.noisy_gates, clip_value=self.clip_value,
        deterministic=deterministic, statistics=statistics))

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> ntm.NTMState:
    """A fresh :class:`NTMState` for inputs of ``input_shape`` (see :func:`initial_state`).

    ``rng`` is unused: the initial memory is constant and the learned initial
    reads and weightings are parameters, applied by the first step.
    """
    del rng
    return ntm.initial_state(
        tuple(input_shape[:-1]), controller=self.controller, features=self.features,
        memory_size=self.memory_size, memory_width=self.memory_width,
        num_read_heads=self.num_read_heads, num_write_heads=self.num_write_heads,
        memory_init=self.memory_init, dtype=self.param_dtype,
    )
