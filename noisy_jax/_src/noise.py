"""Noise generation for the noisy units.

Every noisy unit draws its noise through :func:`standard_normal`, so the noise is a
pure function of the key and the element index: the backward pass can regenerate it
instead of storing it.

The default generator (``noise_impl="hash"``) is counter-based and written in plain
``jax.numpy``/``lax`` integer and float ops, so XLA fuses it with the activation
into one elementwise kernel on every backend (CPU, GPU, TPU) and the noisy unit
stays close to the cost of moving its data:

1. one call of ``jax.random.bits`` turns the key into two 32-bit seed words
   ``(s0, s1)`` (O(1) work; it is the key's single use);
2. each element hashes its flat index ``i`` (row-major, ``uint32``) with two keyed
   rounds of the ``lowbias32`` integer mixer ``M``:
   ``b = M(M(i + s0) ^ s1)`` (2 x (3 xor-shifts + 2 multiplies));
3. the top 23 bits ``m = b >> 9`` give the exactly symmetric uniform
   ``v = (2m + 1 - 2^23) / 2^23`` in ``(-1, 1)``, never ``-1``, ``0`` or ``1``;
4. ``z = sqrt(2) erfinv(v)`` with Giles' single-precision polynomials, evaluated
   on ``w = -log((1 - v)(1 + v))`` (both factors are exact here, so ``log``
   replaces the slower ``log1p`` of ``lax.erf_inv``).

Step 1 sits behind ``lax.optimization_barrier`` so that XLA keeps it in its own tiny
kernel instead of fusing (and repeating) it per element; steps 2-4 are jitted as one
function, so an eager call runs the same fused code as a jitted caller.

``noise_impl="hash"`` is the default because it is the fast one and passes the same
statistical tests (``tests/test_noise.py``); ``noise_impl="jax"`` is
``jax.random.normal`` (threefry by default), kept for comparison and for users who
need the key's own PRNG implementation. Measurements: ``BENCHMARKS.md``.
"""

import functools
import math
from typing import Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from noisy_jax._src import checks

NoiseImpl = Literal["hash", "jax"]

# Flat indices are uint32; larger arrays index their elements with two words.
_MAX_WORD = 2**32

# lowbias32 (C. Wellons, "Prospecting for hash functions", 2018): xor-shift-multiply
# constants found by search for low avalanche bias.
_MIX_MULTIPLIERS = (0x7FEB352D, 0x846CA68B)
_MIX_SHIFTS = (16, 15, 16)
# Odd multiplier (2^32 / golden ratio) spreading the high index word over the seed.
_GOLDEN = 0x9E3779B9

_UNIFORM_BITS = 23

# Giles, "Approximating the erfinv function" (GPU Computing Gems, 2011), single
# precision: erfinv(v) = v P(w), w = -log(1 - v^2); P is a polynomial in w - 2.5 for
# w < 5 and in sqrt(w) - 3 otherwise. Highest degree first, pre-scaled by sqrt(2)
# so that the result is a standard normal directly.
_ERFINV_CENTRAL = (
    2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
    -0.00125372503, -0.00417768164, 0.246640727, 1.50140941,
)
_ERFINV_TAIL = (
    -0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
    -0.0076224613, 0.00943887047, 1.00167406, 2.83297682,
)
_ERFINV_SPLIT = 5.0
_NORMAL_CENTRAL = tuple(np.float32(a * math.sqrt(2.0)) for a in _ERFINV_CENTRAL)
_NORMAL_TAIL = tuple(np.float32(a * math.sqrt(2.0)) for a in _ERFINV_TAIL)


def _mix(h: jax.Array) -> jax.Array:
  """lowbias32: a bijection of uint32 with strong avalanche."""
  shift_a, shift_b, shift_c = _MIX_SHIFTS
  mul_a, mul_b = (jnp.uint32(m) for m in _MIX_MULTIPLIERS)
  h = (h ^ (h >> shift_a)) * mul_a
  h = (h ^ (h >> shift_b)) * mul_b
  return h ^ (h >> shift_c)


def _flat_iota(shape: tuple[int, ...]) -> jax.Array:
  size = math.prod(shape)
  return lax.iota(jnp.uint32, size).reshape(shape)


def _index_words(shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array | None]:
  """The element counters: ``(low, high)`` with ``high=None`` below 2**32 elements.

  Below 2**32 elements ``low`` is the row-major flat index. Larger arrays split the
  dimensions into trailing ones (indexed by ``low``) and leading ones (``high``),
  each with at most 2**32 elements.
  """
  if math.prod(shape) <= _MAX_WORD:
    return _flat_iota(shape), None
  for split in range(1, len(shape)):
    lead, trail = shape[:split], shape[split:]
    if math.prod(lead) <= _MAX_WORD and math.prod(trail) <= _MAX_WORD:
      low = lax.broadcast_in_dim(_flat_iota(trail), shape, range(split, len(shape)))
      high = lax.broadcast_in_dim(_flat_iota(lead), shape, range(split))
      return low, high
  raise ValueError(
      f"shape={shape} has {math.prod(shape)} elements and cannot be split into "
      f"leading and trailing dimensions of at most 2**32 elements each. Fix: "
      f"reshape to more dimensions, or pass noise_impl='jax'."
  )


