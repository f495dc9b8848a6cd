"""Noisy activation functions (Gulcehre, Moczulski, Denil and Bengio, 2016).

Pure, jit/vmap/grad-safe functions. Every noisy variant of the paper's Sec. 6
(NAN, NAH, NANI, NANIL, NANIS) on hard-tanh, hard-sigmoid, tanh and sigmoid, the
test-time expectation (Eq. 13), and the helpers they are built from: the hard
activations (Eqs. 3-4), their linearizations (Eqs. 1-2) and the saturation
magnitude (Eq. 8).
"""

import math
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from noisy_jax._src import checks
from noisy_jax._src import noise

Kind = Literal["hard_tanh", "hard_sigmoid", "tanh", "sigmoid"]
Mode = Literal["nan", "nah", "nani", "nanil", "nanis"]

KINDS = checks.KINDS
MODES = checks.MODES
# Modes that add noise to the output (Eq. 12) vs. to the input (Eqs. 14-15).
OUTPUT_NOISE_MODES = ("nan", "nah")
INPUT_NOISE_MODES = ("nani", "nanil", "nanis")
# How NANIL learns its input-noise scale: "reference" (default) is the reference
# code's c softplus(p |Delta| / (|xi| + 1e-10)); "paper" is Eq. 9 read literally,
# which injects no noise at the paper's c values (see noisy_activation's Note).
NANIL_SCALES = checks.NANIL_SCALES
NanilScale = Literal["reference", "paper"]
DEFAULT_NANIL_SCALE = "reference"

# E|xi| for xi ~ N(0, 1): the test-time value of half-normal noise (Eq. 13).
HALF_NORMAL_MEAN = math.sqrt(2.0 / math.pi)

# Reference-code defaults (caglar/noisy_units, codes/theano/nunits.py).
_REFERENCE_ALPHA = {"tanh": 1.15, "sigmoid": 1.1}  # NTanhP, NSigmoidP
_REFERENCE_C = {
    ("nan", "tanh"): 0.5,  # NTanhP
    ("nah", "tanh"): 0.5,
    ("nan", "sigmoid"): 0.15,  # NSigmoidP
    ("nah", "sigmoid"): 0.15,
}
_REFERENCE_INPUT_C = {"nani": 0.05, "nanil": 0.25, "nanis": 0.25}


def _family(kind: str) -> str:
  return "tanh" if kind in checks.TANH_KINDS else "sigmoid"


def hard_sigmoid(x: jax.typing.ArrayLike) -> jax.Array:
  r"""Hard-sigmoid of the paper: the clipped linearization of the sigmoid.

  .. math::
    \mathrm{hard\_sigmoid}(x) = \max(\min(0.25 x + 0.5, 1), 0)
    \quad \text{(Gulcehre et al., 2016, Eq. 3)}

  Unlike ``jax.nn.hard_sigmoid`` (slope 1/6), the slope is 1/4, matching the
  sigmoid's derivative at 0. The gradient is 1/4 on the closed interval
  ``[-2, 2]`` (kinks included) and 0 outside.

  Args:
    x: floating-point input array.

  Returns:
    An array of the same shape and dtype as ``x``.

  Example:
    >>> import jax.numpy as jnp
    >>> import noisy_jax
    >>> noisy_jax.hard_sigmoid(jnp.array([-3.0, 0.0, 1.0, 3.0]))
    Array([0.  , 0.5 , 0.75, 1.  ], dtype=float32)

  References:
    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, 2016.
  """
  x = checks.float_array(x)
  return jnp.where(x > 2, 1.0, jnp.where(x < -2, 0.0, 0.25 * x + 0.5)).astype(x.dtype)


def hard_tanh(x: jax.typing.ArrayLike) -> jax.Array:
  r"""Hard-tanh: the clipped linearization of tanh.

  .. math::
    \mathrm{hard\_tanh}(x) = \max(\min(x, 1), -1)
    \quad \text{(Gulcehre et al., 2016, Eq. 4)}

  ``jax.nn.hard_tanh`` (the same function) after a dtype check: integer inputs are
  refused instead of silently computed. The gradient is 1 on the closed interval
  ``[-1, 1]`` (kinks included) and 0 outside.

  Args:
    x: floating-point input array.

  Returns:
    An array of the same shape and dtype as ``x``.

  Raises:
    TypeError: integer ``x``.

  Example:
    >>> import jax.numpy as jnp
    >>> import noisy_jax
    >>> noisy_jax.hard_tanh(jnp.array([-3.0, 0.5, 3.0]))
    Array([-1. ,  0.5,  1. ], dtype=float32)

  References:
    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, 2016.
  """
  return jax.nn.hard_tanh(checks.float_array(x))


def _activation(x: jax.Array, kind: str) -> jax.Array:
  if kind == "hard_tanh":
    return hard_tanh(x)
  if kind == "hard_sigmoid":
    return hard_sigmoid(x)
  if kind == "tanh":
    return jnp.tanh(x)
  return jax.nn.sigmoid(x)


