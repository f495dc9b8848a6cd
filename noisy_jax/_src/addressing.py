"""Memory addressing of the Neural Turing Machine (Graves, Wayne and Danihelka, 2014).

Pure functions, one per equation of Sec. 3 of the paper: reading (Eq. 2), writing
by erase and add (Eqs. 3-4), content addressing (Eqs. 5-6), the interpolation gate
(Eq. 7), the circular convolutional shift (Eq. 8) and sharpening (Eq. 9), and
:func:`address`, which chains Eqs. 5-9 as in the paper's Fig. 2.

Shapes: a memory is ``(..., N, M)`` (N locations of width M); a weighting is
``(..., N)`` and sums to 1 over its last axis. Every leading axis broadcasts, so a
batch axis and a heads axis need no loop: ``H`` heads over a batch of ``B``
memories are weightings ``(B, H, N)`` against a memory ``(B, N, M)``.

Names: ``weighting`` is always an attention weighting (never a learned
parameter), ``content_key`` the heads' key k_t of Eqs. 5-6 (never a PRNG key).
The old keyword names (``weights=``, ``key=``, ``shift_weights=``, ``prev_weights=``,
``content_weights=``) still work for one release, with a ``DeprecationWarning``.

Every function computes in at least float32 and returns the dtype of its first
argument. Each weighting stays normalised and nothing divides by zero: a zero
key, an all-zero memory or an all-zero weighting yields a uniform weighting with
finite gradients, not NaN.
"""

import functools
import operator

import jax
import jax.numpy as jnp

from noisy_jax._src import checks

# The epsilon of the cosine similarity's denominator (Eq. 6); the NTM literature's
# usual 1e-8 (e.g. Collier and Beel, 2018).
COSINE_EPS = 1e-8


def _compute_dtype(*arrays: jax.Array) -> jnp.dtype:
  return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def _safe_norm(x: jax.Array) -> jax.Array:
  # ||x|| over the last axis with a finite gradient at x = 0 (sqrt'(0) is inf).
  squared = jnp.sum(jnp.square(x), axis=-1)
  return jnp.sqrt(jnp.maximum(squared, jnp.finfo(x.dtype).tiny))


@checks.renamed_arguments(key="content_key")
def cosine_similarity(
    memory: jax.typing.ArrayLike, content_key: jax.typing.ArrayLike, *,
    eps: float = COSINE_EPS
) -> jax.Array:
  r"""Cosine similarity of a key with every memory location.

  .. math::
    K[\mathbf{u}, \mathbf{v}] = \frac{\mathbf{u} \cdot \mathbf{v}}
    {\lVert \mathbf{u} \rVert \, \lVert \mathbf{v} \rVert + \epsilon}
    \quad \text{(Graves et al., 2014, Eq. 6)}

  Args:
    memory: memory matrix :math:`\mathbf{M}_t` of shape ``(..., N, M)``.
    content_key: key vectors :math:`\mathbf{k}_t`, one per head, of shape
      ``(..., H, M)``; leading axes broadcast against ``memory``'s.
    eps: the :math:`\epsilon` that keeps a zero key or location finite.

  Returns:
    :math:`K[\mathbf{k}_t, \mathbf{M}_t(i)]` of shape ``(..., H, N)``, in
    :math:`[-1, 1]`; 0 where the key or the location is zero.

  Example:
    >>> import jax.numpy as jnp
    >>> from noisy_jax import ntm
    >>> memory = jnp.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    >>> ntm.cosine_similarity(memory, jnp.array([[3.0, 0.0]])).round(4)
    Array([[1., 0., 0.]], dtype=float32)

  Note:
    The paper's Eq. 6 has no :math:`\epsilon`; it is added, and the norms have a
    finite gradient at zero, so that an empty memory or a zero key gives
    similarity 0 instead of NaN.

  References:
    Graves et al., `Neural Turing Machines <https://arxiv.org/abs/1410.5401>`_, 2014.
  """
  memory = checks.memory(memory)
  content_key = checks.float_array(content_key, "content_key")
  checks.last_axis(content_key, "content_key", memory.shape[-1], "the memory width M")
  checks.heads_axis(content_key, "content_key", "(..., H, M)",
                    "pass content_key[None] for a single head.")
  dtype = _compute_dtype(memory, content_key)
  m, k = memory.astype(dtype), content_key.astype(dtype)
  dots = jnp.einsum("...hm,...nm->...hn", k, m)
  norms = _safe_norm(k)[..., :, None] * _safe_norm(m)[..., None, :]
  return (dots / (norms + eps)).astype(memory.dtype)


