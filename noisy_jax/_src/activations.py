"""Noisy activation functions (Gulcehre, Moczulski, Denil and Bengio, 2016).

Pure, jit/vmap/grad-safe functions. Every noisy variant of the paper's Sec. 6
(NAN, NAH, NANI, NANIL, NANIS) on hard-tanh, hard-sigmoid, tanh and sigmoid, the
test-time expectation (Eq. 13), and the helpers they are built from: the hard
activations (Eqs. 3-4), their linearizations (Eqs. 1-2) and the saturation
magnitude (Eq. 8).
"""

import functools
import math
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from noisy_jax._src import noise

Kind = Literal["hard_tanh", "hard_sigmoid", "tanh", "sigmoid"]
Mode = Literal["nan", "nah", "nani", "nanil", "nanis"]

KINDS = ("hard_tanh", "hard_sigmoid", "tanh", "sigmoid")
MODES = ("nan", "nah", "nani", "nanil", "nanis")
# Modes that add noise to the output (Eq. 12) vs. to the input (Eqs. 14-15).
OUTPUT_NOISE_MODES = ("nan", "nah")
INPUT_NOISE_MODES = ("nani", "nanil", "nanis")
# How NANIL learns its input-noise scale: "reference" (default) is the reference
# code's c softplus(p |Delta| / (|xi| + 1e-10)); "paper" is Eq. 9 read literally,
# which injects no noise at the paper's c values (see noisy_activation's Note).
NANIL_SCALES = ("reference", "paper")
NanilScale = Literal["reference", "paper"]
DEFAULT_NANIL_SCALE = "reference"

# E|xi| for xi ~ N(0, 1): the test-time value of half-normal noise (Eq. 13).
HALF_NORMAL_MEAN = math.sqrt(2.0 / math.pi)

_TANH_FAMILY = ("hard_tanh", "tanh")

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
  return "tanh" if kind in _TANH_FAMILY else "sigmoid"


def _check_choice(value: Any, argname: str, choices: tuple[str, ...]) -> None:
  if value not in choices:
    raise ValueError(
        f"Unknown {argname}={value!r}. Valid values: {', '.join(map(repr, choices))}."
    )


def _check_float_input(x: jax.typing.ArrayLike, argname: str = "x") -> jax.Array:
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(
        f"{argname} must be a floating-point array, got dtype {x.dtype}. Fix: cast "
        f"it first, e.g. {argname}.astype(jnp.float32)."
    )
  return x


def _concrete(value: jax.typing.ArrayLike) -> np.ndarray | None:
  """Returns ``value`` as a NumPy array, or None if it is traced."""
  try:
    return np.asarray(value)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return None


def _check_broadcastable(
    value: jax.typing.ArrayLike, argname: str, shape: tuple[int, ...]
) -> jax.Array:
  if callable(value):
    raise TypeError(
        f"{argname} must be a number or an array, got the callable {value!r} (a "
        f"schedule?). Fix: pass the schedule's value at this step, e.g. "
        f"{argname}=noisy_jax.schedules.noise_annealing()(step)."
    )
  value = jnp.asarray(value)
  try:
    ok = np.broadcast_shapes(value.shape, shape) == tuple(shape)
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(
        f"{argname} of shape {value.shape} does not broadcast to x of shape "
        f"{tuple(shape)}. Fix: pass a scalar or an array whose shape broadcasts "
        f"to x, e.g. one value per unit of shape {tuple(shape)[-1:]}."
    )
  return value


def _check_scale(c: jax.typing.ArrayLike, shape: tuple[int, ...],
                 argname: str = "c") -> jax.Array:
  c = _check_broadcastable(c, argname, shape)
  concrete = _concrete(c)
  if concrete is not None and not (np.all(np.isfinite(concrete)) and np.all(concrete >= 0)):
    raise ValueError(
        f"{argname} must be finite and >= 0 (it scales the noise's standard deviation), "
        f"got {argname}={concrete}. Fix: pass a non-negative {argname}, e.g. the paper's "
        f"annealed value at this step, noisy_jax.schedules.noise_annealing()(step)."
    )
  return c


def _check_alpha(alpha: jax.typing.ArrayLike, shape: tuple[int, ...],
                 argname: str = "alpha") -> jax.Array:
  alpha = _check_broadcastable(alpha, argname, shape)
  concrete = _concrete(alpha)
  if concrete is not None and not np.all(np.isfinite(concrete)):
    raise ValueError(f"{argname} must be finite, got {argname}={concrete}.")
  return alpha


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
  x = _check_float_input(x)
  return jnp.where(x > 2, 1.0, jnp.where(x < -2, 0.0, 0.25 * x + 0.5)).astype(x.dtype)