def _linear(x: jax.Array, kind: str) -> jax.Array:
  return x if _family(kind) == "tanh" else 0.25 * x + 0.5


def activation(x: jax.typing.ArrayLike, *, kind: Kind = "hard_tanh") -> jax.Array:
  r"""The saturating activation :math:`h(x)` named by ``kind``.

  Args:
    x: floating-point input array.
    kind: one of ``"hard_tanh"``, ``"hard_sigmoid"``, ``"tanh"``, ``"sigmoid"``.

  Returns:
    :math:`h(x)`, same shape and dtype as ``x``.
  """
  checks.choice(kind, "kind", KINDS)
  return _activation(checks.float_array(x), kind)


def linearization(x: jax.typing.ArrayLike, *, kind: Kind = "hard_tanh") -> jax.Array:
  r"""First-order Taylor expansion :math:`u(x)` of the activation about 0.

  .. math::
    u_s(x) = 0.25 x + 0.5 \ \text{(Eq. 1)}, \qquad u_t(x) = x \ \text{(Eq. 2)}

  ``u_s`` serves the sigmoid kinds, ``u_t`` the tanh kinds.

  Args:
    x: floating-point input array.
    kind: one of ``"hard_tanh"``, ``"hard_sigmoid"``, ``"tanh"``, ``"sigmoid"``.

  Returns:
    :math:`u(x)`, same shape and dtype as ``x``.

  Example:
    >>> import jax.numpy as jnp
    >>> import noisy_jax
    >>> noisy_jax.activations.linearization(jnp.array([4.0]), kind="sigmoid")
    Array([1.5], dtype=float32)
  """
  checks.choice(kind, "kind", KINDS)
  return _linear(checks.float_array(x), kind)


def saturation(x: jax.typing.ArrayLike, *, kind: Kind = "hard_tanh") -> jax.Array:
  r"""Saturation magnitude :math:`\Delta = h(x) - u(x)`.

  .. math::
    \Delta = h(x) - u(x) \quad \text{(Eq. 8)}

  Exactly zero where a hard activation is unsaturated (:math:`|x| \le x_t`).

  Args:
    x: floating-point input array.
    kind: one of ``"hard_tanh"``, ``"hard_sigmoid"``, ``"tanh"``, ``"sigmoid"``.

  Returns:
    :math:`\Delta`, same shape and dtype as ``x``.

  Example:
    >>> import jax.numpy as jnp
    >>> import noisy_jax
    >>> noisy_jax.activations.saturation(jnp.array([0.5, 3.0]))
    Array([ 0., -2.], dtype=float32)
  """
  checks.choice(kind, "kind", KINDS)
  x = checks.float_array(x)
  return _activation(x, kind) - _linear(x, kind)


def threshold(kind: Kind = "hard_tanh") -> float:
  """Saturation threshold :math:`x_t`: 1 for the tanh kinds, 2 for the sigmoid kinds.

  The paper (Sec. 2) defines :math:`x_t` for the hard activations only. Giving the
  smooth kinds (``"tanh"``, ``"sigmoid"``) the same values is this library's own
  extension: it is where their linearization :math:`u(x)` leaves the range of
  :math:`h`, and it is the threshold NANIS (Eq. 15) uses for them.
  """
  checks.choice(kind, "kind", KINDS)
  return 1.0 if _family(kind) == "tanh" else 2.0


def reference_defaults(mode: Mode = "nan", kind: Kind = "hard_tanh") -> tuple[float, float]:
  """The reference code's defaults ``(c, alpha)`` for ``mode`` and ``kind``.

  ============  ==============  =====  ======  =============================
  mode          kind            c      alpha   reference-code function
  ============  ==============  =====  ======  =============================
  nan, nah      tanh kinds      0.5    1.15    ``NTanhP``
  nan, nah      sigmoid kinds   0.15   1.1     ``NSigmoidP``
  nani          any             0.05   --      ``NHardTanh``/``NHardSigmoid``
  nanil         any             0.25   --      ``NTanhPInp``/``NSigmoidPInp``
  nanis         any             0.25   --      ``NHardTanhSat``
  ============  ==============  =====  ======  =============================

  alpha is unused by the input-noise modes; the returned value (the kind's
  ``NTanhP``/``NSigmoidP`` default) is only for symmetry.

  Args:
    mode: noise variant, one of ``"nan", "nah", "nani", "nanil", "nanis"``.
    kind: activation, one of ``"hard_tanh", "hard_sigmoid", "tanh", "sigmoid"``.

  Returns:
    A tuple ``(c, alpha)`` of Python floats.

  Example:
    >>> import noisy_jax
    >>> noisy_jax.activations.reference_defaults("nah", "hard_sigmoid")
    (0.15, 1.1)
  """
  checks.choice(mode, "mode", MODES)
  checks.choice(kind, "kind", KINDS)
  family = _family(kind)
  alpha = _REFERENCE_ALPHA[family]
  if mode in OUTPUT_NOISE_MODES:
    return _REFERENCE_C[(mode, family)], alpha
  return _REFERENCE_INPUT_C[mode], alpha