@checks.renamed_arguments(key="content_key")
def content_weighting(
    memory: jax.typing.ArrayLike,
    content_key: jax.typing.ArrayLike,
    beta: jax.typing.ArrayLike,
    *,
    eps: float = COSINE_EPS,
) -> jax.Array:
  r"""Content-based addressing: a softmax of key strength times cosine similarity.

  .. math::
    w^c_t(i) = \frac{\exp\left(\beta_t K[\mathbf{k}_t, \mathbf{M}_t(i)]\right)}
    {\sum_j \exp\left(\beta_t K[\mathbf{k}_t, \mathbf{M}_t(j)]\right)}
    \quad \text{(Graves et al., 2014, Eq. 5)}

  with :math:`K` the cosine similarity of Eq. 6 (:func:`cosine_similarity`).

  Args:
    memory: memory matrix of shape ``(..., N, M)``.
    content_key: key vectors :math:`\mathbf{k}_t` of shape ``(..., H, M)``.
    beta: key strengths :math:`\beta_t \ge 0` of shape ``(..., H)`` (or a scalar);
      in the NTM, a softplus of the controller's output.
    eps: the cosine similarity's :math:`\epsilon`.

  Returns:
    Content weightings :math:`\mathbf{w}^c_t` of shape ``(..., H, N)``; each
    sums to 1 over N.

  Raises:
    ValueError: a concrete ``beta`` below 0; mismatched shapes.

  Example:
    >>> import jax.numpy as jnp
    >>> from noisy_jax import ntm
    >>> memory = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> ntm.content_weighting(memory, jnp.array([[1.0, 0.0]]), jnp.array([0.0]))
    Array([[0.5, 0.5]], dtype=float32)

  References:
    Graves et al., `Neural Turing Machines <https://arxiv.org/abs/1410.5401>`_, 2014.
  """
  similarity = cosine_similarity(memory, content_key, eps=eps)
  beta = checks.float_array(beta, "beta")
  checks.at_least(beta, "beta", 0.0, "map the controller's output through softplus.")
  dtype = _compute_dtype(similarity, beta)
  logits = beta.astype(dtype)[..., None] * similarity.astype(dtype)
  return jax.nn.softmax(logits, axis=-1).astype(similarity.dtype)


@checks.renamed_arguments(content_weights="content_weighting",
                          prev_weights="prev_weighting")
def interpolate(
    content_weighting: jax.typing.ArrayLike,  # pylint: disable=redefined-outer-name
    prev_weighting: jax.typing.ArrayLike,
    gate: jax.typing.ArrayLike,
) -> jax.Array:
  r"""Interpolation gate: blends the content weighting with the previous weighting.

  .. math::
    \mathbf{w}^g_t = g_t \mathbf{w}^c_t + (1 - g_t)\,\mathbf{w}_{t-1}
    \quad \text{(Graves et al., 2014, Eq. 7)}

  Args:
    content_weighting: :math:`\mathbf{w}^c_t` of shape ``(..., N)``.
    prev_weighting: the head's previous weighting :math:`\mathbf{w}_{t-1}`,
      broadcasting to ``content_weighting``.
    gate: the interpolation gate :math:`g_t \in [0, 1]` of shape ``(...)``
      (one per weighting, broadcasting to ``content_weighting.shape[:-1]``).

  Returns:
    :math:`\mathbf{w}^g_t` of ``content_weighting``'s shape; normalised if both
    inputs are and :math:`g_t \in [0, 1]`.

  Example:
    >>> import jax.numpy as jnp
    >>> from noisy_jax import ntm
    >>> ntm.interpolate(jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0]), 0.25)
    Array([0.25, 0.75], dtype=float32)

  References:
    Graves et al., `Neural Turing Machines <https://arxiv.org/abs/1410.5401>`_, 2014.
  """
  content_weighting = checks.float_array(content_weighting, "content_weighting")
  prev_weighting = checks.float_array(prev_weighting, "prev_weighting")
  gate = checks.float_array(gate, "gate")
  dtype = _compute_dtype(content_weighting, prev_weighting, gate)
  g = gate.astype(dtype)[..., None]
  blended = g * content_weighting.astype(dtype) + (1.0 - g) * prev_weighting.astype(dtype)
  return blended.astype(content_weighting.dtype)


