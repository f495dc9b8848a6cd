"""Annealed gradient noise (Neelakantan et al., 2015) as optax transformations.

:func:`add_gradient_noise` adds :math:`\\mathcal{N}(0, \\sigma_t^2)` to every
gradient leaf; :func:`noisy_sgd` is Paper B's MNIST optimizer (clip, add noise,
plain SGD). The noise of a leaf is a pure function of the step key and the leaf's
path, so it does not depend on the other leaves, and XLA generates it shard by
shard next to the gradient it perturbs.
"""

import hashlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from noisy_jax._src import checks
from noisy_jax._src import noise
from noisy_jax._src import schedules


class GradientNoiseState(NamedTuple):
  """State of :func:`add_gradient_noise`."""

  count: jax.Array  # int32 scalar: updates applied so far, the paper's t.
  # Raw data (jax.random.key_data) of the PRNG key, split at every update. Raw,
  # because optax.MultiSteps passes its inner state through jnp.where, whose
  # output jax_debug_key_reuse would mark as a consumed key.
  key_data: jax.Array


def _variance_schedule(eta: Any, gamma: Any) -> optax.Schedule:
  """Maps the update count t to the noise variance: Eq. 1, or ``eta`` itself if a schedule."""
  if callable(eta):
    return eta
  return schedules.gradient_noise_variance(eta, gamma)


def _path_words(path) -> tuple[int, int]:
  """A 64-bit hash of a leaf's path, as two uint32 words for ``fold_in``.

  Stable across processes (unlike ``hash``), and 64 bits wide so that two leaves
  of one tree get the same noise with probability ~ n^2 / 2^65, not n^2 / 2^33.
  """
  digest = hashlib.blake2b(jax.tree_util.keystr(path).encode(), digest_size=8).digest()
  return int.from_bytes(digest[:4], "little"), int.from_bytes(digest[4:], "little")


def _perturb(updates: Any, key: jax.Array, std: jax.Array,
             noise_impl: noise.NoiseImpl) -> Any:
  """Adds ``std`` times iid N(0, 1) noise to every leaf; the noise is keyed by the leaf's path."""
  paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(updates)
  if not paths_and_leaves:
    return updates
  for path, update in paths_and_leaves:
    if not jnp.issubdtype(update.dtype, jnp.floating):
      raise TypeError(
          f"Gradient noise needs floating-point updates, but the leaf at "
          f"{jax.tree_util.keystr(path) or 'the root'} has dtype {update.dtype}. "
          "Fix: skip such leaves with optax.masked(add_gradient_noise(...), mask)."
      )
  words = np.asarray([_path_words(path) for path, _ in paths_and_leaves], np.uint32)
  # All leaf keys in one batched derivation: a fold_in per leaf is a PRNG call per
  # leaf, which costs compile time (an XLA loop each on CPU) and kernel launches.
  leaf_keys = jax.vmap(
      lambda word: jax.random.fold_in(jax.random.fold_in(key, word[0]), word[1]))(words)
  noisy = []
  for (_, update), leaf_key in zip(paths_and_leaves, leaf_keys):
    # Low-precision gradients get noise drawn and added in float32, rounded once.
    compute_dtype = jnp.promote_types(update.dtype, jnp.float32)
    xi = noise.standard_normal(leaf_key, update.shape, compute_dtype, noise_impl=noise_impl)
    noisy_update = update.astype(compute_dtype) + std.astype(compute_dtype) * xi
    noisy.append(noisy_update.astype(update.dtype))
  return jax.tree_util.tree_unflatten(treedef, noisy)