class UnitNoise(NamedTuple):
  """A noisy unit's settings: its activation :math:`h`, noise variant, ``c`` and ``alpha``.

  The one type for "how a unit is noisy" across the package: the pure steps take
  it, the Linen and NNX modules hold one per unit family (``sigmoid=`` for the
  gates, ``tanh=`` for the tanh units), and the experiment configs build it.

  Attributes:
    kind: the activation :math:`h`: ``"hard_sigmoid"``/``"sigmoid"`` for gates,
      ``"hard_tanh"``/``"tanh"`` for the tanh units.
    mode: ``"nan"``, ``"nah"``, ``"nani"``, ``"nanil"`` or ``"nanis"``.
    c: the paper's :math:`c`; ``None`` takes the reference code's default for
      ``kind`` and ``mode`` (:func:`reference_defaults`). A scalar or per-unit
      array; may be traced (then it is not checked: it must be >= 0).
    alpha: the paper's :math:`\\alpha`; ``None`` takes the reference default.
    nanil_scale: how ``"nanil"`` learns its scale, ``"reference"`` (default) or
      ``"paper"`` (see :func:`noisy_activation`); unused by other modes.

  Example:
    >>> import noisy_jax
    >>> float(noisy_jax.UnitNoise("hard_tanh", "nan", c=0.5).resolved((4,)).alpha)
    1.15
  """

  kind: Kind
  mode: Mode
  c: Any = None
  alpha: Any = None
  nanil_scale: NanilScale = DEFAULT_NANIL_SCALE

  def resolved(self, shape: tuple[int, ...], prefix: str | None = None) -> "UnitNoise":
    """These settings with the reference defaults filled in, checked against ``shape``.

    ``prefix`` (e.g. ``"sigmoid"``) names the fields in errors (``sigmoid.c``).
    """
    name = lambda field: field if prefix is None else f"{prefix}.{field}"
    default_c, default_alpha = reference_defaults(self.mode, self.kind)
    c = default_c if self.c is None else self.c
    alpha = default_alpha if self.alpha is None else self.alpha
    return self._replace(c=checks.noise_scale(c, shape, name("c")),
                         alpha=checks.alpha(alpha, shape, name("alpha")))


# The reference code's units (nunits.py): NSigmoidP is half-normal, NTanhP normal.
SIGMOID_UNIT = UnitNoise("hard_sigmoid", "nah")
TANH_UNIT = UnitNoise("hard_tanh", "nan")


def p_init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
  """Initializer for the learned ``p`` of Eq. 9: uniform on ``[-1, 1]``.

  "In all our experiments, we initialized p uniform randomly from the range
  [-1, 1]" (Gulcehre et al., 2016, Sec. 6). Has the signature of a
  ``jax.nn.initializers`` initializer, so it serves Flax ``self.param`` directly.

  Args:
    key: a PRNG key.
    shape: shape of ``p``, e.g. ``(num_units,)`` for one ``p`` per unit.
    dtype: floating dtype of ``p``.

  Returns:
    An array of ``shape`` and ``dtype`` drawn from U[-1, 1].

  Example:
    >>> import jax
    >>> import noisy_jax
    >>> p = noisy_jax.p_init(jax.random.key(0), (4,))
    >>> bool(((p >= -1) & (p <= 1)).all())
    True
  """
  return jax.random.uniform(key, shape, dtype, minval=-1.0, maxval=1.0)


def _direction(x: jax.Array, alpha: jax.Array) -> jax.Array:
  # d(x) = -sgn(x) sgn(1 - alpha) with sgn(0) = 1, except that the factor
  # sgn(1 - alpha) is taken as +1 for alpha <= 1 (reference code), so that
  # alpha = 1 keeps the noise on.
  sign_x = jnp.where(x >= 0, 1.0, -1.0)
  sign_alpha = jnp.where(alpha > 1, -1.0, 1.0)
  return -sign_x * sign_alpha


def _noise_std(delta: jax.Array, p: jax.Array, c: jax.Array) -> jax.Array:
  # Eq. 9: sigma(x) = c (g(p Delta) - 0.5)^2 with g the logistic sigmoid.
  return c * jnp.square(jax.nn.sigmoid(p * delta) - 0.5)


def _output_noise_terms(x, p, c, alpha, kind):
  """Returns the noise-free part and the signed noise scale d(x) sigma(x) of Eq. 12."""
  infinite = jnp.isinf(x)
  # An infinite x is handled apart, so that no inf - inf reaches a value or a gradient.
  finite_x = jnp.where(infinite, 0.0, x)
  u = _linear(finite_x, kind)
  h = _activation(x, kind)
  delta = h - u  # finite everywhere; its values at infinite x are replaced below
  # Eq. 11's u + alpha Delta equals Eq. 12's alpha h + (1 - alpha) u, and is exactly
  # u(x) where Delta = 0 (the unsaturated regime), with no rounding.
  mean = u + alpha * delta
  # At x = +-inf: the limit of Eq. 12, h(x) at alpha = 1 (not 0 * inf), else +-inf.
  linear_limit = (1 - alpha) * jnp.where(infinite & (alpha != 1), x, 0.0)
  mean = jnp.where(infinite, alpha * h + linear_limit, mean)
  # Delta -> -sgn(x) inf as x -> +-inf, so g(p Delta) - 0.5 -> -sgn(p x) / 2.
  saturated_std = c * jnp.square(0.5 * jnp.sign(p))
  std = jnp.where(infinite, saturated_std, _noise_std(delta, p, c))
  return mean, _direction(x, alpha) * std