def random_bits(key: jax.Array, shape: Sequence[int]) -> jax.Array:
  """The counter-based ``uint32`` bits behind ``standard_normal(..., noise_impl="hash")``.

  ``bits[i] = M(M(i + s0) ^ s1)`` where ``i`` is the element's row-major flat index,
  ``(s0, s1) = jax.random.bits(key, (2,), uint32)`` and ``M`` is the lowbias32
  mixer. Element ``i`` depends only on ``key`` and ``i``, not on ``shape``: a draw
  of ``(n,)`` is a prefix of a draw of ``(m,)`` for ``n <= m``, and reshaping
  commutes with drawing. Arrays of more than 2**32 elements hash a second index
  word ``j`` (over the leading dimensions) into the second seed:
  ``s1 + j * 0x9E3779B9``.

  Args:
    key: a single PRNG key (typed, or a raw ``uint32[2]`` key); consumed once.
    shape: shape of the result.

  Returns:
    A ``uint32`` array of ``shape``.

  Example:
    >>> import jax
    >>> from noisy_jax._src import noise
    >>> noise.random_bits(jax.random.key(0), (2, 3)).dtype
    dtype('uint32')
  """
  # The barrier keeps the key's O(1) hashing in its own tiny kernel: fused into the
  # elementwise consumer, XLA could recompute it once per element.
  return _bits_from_seed(lax.optimization_barrier(seed_words(key)), tuple(shape))


def seed_words(key: jax.Array) -> jax.Array:
  """The two ``uint32`` seed words ``(s0, s1)`` that a key's hash draw is made from.

  ``jax.random.bits(key, (2,), uint32)``: the key's single use by
  :func:`random_bits`/:func:`standard_normal`. Callers that draw many times, such
  as a recurrent layer over ``T`` steps, turn all their keys into seed words at
  once (one batched call, see :func:`stream_seeds`) and draw from the words with
  :func:`normal_from_seed`, which gives the same numbers as drawing from the keys.
  """
  return jax.random.bits(checks.typed_key(key), (2,), jnp.uint32)


def stream_seeds(key: jax.Array, num_streams: int) -> jax.Array:
  """``(..., num_streams, 2)`` seed words of ``jax.random.split(key, num_streams)``.

  ``key`` may be an array of keys (a leading batch of steps, say): every key is
  split and hashed in one batched computation. Row ``i`` of a key's result holds
  the seed words of its ``i``-th split key, so ``normal_from_seed(seeds[i], ...)``
  is ``standard_normal(jax.random.split(key, num_streams)[i], ...)``.
  """
  key = checks.typed_key(key)
  split = lambda k: jax.vmap(seed_words)(jax.random.split(k, num_streams))
  for _ in range(key.ndim):
    split = jax.vmap(split)
  return split(key)