@checks.renamed_arguments(weights="weighting", shift_weights="shift_weighting")
def shift(weighting: jax.typing.ArrayLike, shift_weighting: jax.typing.ArrayLike) -> jax.Array:
  r"""Rotates a weighting by a distribution over integer shifts (circular convolution).

  .. math::
    \tilde{w}_t(i) = \sum_{j=0}^{N-1} w^g_t(j)\, s_t(i - j)
    \quad \text{(Graves et al., 2014, Eq. 8)}

  with indices taken modulo N. ``shift_weighting`` holds :math:`s_t` on the allowed
  shifts :math:`-S, \dots, S` (0 elsewhere), so a mass of 1 on shift +1 moves all
  focus one location up: :math:`\tilde{w}_t(i) = w^g_t(i - 1)`.

  Args:
    weighting: :math:`\mathbf{w}^g_t` of shape ``(..., N)``.
    shift_weighting: :math:`\mathbf{s}_t` of shape ``(..., 2S + 1)``, the
      probabilities of shifts :math:`-S, \dots, S` in that order (a softmax of
      the controller's output); leading axes broadcast against ``weighting``'s.

  Returns:
    :math:`\tilde{\mathbf{w}}_t` of ``weighting``'s shape; sums to what
    ``weighting`` sums to when ``shift_weighting`` is normalised.

  Raises:
    ValueError: ``shift_weighting`` with an even last axis.

  Example:
    >>> import jax.numpy as jnp
    >>> from noisy_jax import ntm
    >>> ntm.shift(jnp.array([1.0, 0.0, 0.0, 0.0]), jnp.array([0.0, 0.0, 1.0]))
    Array([0., 1., 0., 0.], dtype=float32)

  Note:
    Computed as a sum of :math:`2S + 1` rotations, not an :math:`N \times N`
    circulant matrix; a shift range wider than N wraps around, as Eq. 8 does.

  References:
    Graves et al., `Neural Turing Machines <https://arxiv.org/abs/1410.5401>`_, 2014.
  """
  weighting = checks.float_array(weighting, "weighting")
  shift_weighting = checks.float_array(shift_weighting, "shift_weighting")
  checks.odd_last_axis(shift_weighting, "shift_weighting", "2S + 1, the shifts -S..S",
                       "e.g. 3 entries for the paper's shifts -1, 0, +1.")
  dtype = _compute_dtype(weighting, shift_weighting)
  w, s = weighting.astype(dtype), shift_weighting.astype(dtype)
  max_shift = shift_weighting.shape[-1] // 2
  shifted = sum(
      s[..., offset + max_shift, None] * jnp.roll(w, offset, axis=-1)
      for offset in range(-max_shift, max_shift + 1)
  )
  return shifted.astype(weighting.dtype)