@checks.renamed_arguments(impl="noise_impl")
def add_gradient_noise(
    eta: float | jax.typing.ArrayLike | optax.Schedule,
    gamma: float | jax.typing.ArrayLike = 0.55,
    key: jax.Array | int | None = None,
    *,
    noise_impl: noise.NoiseImpl = "hash",
) -> optax.GradientTransformation:
  r"""Adds annealed Gaussian noise to the gradients (Neelakantan et al., 2015).

  .. math::
    g_t \leftarrow g_t + \mathcal{N}(0, \sigma_t^2), \qquad
    \sigma_t^2 = \frac{\eta}{(1 + t)^\gamma} \quad \text{(Eq. 1)}

  :math:`t` counts the updates made through this transformation (0 at the first).
  Every leaf gets its own independent noise: the step key is folded with a hash of
  the leaf's path, so a leaf's noise does not change when leaves are added to or
  masked out of the tree. The dtype and the sharding of each leaf are kept.

  Paper B adds the noise **after gradient clipping**, so put it after
  ``optax.clip_by_global_norm`` and before the optimizer:
  ``optax.chain(optax.clip_by_global_norm(10.0), add_gradient_noise(0.01, key=0),
  optax.sgd(0.1))`` (that is :func:`noisy_sgd`).

  Composition:

  * ``optax.MultiSteps(optax.chain(clip, noise, opt), every_k_schedule=k)`` is the
    right order for gradient accumulation: the noise is added once per real
    update to the averaged gradient and :math:`t` counts real updates
    (``MultiSteps`` evaluates the inner update at every micro-step but keeps its
    result and state only at the real update, so the discarded micro-steps
    neither add noise nor advance the key). Noise outside ``MultiSteps``
    (``optax.chain(noise, optax.MultiSteps(opt, k))``) is added to every
    micro-batch gradient, so averaging divides its variance by about ``k`` and
    :math:`t` runs ``k`` times too fast.
  * ``optax.inject_hyperparams(add_gradient_noise, static_args="key")(eta=0.3,
    key=0)`` keeps ``eta`` in ``state.hyperparams``, changeable between steps
    without retracing (assign an array of the same dtype, e.g.
    ``state.hyperparams["eta"] = jnp.asarray(0.1, jnp.float32)``). The injected
    ``eta`` is the variance at ``t = 0``: the decay :math:`(1+t)^{-\gamma}` is
    applied here, once, from this transformation's own count. ``static_args="key"``
    keeps the key out of ``hyperparams`` (so it stays a dict of numbers); without
    it the key is carried there too and only read at ``init``. A *schedule* for
    ``eta`` must be listed in ``static_args`` too: ``inject_hyperparams`` would
    otherwise evaluate it and hand in a float, which would be decayed again.
  * ``optax.masked(add_gradient_noise(...), mask)`` skips leaves, e.g. biases.

  Args:
    eta: :math:`\eta`, the noise **variance** (not standard deviation) at
      ``t = 0``: 0.01, 0.3 or 1.0 in the paper. A float follows Eq. 1 exactly; an
      optax schedule ``count -> variance`` alone decides the variance (no extra
      decay; ``noisy_jax.schedules.gradient_noise_variance(eta, gamma)`` equals
      the float case). A concrete ``eta`` is checked here; a traced one (an
      injected hyperparameter, or a schedule's value under ``jit``) cannot be:
      a negative variance there gives NaN noise, so check a schedule's range
      before training.
    gamma: :math:`\gamma`, the decay exponent of the variance (0.55 in the
      paper); unused when ``eta`` is a schedule.
    key: required PRNG key (``jax.random.key(seed)``) or int seed; there is no
      default seed.
    noise_impl: the normal generator, as the ``noise_impl`` of the noisy units:
      ``"hash"`` (default), the counter-based generator that XLA fuses with the
      addition into one pass over the gradient; ``"jax"``, ``jax.random.normal``
      with the key's own PRNG implementation (as ``optax.add_noise``). The old
      name ``impl=`` still works, with a ``DeprecationWarning``, until the next
      release.

  Returns:
    An ``optax.GradientTransformation`` whose state is a
    :class:`GradientNoiseState` ``(count, key_data)``. Updates keep the structure,
    shapes, dtypes and shardings of the input updates.

  Raises:
    ValueError: missing ``key``; negative or non-finite ``eta`` or ``gamma``;
      unknown ``noise_impl``; (at update, outside ``jit``) a scheduled variance that
      is negative or non-finite.
    TypeError: non-scalar ``eta``/``gamma``, callable ``gamma``, a ``key`` that
      is not a PRNG key or int, or (at update) a non-floating leaf.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> import noisy_jax.optim
    >>> tx = optax.chain(optax.clip_by_global_norm(10.0),
    ...                  noisy_jax.optim.add_gradient_noise(eta=0.01, key=0))
    >>> grads = {"w": jnp.zeros((1000,)), "b": jnp.zeros((10,), jnp.bfloat16)}
    >>> state = tx.init(grads)
    >>> noisy, state = tx.update(grads, state)
    >>> noisy["b"].dtype, round(float(noisy["w"].std()), 2)  # sigma_0 = sqrt(0.01)
    (dtype(bfloat16), 0.1)

  Note:
    Unlike ``optax.add_noise`` (same Eq. 1 for a float ``eta``, which it also
    reads as a variance), ``eta`` may be a schedule, an injected hyperparameter is
    decayed exactly once, the key is required, each leaf's noise is keyed by its
    path (not by its position among the leaves), low-precision leaves get noise
    drawn in float32, and it works inside ``optax.MultiSteps`` with
    ``jax_debug_key_reuse`` on. For the last point the state holds the key's raw
    data (``jax.random.key_data``; ``optax.add_noise`` holds a typed key):
    ``MultiSteps`` passes its inner state through ``jnp.where``, whose output the
    key-reuse checker marks as a consumed key, so the next update would be
    refused. Each update still splits the key and uses a new half.

    Sharding: under ``jax.jit`` a leaf sharded with ``NamedSharding`` keeps its
    sharding and each device generates only its own shard of the noise, with the
    same values as unsharded: each element's noise is a function of the step
    key, the leaf's path and the element's index, so XLA partitions its
    generation like any elementwise op. With ``noise_impl="jax"`` this relies on
    ``jax_threefry_partitionable`` (the default since jax 0.5). Call ``update``
    inside ``jax.jit``.

    Under ``inject_hyperparams`` with low-precision parameters, ``eta`` is stored
    in the parameters' dtype (e.g. 0.3 becomes 0.30078 in bfloat16); pass
    ``hyperparam_dtype=jnp.float32`` to keep it exact.

  References:
    Neelakantan et al., `Adding Gradient Noise Improves Learning for Very Deep
    Networks <https://arxiv.org/abs/1511.06807>`_, 2015.
  """
  if not callable(eta):
    checks.scalar_hyperparameter(eta, "eta", "0.01")
  checks.scalar_hyperparameter(gamma, "gamma", "0.55")
  checks.choice(noise_impl, "noise_impl", checks.NOISE_IMPLS)
  typed_key = checks.seed_or_key(key, "add_gradient_noise")
  key_impl = jax.random.key_impl(typed_key)
  variance_fn = _variance_schedule(eta, gamma)

  def init_fn(params):
    del params
    return GradientNoiseState(
        count=jnp.zeros([], jnp.int32), key_data=jax.random.key_data(typed_key))

  def update_fn(updates, state, params=None):
    del params
    variance = jnp.asarray(variance_fn(state.count), jnp.float32)
    known = checks.concrete(variance)
    if known is not None and not (np.isfinite(known) and known >= 0):
      raise ValueError(
          f"eta gave the noise variance {known} at count={int(state.count)}; it "
          "must be finite and >= 0. Fix: pass a schedule of the variance that stays "
          "non-negative."
      )
    key = jax.random.wrap_key_data(state.key_data, impl=key_impl)
    next_key, step_key = jax.random.split(key)
    updates = _perturb(updates, step_key, jnp.sqrt(variance), noise_impl)
    return updates, GradientNoiseState(
        count=optax.safe_increment(state.count), key_data=jax.random.key_data(next_key))

  return optax.GradientTransformation(init_fn, update_fn)


