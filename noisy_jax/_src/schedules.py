"""Annealing schedules for the noise scale c (Paper A) and the gradient-noise variance (Paper B).

Both are optax schedules: callables ``count -> scalar`` that are jit-safe with a
traced ``count`` and compose with ``optax.join_schedules``.
"""

import jax
import jax.numpy as jnp
import optax

from noisy_jax._src import checks


def noise_annealing(
    c0: float = 30.0, c_final: float = 0.5, every: int = 200
) -> optax.Schedule:
  r"""The paper's annealing of the noise scale :math:`c`, floored at ``c_final``.

  .. math::
    c_t = \max\left(\frac{c_0}{\sqrt{\lfloor t / \mathrm{every} \rfloor + 1}},\;
    c_\mathrm{final}\right)

  "started training with ... c = 30 and annealed it down to 0.5 with the schedule
  of c/sqrt(t+1) where t is being incremented at every 200 minibatch updates"
  (Gulcehre et al., 2016, Sec. 6.6). With the defaults, c reaches 0.5 after
  3,599 x 200 = 719,800 updates and stays there.

  Args:
    c0: the initial :math:`c` (at ``count = 0``).
    c_final: the floor :math:`c` never goes below, ``0 <= c_final <= c0``.
    every: number of updates between increments of the paper's :math:`t`.

  Returns:
    An ``optax.Schedule`` mapping the update count to :math:`c_t` (float32).

  Raises:
    ValueError: negative or non-finite ``c0``/``c_final``; ``c_final > c0``;
      ``every`` not an int ``>= 1``.

  Example:
    >>> import noisy_jax
    >>> schedule = noisy_jax.schedules.noise_annealing()
    >>> [round(float(schedule(t)), 3) for t in (0, 199, 200, 600, 10**7)]
    [30.0, 30.0, 21.213, 15.0, 0.5]

  Note:
    The paper does not say whether :math:`c` is clamped once it reaches 0.5;
    this schedule clamps it (``c_final``).

  References:
    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, ICML 2016.
  """
  c0 = checks.positive(c0, "c0", allow_zero=True)
  c_final = checks.positive(c_final, "c_final", allow_zero=True)
  checks.ordered("c_final", c_final, "c0", c0)  # the schedule anneals c down
  checks.sizes(every=every)  # updates per increment of t

  def schedule(count: jax.typing.ArrayLike) -> jax.Array:
    t = (jnp.asarray(count) // every).astype(jnp.float32)
    return jnp.maximum(c0 / jnp.sqrt(t + 1.0), c_final)

  return schedule


def gradient_noise_variance(eta: float = 0.01, gamma: float = 0.55) -> optax.Schedule:
  r"""Paper B's annealed variance of the gradient noise.

  .. math::
    \sigma_t^2 = \frac{\eta}{(1 + t)^\gamma} \quad \text{(Neelakantan et al., 2015, Eq. 1)}

  Args:
    eta: :math:`\eta`, the noise **variance** at ``t = 0`` (the paper uses 0.01,
      0.3 and 1.0). May be traced (a traced value is not checked).
    gamma: :math:`\gamma`, the decay exponent (0.55 in the paper). May be traced.

  Returns:
    An ``optax.Schedule`` mapping the update count to :math:`\sigma_t^2` (float32).

  Raises:
    ValueError: a concrete negative or non-finite ``eta``/``gamma``.
    TypeError: a non-scalar, string, bool or callable ``eta``/``gamma``.

  Example:
    >>> import noisy_jax
    >>> schedule = noisy_jax.schedules.gradient_noise_variance(eta=1.0)
    >>> round(float(schedule(0)), 4), round(float(schedule(99)), 4)
    (1.0, 0.0794)

  References:
    Neelakantan et al., `Adding Gradient Noise Improves Learning for Very Deep
    Networks <https://arxiv.org/abs/1511.06807>`_, 2015.
  """
  # eta and gamma may be traced (optax.inject_hyperparams inside jit): checked
  # wherever they are concrete.
  checks.scalar_hyperparameter(eta, "eta", "0.01")
  checks.scalar_hyperparameter(gamma, "gamma", "0.55")

  def schedule(count: jax.typing.ArrayLike) -> jax.Array:
    t = jnp.asarray(count).astype(jnp.float32)
    return eta / (1.0 + t) ** gamma

  return schedule