@checks.renamed_arguments(weights="weighting")
def sharpen(weighting: jax.typing.ArrayLike, gamma: jax.typing.ArrayLike) -> jax.Array:
  r"""Sharpens a weighting by raising it to the power :math:`\gamma_t \ge 1`.

  .. math::
    w_t(i) = \frac{\tilde{w}_t(i)^{\gamma_t}}{\sum_j \tilde{w}_t(j)^{\gamma_t}}
    \quad \text{(Graves et al., 2014, Eq. 9)}

  Args:
    weighting: :math:`\tilde{\mathbf{w}}_t` of shape ``(..., N)``, non-negative.
    gamma: :math:`\gamma_t \ge 1` of shape ``(...)`` (one per weighting); in the
      NTM, one plus a softplus of the controller's output.

  Returns:
    :math:`\mathbf{w}_t` of ``weighting``'s shape, summing to 1 over N.

  Raises:
    ValueError: a concrete ``gamma`` below 1.

  Example:
    >>> import jax.numpy as jnp
    >>> from noisy_jax import ntm
    >>> ntm.sharpen(jnp.array([0.5, 0.25, 0.25]), 2.0)
    Array([0.6666667 , 0.16666667, 0.16666667], dtype=float32)

  Note:
    Computed as :math:`\mathrm{softmax}(\gamma_t \log \max(\tilde{w}_t, \text{tiny}))`,
    equal to Eq. 9 for a positive weighting. It never divides by zero: a weighting
    that is zero everywhere becomes uniform, and the gradient with respect to
    :math:`\gamma_t` stays finite where :math:`\tilde{w}_t(i) = 0`.

  References:
    Graves et al., `Neural Turing Machines <https://arxiv.org/abs/1410.5401>`_, 2014.
  """
  weighting = checks.float_array(weighting, "weighting")
  gamma = checks.float_array(gamma, "gamma")
  checks.at_least(gamma, "gamma", 1.0, "map the controller's output through 1 + softplus.")
  dtype = _compute_dtype(weighting, gamma)
  w = weighting.astype(dtype)
  log_w = jnp.log(jnp.maximum(w, jnp.finfo(dtype).tiny))
  return jax.nn.softmax(gamma.astype(dtype)[..., None] * log_w,
                        axis=-1).astype(weighting.dtype)


@checks.renamed_arguments(prev_weights="prev_weighting", key="content_key",
                          shift_weights="shift_weighting")
def address(
    memory: jax.typing.ArrayLike,
    prev_weighting: jax.typing.ArrayLike,
    content_key: jax.typing.ArrayLike,
    beta: jax.typing.ArrayLike,
    gate: jax.typing.ArrayLike,
    shift_weighting: jax.typing.ArrayLike,
    gamma: jax.typing.ArrayLike,
    *,
    eps: float = COSINE_EPS,
) -> jax.Array:
  r"""The NTM's full addressing mechanism: Eqs. 5-9 in the order of Fig. 2.

  .. math::
    \mathbf{w}_t = \mathrm{sharpen}\Big(\mathrm{shift}\big(g_t\,
    \mathrm{content}(\mathbf{M}_t, \mathbf{k}_t, \beta_t)
    + (1 - g_t)\,\mathbf{w}_{t-1},\ \mathbf{s}_t\big),\ \gamma_t\Big)
    \quad \text{(Graves et al., 2014, Eqs. 5-9, Fig. 2)}

  Args:
    memory: :math:`\mathbf{M}_t` of shape ``(..., N, M)``.
    prev_weighting: :math:`\mathbf{w}_{t-1}` of shape ``(..., H, N)``.
    content_key: :math:`\mathbf{k}_t` of shape ``(..., H, M)``.
    beta: :math:`\beta_t \ge 0` of shape ``(..., H)``.
    gate: :math:`g_t \in [0, 1]` of shape ``(..., H)``.
    shift_weighting: :math:`\mathbf{s}_t` of shape ``(..., H, 2S + 1)``.
    gamma: :math:`\gamma_t \ge 1` of shape ``(..., H)``.
    eps: the cosine similarity's :math:`\epsilon`.

  Returns:
    The heads' weightings :math:`\mathbf{w}_t` of shape ``(..., H, N)``, each
    summing to 1.

  Example:
    >>> import jax.numpy as jnp
    >>> from noisy_jax import ntm
    >>> memory = jnp.eye(4)
    >>> w = ntm.address(memory, jnp.full((1, 4), 0.25), memory[None, 1], jnp.array([50.0]),
    ...                 jnp.array([1.0]), jnp.array([[0.0, 0.0, 1.0]]), jnp.array([1.0]))
    >>> int(w.argmax())  # content finds location 1, the shift moves it to 2
    2

  References:
    Graves et al., `Neural Turing Machines <https://arxiv.org/abs/1410.5401>`_, 2014.
  """
  content = content_weighting(memory, content_key, beta, eps=eps)
  return sharpen(shift(interpolate(content, prev_weighting, gate), shift_weighting), gamma)