def _nanil_std(delta, p, c, xi, nanil_scale):
  """NANIL's learned input-noise scale sigma(x) (see noisy_activation's Note)."""
  if nanil_scale == "paper":
    return _noise_std(delta, p, c)
  return c * jax.nn.softplus(p * jnp.abs(delta) / (jnp.abs(xi) + 1e-10))


def _sample(x, xi, p, c, alpha, mode, kind, nanil_scale):
  """The noisy unit at the draw ``xi`` (no remat: autodiff keeps what it needs of it)."""
  if mode in OUTPUT_NOISE_MODES:
    # Eq. 12: alpha h(x) + (1 - alpha) u(x) + d(x) sigma(x) eps.
    mean, scale = _output_noise_terms(x, p, c, alpha, kind)
    eps = jnp.abs(xi) if mode == "nah" else xi
    return mean + scale * eps
  # Finite noise cannot move an infinite input; computing the noisy input from a
  # finite stand-in keeps inf - inf out of the value and the gradient.
  infinite = jnp.isinf(x)
  finite_x = jnp.where(infinite, 0.0, x)
  if mode == "nani":
    # Eq. 14 with a fixed sigma = c.
    shift = c * xi
  elif mode == "nanis":
    # Eq. 15: input noise only where the unit saturates, |x| >= x_t.
    shift = jnp.where(jnp.abs(finite_x) >= threshold(kind), c * xi, 0.0)
  else:
    # nanil: Eq. 14 with a learned sigma.
    delta = _activation(finite_x, kind) - _linear(finite_x, kind)
    shift = _nanil_std(delta, p, c, xi, nanil_scale) * xi
  return _activation(jnp.where(infinite, x, finite_x + shift), kind)


# Everything the sample depends on is (x, key, p, c, alpha); jax.checkpoint makes
# the backward pass recompute the noise from the key instead of saving it. The jit
# keeps eager-mode gradients inside one traced remat, which the key-reuse checker
# (jax_debug_key_reuse) knows does not consume the key a second time.
def _sample_from_key(x, key, p, c, alpha, mode, kind, nanil_scale, noise_impl):
  xi = noise.standard_normal(key, x.shape, x.dtype, noise_impl=noise_impl)
  return _sample(x, xi, p, c, alpha, mode, kind, nanil_scale)


_rematted_sample = jax.jit(jax.checkpoint(_sample_from_key, static_argnums=(5, 6, 7, 8)),
                           static_argnums=(5, 6, 7, 8))


def _expectation(x, p, c, alpha, mode, kind):
  """The test-time value of Eq. 13: the noise replaced by its mean."""
  if mode in INPUT_NOISE_MODES:
    return _activation(x, kind)
  mean, scale = _output_noise_terms(x, p, c, alpha, kind)
  if mode == "nan":  # E[xi] = 0: sigma(x) is not needed (and not computed)
    return mean
  return mean + scale * HALF_NORMAL_MEAN


def _prepare(x, p, unit: UnitNoise):
  """The checked inputs of a noisy unit in its compute dtype, its resolved unit, x's dtype."""
  checks.choice(unit.mode, "mode", MODES)
  checks.choice(unit.kind, "kind", KINDS)
  checks.choice(unit.nanil_scale, "nanil_scale", NANIL_SCALES)
  x = checks.float_array(x)
  unit = unit.resolved(x.shape)
  p = checks.broadcastable(p, "p", x.shape)
  out_dtype = x.dtype
  compute_dtype = jnp.promote_types(x.dtype, jnp.float32)
  x, p, c, alpha = (jnp.asarray(v, compute_dtype) for v in (x, p, unit.c, unit.alpha))
  return x, p, c, alpha, unit, out_dtype


class UnitStatistics(NamedTuple):
  """What a group of noisy units did in one forward pass: saturation, noise, spread of ``p``.

  The saturation diagnostics (:func:`unit_statistics`): each field a scalar (or
  an array with the leading axes of a batch of runs). The Flax modules sow one
  per group of units into the ``"intermediates"`` collection when it is mutable.

  Attributes:
    saturated: the fraction of the group's pre-activations in saturation,
      :math:`|x| \\ge x_t` (:func:`threshold`).
    noise_std: the mean standard deviation :math:`\\sigma` of the noise the
      units injected (:func:`noise_std`); 0 where no noise was drawn.
    p_spread: the standard deviation of the learned ``p`` over the group's
      units (how far Eq. 9's per-unit slopes have moved apart); 0 where no noise
      was drawn.
  """

  saturated: jax.Array
  noise_std: jax.Array
  p_spread: jax.Array