def _bits_from_seed(seed: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  low, high = _index_words(shape)
  second = seed[1] if high is None else seed[1] + high * jnp.uint32(_GOLDEN)
  return _mix(_mix(low + seed[0]) ^ second)


def _symmetric_uniform(bits: jax.Array) -> jax.Array:
  """``(2m + 1 - 2^23) / 2^23`` for ``m = bits >> 9``: in (-1, 1), exact in float32."""
  # Integer arithmetic, then an exact conversion and an exact scaling: a float
  # formulation such as (bitcast(...) - 3) + 2^-23 lets XLA fold the two constants
  # and round the result to exactly -1 (an infinite normal).
  top = (bits >> (32 - _UNIFORM_BITS)).astype(jnp.int32)
  odd = 2 * top + (1 - 2**_UNIFORM_BITS)
  return odd.astype(jnp.float32) * np.float32(2.0**-_UNIFORM_BITS)


def _normal_from_symmetric_uniform(v: jax.Array) -> jax.Array:
  """``sqrt(2) erfinv(v)`` in float32 (Giles' polynomials) for ``v`` in (-1, 1)."""
  w = -jnp.log((1.0 - v) * (1.0 + v))
  central = w < _ERFINV_SPLIT
  s = jnp.where(central, w - 2.5, jnp.sqrt(w) - 3.0)
  poly = jnp.where(central, _NORMAL_CENTRAL[0], _NORMAL_TAIL[0])
  for a, b in zip(_NORMAL_CENTRAL[1:], _NORMAL_TAIL[1:]):
    poly = jnp.where(central, a, b) + poly * s
  return poly * v


# Jitted so that an eager call runs the same fused kernel as a jitted caller: XLA
# contracts multiply-adds inside a fusion, which op-by-op execution cannot.
@functools.partial(jax.jit, static_argnums=(1, 2))
def _hash_normal(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype) -> jax.Array:
  # The barrier as in random_bits: the key's hashing stays in its own tiny kernel.
  return _seeded_normal(lax.optimization_barrier(seed_words(key)), shape, dtype)


def normal_from_seed(seed: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
  """``standard_normal(key, shape, dtype)`` from the key's :func:`seed_words`.

  The numbers of ``noise_impl="hash"``; under a caller's ``jit`` it fuses into the
  caller's kernel (a layer's step), and an eager call runs the same fused code.

  Args:
    seed: ``uint32[2]``, the :func:`seed_words` of a key.
    shape: shape of the result.
    dtype: floating dtype of the result (computed in float32, then cast).

  Returns:
    An array of ``shape`` and ``dtype``.
  """
  return _seeded_normal(seed, tuple(shape), jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _seeded_normal(seed: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype) -> jax.Array:
  bits = _bits_from_seed(seed, shape)
  return _normal_from_symmetric_uniform(_symmetric_uniform(bits)).astype(dtype)


def standard_normal(
    key: jax.Array,
    shape: Sequence[int],
    dtype=jnp.float32,
    *,
    noise_impl: NoiseImpl = "hash",
) -> jax.Array:
  r"""Draws iid :math:`\mathcal{N}(0, 1)` noise, a pure function of ``key`` and index.

  .. math::
    \xi_i = \sqrt{2}\,\mathrm{erf}^{-1}(v_i), \qquad
    v_i = \frac{2 m_i + 1 - 2^{23}}{2^{23}}, \qquad
    m_i = \mathrm{bits}_i \gg 9

  with :math:`\mathrm{bits}_i` the counter-based hash of the key and the element's
  flat index :math:`i` (:func:`random_bits`). Everything is elementwise ``jnp``/
  ``lax`` code, so under ``jit`` XLA fuses the generator with its consumer into one
  kernel, and ``jax.checkpoint`` recomputes it from the key in the backward pass.
  The result is the same under ``jit`` and eager execution, and under ``vmap``
  over keys it equals stacking the per-key draws.

  Args:
    key: a single PRNG key (``jax.random.key``); consumed once, whatever ``shape``.
    shape: shape of the result.
    dtype: floating dtype of the result. The noise is computed in float32 and
      cast: bfloat16/float16 round it, float64 gets float32-precision noise.
    noise_impl: ``"hash"`` (default): the fused counter-based generator above.
      ``"jax"``: ``jax.random.normal(key, shape, dtype)``, with the key's own PRNG
      implementation; XLA does not fuse it as cheaply (see ``BENCHMARKS.md``).

  Returns:
    An array of ``shape`` and ``dtype``.

  Raises:
    ValueError: unknown ``noise_impl``.
    TypeError: non-floating ``dtype``; ``key`` not a PRNG key.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from noisy_jax._src import noise
    >>> xi = noise.standard_normal(jax.random.key(0), (2, 3), jnp.float32)
    >>> xi.shape, xi.dtype
    ((2, 3), dtype('float32'))
    >>> same = noise.standard_normal(jax.random.key(0), (6,), jnp.float32)
    >>> bool((xi.reshape(6) == same).all())  # a function of (key, flat index)
    True

  Note:
    With ``noise_impl="hash"`` the uniform has 23 bits, as the one behind
    ``jax.random.normal`` in float32, so :math:`|\xi| \le \Phi^{-1}(1 - 2^{-24})
    \approx 5.3`: the tail beyond has probability :math:`1.2 \times 10^{-7}`.
    Two keys' streams are independent as far as the statistical tests in
    ``tests/test_noise.py`` can see; the hash is not meant for cryptography. The
    draw does not depend on the key's PRNG implementation beyond the one
    ``jax.random.bits`` call.

  References:
    M. Giles, `Approximating the erfinv function
    <https://people.maths.ox.ac.uk/gilesm/files/gems_erfinv.pdf>`_, GPU Computing
    Gems Jade Edition, 2011.

    C. Wellons, `Prospecting for hash functions
    <https://nullprogram.com/blog/2018/07/31/>`_, 2018.
  """
  checks.choice(noise_impl, "noise_impl", checks.NOISE_IMPLS)
  dtype = checks.float_dtype(dtype)
  key = checks.typed_key(key)
  shape = tuple(shape)
  if noise_impl == "jax":
    return jax.random.normal(key, shape, dtype)
  return _hash_normal(key, shape, dtype)