def hard_tanh(x: jax.typing.ArrayLike) -> jax.Array:
  r"""Hard-tanh: the clipped linearization of tanh.

  .. math::
    \mathrm{hard\_tanh}(x) = \max(\min(x, 1), -1)
    \quad \text{(Gulcehre et al., 2016, Eq. 4)}

  The gradient is 1 on the closed interval ``[-1, 1]`` (kinks included) and 0
  outside.

  Args:
    x: floating-point input array.

  Returns:
    An array of the same shape and dtype as ``x``.

  Example:
    >>> import jax.numpy as jnp
    >>> import noisy_jax
    >>> noisy_jax.hard_tanh(jnp.array([-3.0, 0.5, 3.0]))
    Array([-1. ,  0.5,  1. ], dtype=float32)

  References:
    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, 2016.
  """
  x = _check_float_input(x)
  return jnp.where(x > 1, 1.0, jnp.where(x < -1, -1.0, x)).astype(x.dtype)


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
  _check_choice(kind, "kind", KINDS)
  return _activation(_check_float_input(x), kind)


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
  _check_choice(kind, "kind", KINDS)
  return _linear(_check_float_input(x), kind)


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
  _check_choice(kind, "kind", KINDS)
  x = _check_float_input(x)
  return _activation(x, kind) - _linear(x, kind)


def threshold(kind: Kind = "hard_tanh") -> float:
  """Saturation threshold :math:`x_t`: 1 for the tanh kinds, 2 for the sigmoid kinds.

  The paper (Sec. 2) defines :math:`x_t` for the hard activations only. Giving the
  smooth kinds (``"tanh"``, ``"sigmoid"``) the same values is this library's own
  extension: it is where their linearization :math:`u(x)` leaves the range of
  :math:`h`, and it is the threshold NANIS (Eq. 15) uses for them.
  """
  _check_choice(kind, "kind", KINDS)
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
  _check_choice(mode, "mode", MODES)
  _check_choice(kind, "kind", KINDS)
  family = _family(kind)
  alpha = _REFERENCE_ALPHA[family]
  if mode in OUTPUT_NOISE_MODES:
    return _REFERENCE_C[(mode, family)], alpha
  return _REFERENCE_INPUT_C[mode], alpha


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


# Everything the sample depends on is (x, key, p, c, alpha); jax.checkpoint makes
# the backward pass recompute the noise from the key instead of saving it. The jit
# keeps eager-mode gradients inside one traced remat, which the key-reuse checker
# (jax_debug_key_reuse) knows does not consume the key a second time.
@functools.partial(jax.jit, static_argnums=(5, 6, 7, 8))
@functools.partial(jax.checkpoint, static_argnums=(5, 6, 7, 8))
def _sample(x, key, p, c, alpha, mode, kind, nanil_scale, noise_impl):
  xi = noise.standard_normal(key, x.shape, x.dtype, impl=noise_impl)
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
    noise_impl: noise.Impl = "hash",
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
  _check_choice(mode, "mode", MODES)
  _check_choice(kind, "kind", KINDS)
  _check_choice(nanil_scale, "nanil_scale", NANIL_SCALES)
  _check_choice(noise_impl, "noise_impl", noise.IMPLS)
  x = _check_float_input(x)
  default_c, default_alpha = reference_defaults(mode, kind)
  c = _check_scale(default_c if c is None else c, x.shape)
  alpha = _check_alpha(default_alpha if alpha is None else alpha, x.shape)
  p = _check_broadcastable(p, "p", x.shape)

  out_dtype = x.dtype
  compute_dtype = jnp.promote_types(x.dtype, jnp.float32)
  x, p, c, alpha = (jnp.asarray(v, compute_dtype) for v in (x, p, c, alpha))

  if deterministic:
    if mode in INPUT_NOISE_MODES:
      return _activation(x, kind).astype(out_dtype)
    noise_mean = HALF_NORMAL_MEAN if mode == "nah" else 0.0
    mean, scale = _output_noise_terms(x, p, c, alpha, kind)
    return (mean + scale * noise_mean).astype(out_dtype)

  if key is None:
    raise ValueError(
        "key is required when deterministic=False: the noisy activation needs a "
        "PRNG key. Fix: pass key=jax.random.key(seed) (fresh for every call), or "
        "deterministic=True for the test-time expectation."
    )
  key = noise.as_typed_key(key)
  if key.shape:
    raise ValueError(
        f"key must be a single PRNG key, got a batch of shape {key.shape}. Fix: "
        "jax.vmap over the keys, or split one key per call."
    )
  return _sample(x, key, p, c, alpha, mode, kind, nanil_scale, noise_impl).astype(out_dtype)


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
    noise_impl: noise.Impl = "hash",
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
    noise_impl: noise.Impl = "hash",
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