def noise_std(x: jax.typing.ArrayLike, p: jax.typing.ArrayLike, unit: UnitNoise,
              xi: jax.typing.ArrayLike | None = None) -> jax.Array:
  r"""The standard deviation :math:`\sigma` of the noise ``unit`` injects at ``x``.

  Output-noise modes (``"nan"``, ``"nah"``): Eq. 9's
  :math:`\sigma(x) = c\,(g(p\Delta) - 0.5)^2`, the scale of :math:`\epsilon` in
  Eq. 12. Input-noise modes: the scale of :math:`\xi` added to ``x``: ``c``
  (``"nani"``, Eq. 14), ``c`` where :math:`|x| \ge x_t` and 0 elsewhere
  (``"nanis"``, Eq. 15), and NANIL's learned scale (see :func:`noisy_activation`),
  which for ``nanil_scale="reference"`` depends on the draw ``xi``.

  Args:
    x: floating-point pre-activation.
    p: the learned ``p``, broadcasting to ``x``.
    unit: the unit's :class:`UnitNoise`; ``c=None`` takes the reference default.
    xi: the standard normal draw of ``x``'s shape; needed only by NANIL's
      reference scale.

  Returns:
    :math:`\sigma` per element, of ``x``'s shape, in its compute dtype.

  Raises:
    ValueError: NANIL's reference scale without ``xi``.

  Example:
    >>> import jax.numpy as jnp
    >>> import noisy_jax
    >>> unit = noisy_jax.UnitNoise("hard_tanh", "nan", c=0.5)
    >>> noisy_jax.activations.noise_std(jnp.array([0.5, 3.0]), 1.0, unit).round(4)
    Array([0.    , 0.0725], dtype=float32)
  """
  x, p, c, _, unit, _ = _prepare(x, p, unit)
  mode, kind = unit.mode, unit.kind
  finite_x = jnp.where(jnp.isinf(x), jnp.sign(x) * jnp.finfo(x.dtype).max, x)
  delta = _activation(finite_x, kind) - _linear(finite_x, kind)
  if mode in OUTPUT_NOISE_MODES or (mode == "nanil" and unit.nanil_scale == "paper"):
    return _noise_std(delta, p, c)
  if mode == "nani":
    return jnp.broadcast_to(c, x.shape)
  if mode == "nanis":
    return jnp.where(saturated(x, kind=kind), c, 0.0)
  if xi is None:
    raise ValueError("noise_std of NANIL's reference scale needs the draw. Fix: pass xi=, "
                     "the standard normal draw the unit used.")
  return _nanil_std(delta, p, c, jnp.asarray(xi, x.dtype), unit.nanil_scale)


def saturated(x: jax.typing.ArrayLike, *, kind: Kind = "hard_tanh") -> jax.Array:
  r"""Whether each unit is in saturation: :math:`|x| \ge x_t` (:func:`threshold`).

  Example:
    >>> import jax.numpy as jnp
    >>> import noisy_jax
    >>> noisy_jax.activations.saturated(jnp.array([1.5, -2.0, 3.0]), kind="hard_sigmoid")
    Array([False,  True,  True], dtype=bool)
  """
  return jnp.abs(checks.float_array(x)) >= threshold(kind)


def unit_statistics(x: jax.typing.ArrayLike, p: jax.typing.ArrayLike, unit: UnitNoise, *,
                    seed: jax.Array | None = None, noisy: bool = True,
                    where: jax.typing.ArrayLike | None = None) -> UnitStatistics:
  """The :class:`UnitStatistics` of one group of units over all elements of ``x``.

  Args:
    x: the group's pre-activations, ``(..., units)``.
    p: its learned ``p``, one per unit (broadcasting to ``x``); ``p_spread`` is
      its standard deviation.
    unit: its :class:`UnitNoise`.
    seed: what :func:`noisy_unit` drew the units' noise from: its ``uint32[2]``
      seed words or the draw itself. Only NANIL's reference scale reads it (its
      :math:`\\sigma` depends on the draw), and draws the same numbers again.
    noisy: False for a quiet group, or a pass without noise: ``noise_std`` and
      ``p_spread`` are then 0.
    where: optional mask broadcasting to ``x``: only its True elements count
      (padding steps of a sequence do not).

  Returns:
    The group's :class:`UnitStatistics`, scalars.

  Example:
    >>> import jax.numpy as jnp
    >>> import noisy_jax
    >>> unit = noisy_jax.UnitNoise("hard_tanh", "nani", c=0.05)
    >>> stats = noisy_jax.activations.unit_statistics(jnp.array([0.5, 3.0]), 0.0, unit)
    >>> float(stats.saturated), float(stats.noise_std)
    (0.5, 0.05000000074505806)
  """
  x = checks.float_array(x)
  weight = jnp.ones(x.shape, jnp.float32)
  if where is not None:
    weight = weight * jnp.asarray(where, jnp.float32)
  count = jnp.maximum(weight.sum(), 1.0)
  mean = lambda values: (values * weight).sum() / count
  zero = jnp.zeros((), jnp.float32)
  if not noisy:
    return UnitStatistics(mean(saturated(x, kind=unit.kind)), zero, zero)
  xi = None
  if unit.mode == "nanil" and unit.nanil_scale == "reference":
    if seed is None:
      raise ValueError("unit_statistics of NANIL's reference scale needs the seed. Fix: "
                       "pass seed=, the seed words (or the draw) the units used.")
    xi = seed
    if not jnp.issubdtype(seed.dtype, jnp.floating):  # seed words: draw them again
      xi = noise.normal_from_seed(seed, x.shape, jnp.promote_types(x.dtype, jnp.float32))
  std = noise_std(x, p, unit, xi).astype(jnp.float32)
  return UnitStatistics(mean(saturated(x, kind=unit.kind)), mean(std),
                        jnp.std(jnp.asarray(p, jnp.float32)))