def noisy_sgd(
    learning_rate: float | optax.Schedule,
    eta: float | optax.Schedule = 0.01,
    gamma: float = 0.55,
    key: jax.Array | int | None = None,
    *,
    max_norm: float | None = None,
) -> optax.GradientTransformation:
  r"""Paper B's MNIST optimizer: clip, add annealed noise, plain SGD.

  .. math::
    u_t = -\alpha_t \left(\mathrm{clip}(g_t) + \mathcal{N}(0, \sigma_t^2)\right),
    \qquad \sigma_t^2 = \frac{\eta}{(1 + t)^\gamma} \quad \text{(Eq. 1)}

  ``optax.chain(optax.clip_by_global_norm(max_norm), add_gradient_noise(eta,
  gamma, key), optax.sgd(learning_rate))``; the clipping is left out when
  ``max_norm`` is None.

  Args:
    learning_rate: :math:`\alpha_t`, a float or schedule (0.1 and 0.01 in the
      paper's MNIST runs).
    eta: noise variance at ``t = 0`` (or its schedule), see
      :func:`add_gradient_noise`; 0.01 for MNIST.
    gamma: decay exponent of the variance (0.55).
    key: required PRNG key or int seed.
    max_norm: global-norm clipping threshold (the paper tries 10 and 100), or
      None for no clipping.

  Returns:
    An ``optax.GradientTransformation``.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> import noisy_jax.optim
    >>> tx = noisy_jax.optim.noisy_sgd(0.1, eta=0.01, key=0, max_norm=10.0)
    >>> params = jnp.ones(3)
    >>> updates, state = tx.update(jnp.full(3, 100.0), tx.init(params))
    >>> round(float(jnp.linalg.norm(updates)), 1)  # lr * max_norm, plus small noise
    1.0

  Note:
    Paper B states the noise comes after clipping for its Memory Network, Neural
    Programmer and Neural GPU runs; for MNIST the order is not stated, and the
    same order is used here.

  References:
    Neelakantan et al., `Adding Gradient Noise Improves Learning for Very Deep
    Networks <https://arxiv.org/abs/1511.06807>`_, 2015.
  """
  clip = () if max_norm is None else (optax.clip_by_global_norm(max_norm),)
  return optax.chain(*clip, add_gradient_noise(eta, gamma, key), optax.sgd(learning_rate))