@checks.renamed_arguments(weights="weighting")
def read(memory: jax.typing.ArrayLike, weighting: jax.typing.ArrayLike) -> jax.Array:
  r"""Reads a convex combination of memory locations, one per read head.

  .. math::
    \mathbf{r}_t = \sum_i w_t(i)\, \mathbf{M}_t(i)
    \quad \text{(Graves et al., 2014, Eq. 2)}

  Args:
    memory: :math:`\mathbf{M}_t` of shape ``(..., N, M)``.
    weighting: read weightings :math:`\mathbf{w}_t` of shape ``(..., R, N)`` (R heads).

  Returns:
    Read vectors :math:`\mathbf{r}_t` of shape ``(..., R, M)``.

  Example:
    >>> import jax.numpy as jnp
    >>> from noisy_jax import ntm
    >>> ntm.read(jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.array([[0.5, 0.5]]))
    Array([[2., 3.]], dtype=float32)

  References:
    Graves et al., `Neural Turing Machines <https://arxiv.org/abs/1410.5401>`_, 2014.
  """
  memory = checks.memory(memory)
  weighting = checks.float_array(weighting, "weighting")
  checks.last_axis(weighting, "weighting", memory.shape[-2], "the N memory locations")
  checks.heads_axis(weighting, "weighting", "(..., R, N)",
                    "pass weighting[None] for a single head.")
  dtype = _compute_dtype(memory, weighting)
  return (weighting.astype(dtype) @ memory.astype(dtype)).astype(memory.dtype)


@checks.renamed_arguments(weights="weighting")
def write(
    memory: jax.typing.ArrayLike,
    weighting: jax.typing.ArrayLike,
    erase: jax.typing.ArrayLike,
    add: jax.typing.ArrayLike,
) -> jax.Array:
  r"""Writes to memory: every head erases, then every head adds.

  .. math::
    \tilde{\mathbf{M}}_t(i) = \mathbf{M}_{t-1}(i) \prod_h
    \left[\mathbf{1} - w^h_t(i)\, \mathbf{e}^h_t\right]
    \quad \text{(Graves et al., 2014, Eq. 3)}

    \mathbf{M}_t(i) = \tilde{\mathbf{M}}_t(i) + \sum_h w^h_t(i)\, \mathbf{a}^h_t
    \quad \text{(Eq. 4)}

  Args:
    memory: :math:`\mathbf{M}_{t-1}` of shape ``(..., N, M)``.
    weighting: write weightings :math:`\mathbf{w}^h_t` of shape ``(..., W, N)``
      (W heads).
    erase: erase vectors :math:`\mathbf{e}^h_t \in [0, 1]^M` of shape ``(..., W, M)``.
    add: add vectors :math:`\mathbf{a}^h_t` of shape ``(..., W, M)``.

  Returns:
    :math:`\mathbf{M}_t` of ``memory``'s shape.

  Example:
    >>> import jax.numpy as jnp
    >>> from noisy_jax import ntm
    >>> memory = jnp.ones((2, 2))
    >>> ntm.write(memory, jnp.array([[1.0, 0.0]]), jnp.array([[1.0, 0.0]]),
    ...           jnp.array([[5.0, 5.0]]))
    Array([[5., 6.],
           [1., 1.]], dtype=float32)

  Note:
    The paper (Sec. 3.2) notes that several heads' erases (a product) and adds
    (a sum) may each be done in any order; here all erases come before all adds.

  References:
    Graves et al., `Neural Turing Machines <https://arxiv.org/abs/1410.5401>`_, 2014.
  """
  memory = checks.memory(memory)
  weighting = checks.float_array(weighting, "weighting")
  erase = checks.float_array(erase, "erase")
  add = checks.float_array(add, "add")
  checks.last_axis(weighting, "weighting", memory.shape[-2], "the N memory locations")
  checks.last_axis(erase, "erase", memory.shape[-1], "the memory width M")
  checks.last_axis(add, "add", memory.shape[-1], "the memory width M")
  checks.heads_axis(weighting, "weighting", "(..., W, N)",
                    "pass weighting[None] (and erase[None], add[None]) for one head.")
  dtype = _compute_dtype(memory, weighting, erase, add)
  m, w, e, a = (v.astype(dtype) for v in (memory, weighting, erase, add))
  # A product over the (few) heads written out: jnp.prod's gradient costs far more.
  keep = functools.reduce(operator.mul, (
      1.0 - w[..., head, :, None] * e[..., head, None, :] for head in range(w.shape[-2])))
  return (m * keep + jnp.einsum("...wn,...wm->...nm", w, a)).astype(memory.dtype)