def _materialized_normal(seed, shape, dtype):
  """``noise.normal_from_seed`` as the output of a conditional, which XLA cannot fuse away.

  Both branches draw the same numbers; the predicate, True behind an optimization
  barrier, only makes the conditional opaque to XLA, so that the draw is computed
  once and read by every consumer. It does not depend on the seed, so under
  ``jax.vmap`` (seeds of a batch of runs) the conditional stays a conditional
  instead of becoming a select of both branches.
  """
  draw = lambda seed: noise.normal_from_seed(seed, shape, dtype)
  return jax.lax.cond(jax.lax.optimization_barrier(jnp.asarray(True)), draw, draw, seed)


def noisy_unit(x: jax.typing.ArrayLike, seed: jax.Array | None, p: jax.typing.ArrayLike,
               unit: UnitNoise, *, deterministic: bool = False,
               materialize: bool = False) -> jax.Array:
  """:func:`noisy_activation` of ``unit`` from seed words or a draw, for layers with their own backward.

  The same checks and numbers as ``noisy_activation(x, key, p, ...)`` with
  ``noise_impl="hash"``, where ``seed`` is the key's :func:`noise.seed_words`
  (a layer turns all its step keys into seed words at once, outside its loop), or
  the draw ``standard_normal(key, x.shape)`` itself (which a layer's backward pass
  generates for all its steps at once). Unlike :func:`noisy_activation` it has no
  ``jax.checkpoint`` of its own: differentiated on its own, the draw (or what the
  gradient needs of it) is kept as a residual. The layers call it inside their
  own remat (a single step) or their hand-written VJP (a whole sequence), which
  regenerate the draw once in the backward pass; the public function's remat
  nested there would draw it twice more.

  Args:
    x: floating-point pre-activation.
    seed: ``uint32[2]`` seed words, or a floating draw of ``x``'s shape; unused
      (may be None) if ``deterministic``.
    p: the learned ``p``, broadcasting to ``x``.
    unit: the unit's :class:`UnitNoise`.
    deterministic: return the test-time expectation (Eq. 13).
    materialize: draw from ``seed`` in a kernel of its own and keep the draw in
      memory for its consumers. Inside a loop's backward pass a draw has several
      consumers (the gradients of ``x`` and ``p`` and the recomputed value), and
      XLA:CPU fuses a copy of the generator's cheap arithmetic into each of them
      (``lax.optimization_barrier`` does not stop it); this draws once. Costs a
      small kernel and a store per draw where there is one consumer.

  Returns:
    An array of the same shape and dtype as ``x``.
  """
  x, p, c, alpha, unit, out_dtype = _prepare(x, p, unit)
  if deterministic:
    return _expectation(x, p, c, alpha, unit.mode, unit.kind).astype(out_dtype)
  if seed is None:
    raise ValueError("noisy_unit needs seed words unless deterministic. Fix: pass "
                     "noise.seed_words(key).")
  if jnp.issubdtype(seed.dtype, jnp.floating):  # the draw itself, generated ahead
    xi = seed.astype(x.dtype)
  elif materialize:
    xi = _materialized_normal(seed, x.shape, x.dtype)
  else:
    xi = noise.normal_from_seed(seed, x.shape, x.dtype)
  return _sample(x, xi, p, c, alpha, unit.mode, unit.kind, unit.nanil_scale).astype(out_dtype)


def noisy_activation(
    x: jax.typing.ArrayLike,
    key: jax.Array | None = None,
    p: jax.typing.ArrayLike = 1.0,
    c: jax.typing.ArrayLike | None = None,
    alpha: jax.typing.ArrayLike | None = None,
    mode: Mode = "nan",
    *,
    kind: Kind = "hard_tanh",
    deterministic: bool = False,
    nanil_scale: NanilScale = DEFAULT_NANIL_SCALE,
    noise_impl: noise.NoiseImpl = "hash",
) -> jax.Array:
  r"""Noisy activation function (Gulcehre et al., 2016).

  Output-noise modes ``"nan"`` (normal, :math:`\epsilon = \xi`) and ``"nah"``
  (half-normal, :math:`\epsilon = |\xi|`) follow Eq. 12 / Algorithm 1:

  .. math::
    \Delta = h(x) - u(x), \qquad
    \sigma(x) = c\,(g(p\Delta) - 0.5)^2, \qquad
    d(x) = -\mathrm{sgn}(x)\,\mathrm{sgn}(1 - \alpha),

    \phi(x, \xi) = \alpha h(x) + (1 - \alpha) u(x) + d(x)\,\sigma(x)\,\epsilon,
    \qquad \xi \sim \mathcal{N}(0, 1)

  Input-noise modes put the noise inside :math:`h`:
  ``"nani"`` is :math:`h(x + c\xi)` (Eq. 14, fixed :math:`\sigma = c`);
  ``"nanil"`` is :math:`h(x + \sigma(x)\xi)` with a learned :math:`\sigma(x)`, by
  default the reference code's
  :math:`\sigma(x) = c\,\mathrm{softplus}(p|\Delta| / (|\xi| + 10^{-10}))` (see
  the Note); ``"nanis"`` is :math:`h(x + 1_{|x| \ge x_t}\, c\xi)` (Eq. 15).

  With ``deterministic=True`` the noise is replaced by its expectation (Eq. 13):
  :math:`E[\epsilon] = 0` for ``"nan"``, :math:`\sqrt{2/\pi}` for ``"nah"``; the
  input-noise modes return :math:`h(x)`.

  The noise is a pure function of ``key``: the backward pass regenerates it and
  keeps only ``x``, ``key``, ``p``, ``c`` and ``alpha`` as residuals.

  Args:
    x: floating-point pre-activation of any shape. bfloat16/float16 are computed
      in float32 and returned in their own dtype.
    key: PRNG key for the noise (``jax.random.key``); required unless
      ``deterministic``. Use a fresh key for every call.
    p: the paper's learned :math:`p` (Eq. 9); a scalar or an array broadcasting
      to ``x`` (one ``p`` per unit, initialised with :func:`p_init`).
    c: the paper's :math:`c`, the scale of the noise's standard deviation (for
      ``"nani"``/``"nanis"``, the fixed :math:`\sigma`). ``None`` takes the
      reference code's default (:func:`reference_defaults`). May be traced, so
      an annealed value does not retrace a jitted caller; a traced ``c`` (under
      ``jax.jit``, or from a schedule inside the step) cannot be checked here,
      and a negative one silently flips the noise: validate a schedule's whole
      range once, before training.
    alpha: the paper's :math:`\alpha` of Eq. 12 (output-noise modes only).
      ``None`` takes the reference code's default. May be traced (and is then
      not checked for finiteness).
    mode: ``"nan"``, ``"nah"``, ``"nani"``, ``"nanil"`` or ``"nanis"``.
    kind: :math:`h`: ``"hard_tanh"``, ``"hard_sigmoid"``, ``"tanh"`` or
      ``"sigmoid"``.
    deterministic: if True, return the test-time expectation (Eq. 13).
    nanil_scale: how ``"nanil"`` learns :math:`\sigma`: ``"reference"``
      (default), the reference code's
      :math:`c\,\mathrm{softplus}(p|\Delta| / (|\xi| + 10^{-10}))`, which
      produced the paper's NANIL results; or ``"paper"``, Eq. 9 read literally,
      :math:`c\,(g(p\Delta) - 0.5)^2`, which is inert at the paper's ``c``
      (Note). Ignored by the other modes.
    noise_impl: the generator of :math:`\xi`: ``"hash"`` (default), the
      counter-based generator that XLA fuses with the activation, or ``"jax"``,
      ``jax.random.normal`` with the key's own PRNG (slower; see BENCHMARKS.md).

  Returns:
    An array of the same shape and dtype as ``x``.

  Raises:
    ValueError: unknown ``mode``/``kind``/``nanil_scale``; missing ``key`` while
      not deterministic; negative or non-finite concrete ``c``; ``p``, ``c`` or
      ``alpha`` not broadcasting to ``x``.
    TypeError: integer ``x``; ``key`` not a PRNG key; a schedule (a callable)
      passed as ``c``, ``alpha`` or ``p`` instead of its value.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import noisy_jax
    >>> x = jnp.array([-3.0, 0.5, 3.0])
    >>> y = noisy_jax.noisy_activation(x, jax.random.key(0), p=1.0, c=0.5)
    >>> y.shape, y.dtype
    ((3,), dtype('float32'))
    >>> bool(y[1] == 0.5)  # unsaturated: exactly u(x)
    True
    >>> noisy_jax.noisy_activation(x, deterministic=True, alpha=1.0)
    Array([-1. ,  0.5,  1. ], dtype=float32)

  Note:
    The paper's direction term :math:`d(x) = -\mathrm{sgn}(x)\mathrm{sgn}(1-\alpha)`
    vanishes at :math:`\alpha = 1`, which would silently switch the noise off.
    Following the reference code, the factor :math:`\mathrm{sgn}(1-\alpha)` is
    taken as +1 for :math:`\alpha \le 1` and -1 for :math:`\alpha > 1`, with
    :math:`\mathrm{sgn}(0) = 1`. The reference code multiplies both kinds of
    noise by :math:`-\mathrm{sgn}(x)`, but applies the :math:`\alpha > 1` sign
    flip to half-normal noise only; here the flip applies to normal noise too
    (Eq. 12), which changes individual draws but not their distribution. The
    half-normal test-time mean is the exact :math:`\sqrt{2/\pi}`, not the
    reference code's 0.797. NANIS uses the paper's :math:`|x| \ge x_t`, not the
    reference code's 1.001 threshold, and :math:`x_t` = 1 (tanh kinds) or 2
    (sigmoid kinds). An infinite ``x`` gives the limit of the formula (at
    :math:`\alpha = 1`, :math:`h(x)` plus the saturated noise), never NaN.

  Note:
    NANIL's default scale is the reference code's, not Eq. 9 as written. The
    paper says :math:`\sigma` in Eq. 14 "can be learned as in Eqn 9", but
    Eq. 9's :math:`\sigma < c/4` cannot push a saturated input back across
    :math:`x_t` at the paper's values of ``c``: :math:`h(x + \sigma\xi)` then
    equals :math:`h(x)` exactly, with zero gradient to ``p``, unless
    :math:`c|p||\xi|` exceeds about 8 (hard-tanh) or 32 (hard-sigmoid).
    Measured on 96,000 saturated inputs (:math:`x_t < |x| < x_t + 2` for
    hard-tanh, :math:`x_t + 4` for hard-sigmoid) with :math:`p \sim U[-1, 1]`:
    ``nanil_scale="paper"`` changes 0 % of the outputs at c = 0.25, 0.5 and 2
    for both kinds (hard-sigmoid still 0 % at c = 30), while the reference
    form changes 3.6 % (hard-tanh) and 1.8 % (hard-sigmoid) at the default
    c = 0.25, each with a non-zero gradient to ``p``. The reference code's form
    is what produced the paper's NANIL numbers, so it is the default;
    ``nanil_scale="paper"`` keeps the literal reading for comparison.

  References:
    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, ICML 2016.
  """
  checks.choice(noise_impl, "noise_impl", checks.NOISE_IMPLS)
  x, p, c, alpha, _, out_dtype = _prepare(x, p, UnitNoise(kind, mode, c, alpha, nanil_scale))
  key = checks.noise_key(key, deterministic, "the noisy activation")
  if deterministic:
    return _expectation(x, p, c, alpha, mode, kind).astype(out_dtype)
  key = checks.single_key(key)
  return _rematted_sample(x, key, p, c, alpha, mode, kind, nanil_scale,
                          noise_impl).astype(out_dtype)


def noisy_hard_tanh(
    x: jax.typing.ArrayLike,
    key: jax.Array | None = None,
    p: jax.typing.ArrayLike = 1.0,
    c: jax.typing.ArrayLike | None = None,
    alpha: jax.typing.ArrayLike | None = None,
    mode: Mode = "nan",
    *,
    deterministic: bool = False,
    nanil_scale: NanilScale = DEFAULT_NANIL_SCALE,
    noise_impl: noise.NoiseImpl = "hash",
) -> jax.Array:
  """:func:`noisy_activation` with ``kind="hard_tanh"``.

  ``c=None``/``alpha=None`` take ``reference_defaults(mode, "hard_tanh")``:
  c=0.5, alpha=1.15 for ``nan``/``nah``; c=0.05 (``nani``) or 0.25 (``nanil``,
  ``nanis``) for the input-noise modes.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import noisy_jax
    >>> noisy_jax.noisy_hard_tanh(jnp.array([0.25]), jax.random.key(1))
    Array([0.25], dtype=float32)
  """
  return noisy_activation(
      x, key, p, c, alpha, mode, kind="hard_tanh", deterministic=deterministic,
      nanil_scale=nanil_scale, noise_impl=noise_impl,
  )


def noisy_hard_sigmoid(
    x: jax.typing.ArrayLike,
    key: jax.Array | None = None,
    p: jax.typing.ArrayLike = 1.0,
    c: jax.typing.ArrayLike | None = None,
    alpha: jax.typing.ArrayLike | None = None,
    mode: Mode = "nan",
    *,
    deterministic: bool = False,
    nanil_scale: NanilScale = DEFAULT_NANIL_SCALE,
    noise_impl: noise.NoiseImpl = "hash",
) -> jax.Array:
  """:func:`noisy_activation` with ``kind="hard_sigmoid"``.

  ``c=None``/``alpha=None`` take ``reference_defaults(mode, "hard_sigmoid")``:
  c=0.15, alpha=1.1 for ``nan``/``nah``; c=0.05 (``nani``) or 0.25 (``nanil``,
  ``nanis``) for the input-noise modes.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import noisy_jax
    >>> noisy_jax.noisy_hard_sigmoid(jnp.array([0.0]), jax.random.key(1))
    Array([0.5], dtype=float32)
  """
  return noisy_activation(
      x, key, p, c, alpha, mode, kind="hard_sigmoid", deterministic=deterministic,
      nanil_scale=nanil_scale, noise_impl=noise_impl,
  )
