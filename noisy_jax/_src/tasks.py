"""Synthetic tasks of the two papers, as pure key-driven generators.

Every generator maps a PRNG key to one batch of fixed shape: lengths, item counts
and curricula are expressed with masks over a fixed maximum, so a generator can be
called inside a jitted, vmapped train step, and a curriculum bound may be a traced
value (no recompilation as it grows). The same key always gives the same batch:
a fixed evaluation set is one call with a key the training stream never uses
(:func:`fixed_eval_set`).

Tasks:

* :func:`unique_integers` -- count the distinct values of a sequence (Paper A,
  Sec. 6.6, Table 5), with :func:`linear_curriculum` over the length.
* :func:`associative_recall`, :func:`copy` and :func:`repeat_copy` -- the NTM tasks
  of Graves et al. (2014) (Paper A, Fig. 11 trains an NTM on associative recall).
* :func:`classification_batch` -- minibatches of an in-memory image dataset, for
  Paper B's deep network (the runner reads the files with
  ``experiments.input_pipeline.load_digits``).
"""

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from noisy_jax._src import checks

# Folded into the evaluation seed so that an evaluation set never coincides with a
# training batch drawn from jax.random.key(seed) itself.
_EVAL_STREAM = 0x45564C  # "EVL"


def _random_words(key: jax.Array, *shapes: tuple[int, ...]) -> list[jax.Array]:
  """Uniform uint32 words for each shape, from a single draw of random bits.

  One draw compiles several times faster than a split followed by a bernoulli
  and randint per field, which matters when a generator sits in a train step.
  """
  sizes = [math.prod(shape) for shape in shapes]
  words = jax.random.bits(key, (sum(sizes),), jnp.uint32)
  offsets = np.cumsum([0] + sizes)
  return [words[a:b].reshape(shape) for a, b, shape in zip(offsets[:-1], offsets[1:], shapes)]


def _fair_bits(words: jax.Array) -> jax.Array:
  """Bernoulli(1/2) as float32 from uint32 words (their top bit)."""
  return (words >> 31).astype(jnp.float32)


def _integers(words: jax.Array, low: jax.typing.ArrayLike, high: jax.typing.ArrayLike) -> jax.Array:
  """Integers uniform on ``[low, high]`` (inclusive, possibly traced) from uint32 words.

  The modulo bias is below (high - low + 1) / 2**32, i.e. under 1e-8 here.
  """
  span = (jnp.asarray(high, jnp.uint32) - jnp.asarray(low, jnp.uint32) + 1)
  return jnp.asarray(low, jnp.int32) + (words % span).astype(jnp.int32)


def linear_curriculum(
    step: jax.typing.ArrayLike, *, start: int, final: int, ramp_steps: int
) -> jax.Array:
  r"""A length (or item-count) curriculum growing linearly from ``start`` to ``final``.

  .. math::
    L_t = \mathrm{start} + \left\lfloor (\mathrm{final} - \mathrm{start})
      \min\left(\frac{t}{\mathrm{ramp\_steps}}, 1\right) \right\rfloor

  Paper A (Sec. 6.6) trains "starting with short sequences first and gradually
  increase the length of the training sequences" without giving a schedule; this
  is the simplest one. Pass its value as ``length_high`` / ``items_high`` of a
  generator: it may be traced, so a jitted train step computes it from its step.

  Args:
    step: the update count :math:`t` (int, may be traced).
    start: the bound at ``step = 0``.
    final: the bound from ``step >= ramp_steps`` on.
    ramp_steps: number of updates of the linear ramp (``>= 1``).

  Returns:
    An int32 scalar :math:`L_t`.

  Example:
    >>> import noisy_jax
    >>> [int(noisy_jax.tasks.linear_curriculum(t, start=5, final=26, ramp_steps=100))
    ...  for t in (0, 50, 100, 1000)]
    [5, 15, 26, 26]
  """
  start = checks.python_int(start, "start", 0)
  final = checks.python_int(final, "final", 0)
  ramp_steps = checks.python_int(ramp_steps, "ramp_steps", 1)
  fraction = jnp.minimum(jnp.asarray(step, jnp.float32) / ramp_steps, 1.0)
  return (start + jnp.floor((final - start) * fraction)).astype(jnp.int32)


@checks.renamed_arguments(max_length="length_high")
def unique_integers(
    key: jax.Array,
    batch_size: int,
    *,
    length: int = 26,
    num_values: int = 11,
    min_length: int | None = None,
    length_high: jax.typing.ArrayLike | None = None,
) -> dict[str, jax.Array]:
  r"""Unique-integer counting (Paper A, Sec. 6.6, Table 5): how many distinct values?

  Each sequence holds :math:`n` values drawn iid uniformly from
  :math:`\{0, \dots, \mathrm{num\_values} - 1\}`; the target is the number of
  distinct values among them,

  .. math::
    \mathrm{count} = \left|\{x_1, \dots, x_n\}\right| \in \{1, \dots, \min(n, V)\},

  posed as classification with ``targets = count - 1`` (:math:`V` =
  ``num_values`` classes). Sequences are padded to ``length``; ``mask`` marks the
  first :math:`n` steps. Without a curriculum every sequence has :math:`n` =
  ``length``; with ``length_high`` given, :math:`n` is uniform on
  ``[min_length, length_high]`` per sequence.

  As in the other generators, ``min_length`` is static and ``length_high`` is the
  (possibly traced) bound of this batch; ``length`` is the static maximum.

  Args:
    key: PRNG key.
    batch_size: number of sequences :math:`B`.
    length: static padded length :math:`T`, the longest possible sequence (the
      paper's 26).
    num_values: number of symbols :math:`V` (11: the values 0..10).
    min_length: shortest sequence under a curriculum (default ``length_high``).
    length_high: longest sequence of this batch, in ``[1, length]``; may be
      traced (e.g. :func:`linear_curriculum` of the step). Default ``length``.
      Until the next release it may still be passed as ``max_length=``, with a
      ``DeprecationWarning`` (``max_length`` is the static maximum everywhere
      else).

  Returns:
    A dict with ``inputs`` (int32 ``[B, T]``, 0 at padded steps), ``mask`` (bool
    ``[B, T]``), ``lengths`` (int32 ``[B]``), ``counts`` (int32 ``[B]``) and
    ``targets`` (int32 ``[B]``, ``counts - 1``).

  Example:
    >>> import jax
    >>> import noisy_jax
    >>> batch = noisy_jax.tasks.unique_integers(jax.random.key(0), 4)
    >>> batch["inputs"].shape, batch["targets"].shape
    ((4, 26), (4,))
    >>> bool((batch["counts"] == batch["targets"] + 1).all())
    True

  Note:
    The paper leaves open what is fixed here: "values between 0 and 10" is read
    as inclusive (11 symbols), drawn uniformly; the output is a classification
    over the counts 1..11 trained with cross-entropy (the paper reports a test
    error %); the encoding of the inputs is the model's choice (integer ids are
    returned). With 26 draws of 11 symbols the counts are 9, 10 and 11 with
    probabilities 0.188, 0.442 and 0.336 (counts below 8 have 0.0024 together),
    so always answering 10 errs on 55.8% of sequences: that is the chance level
    to compare Table 5's errors with.

  References:
    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, ICML 2016.
  """
  key = checks.typed_key(key)
  batch_size = checks.python_int(batch_size, "batch_size", 1)
  length = checks.python_int(length, "length", 1)
  num_values = checks.python_int(num_values, "num_values", 1)
  high = checks.traced_bound(length_high, length, "length_high", 1, length)
  if min_length is None:
    low = high
  else:
    low = checks.python_int(min_length, "min_length", 1, length)
    known_high = None if length_high is None else checks.concrete(length_high)
    if known_high is not None:
      checks.ordered("min_length", low, "length_high", int(known_high))
  return _unique_integers(key, low, high, batch_size, length, num_values)


# Validation runs eagerly in the public wrappers; the generation is jitted so that
# an eager call costs one compilation rather than one per primitive.
@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _unique_integers(key, low, high, batch_size, length, num_values):
  value_words, length_words = _random_words(key, (batch_size, length), (batch_size,))
  values = _integers(value_words, 0, num_values - 1)
  lengths = _integers(length_words, low, jnp.maximum(low, high))
  mask = jnp.arange(length)[None, :] < lengths[:, None]
  inputs = jnp.where(mask, values, 0)
  seen = (jax.nn.one_hot(inputs, num_values, dtype=jnp.int32) * mask[..., None]).max(axis=1)
  counts = seen.sum(axis=-1).astype(jnp.int32)
  return {
      "inputs": inputs,
      "mask": mask,
      "lengths": lengths,
      "counts": counts,
      "targets": counts - 1,
  }


def associative_recall(
    key: jax.Array,
    batch_size: int,
    *,
    min_items: int = 2,
    max_items: int = 6,
    item_len: int = 3,
    bits: int = 6,
    items_high: jax.typing.ArrayLike | None = None,
) -> dict[str, jax.Array]:
  r"""Associative recall (Graves et al., 2014, Sec. 4.3): given an item, recall the next.

  An episode shows :math:`n` items, each a delimiter step followed by
  ``item_len`` random ``bits``-bit vectors; then a query block (a query-delimiter
  step and a copy of item :math:`q`, :math:`q \sim U\{0, \dots, n-2\}`); then an
  output block (a query-delimiter step and ``item_len`` blank steps) during which
  the network must emit item :math:`q + 1`. Blocks have ``item_len + 1`` steps;
  episodes are padded to :math:`T = (\mathrm{item\_len} + 1)(\mathrm{max\_items} + 2)`
  steps.

  Input channels: ``bits`` data bits, then the item delimiter, then the query
  delimiter (``bits + 2`` in all).

  Args:
    key: PRNG key.
    batch_size: number of episodes :math:`B`.
    min_items: fewest items per episode (``>= 2``: the query needs a successor).
    max_items: static maximum number of items (sets :math:`T`).
    item_len: binary vectors per item (Graves et al.: 3).
    bits: bits per vector (Graves et al.: 6).
    items_high: most items in this batch, in ``[min_items, max_items]``; may be
      traced (a curriculum). Default ``max_items``. :math:`n` is uniform on
      ``[min_items, items_high]`` per episode.

  Returns:
    A dict with ``inputs`` (float32 ``[B, T, bits + 2]``), ``targets`` (float32
    ``[B, T, bits]``, zero outside the output block), ``mask`` (bool ``[B, T]``,
    true on the ``item_len`` output steps), ``num_items`` and ``query`` (int32
    ``[B]``).

  Example:
    >>> import jax
    >>> import noisy_jax
    >>> batch = noisy_jax.tasks.associative_recall(jax.random.key(0), 2)
    >>> batch["inputs"].shape, batch["targets"].shape, int(batch["mask"][0].sum())
    ((2, 32, 8), (2, 32, 6), 3)

  Note:
    The layout follows the generator of Paper A's author (``caglar/dntm``:
    delimiter step then bits; query and output blocks opened by the query
    delimiter; query uniform on the first :math:`n - 1` items; the cost on the
    output bits only), with the padding placed after the output block so that
    every episode starts at step 0. Paper A trains on 2..16 items.

  References:
    Graves, Wayne and Danihelka, `Neural Turing Machines <https://arxiv.org/abs/1410.5401>`_, 2014.
  """
  key = checks.typed_key(key)
  batch_size = checks.python_int(batch_size, "batch_size", 1)
  min_items, max_items = checks.int_range("min_items", min_items, "max_items", max_items, 2)
  item_len = checks.python_int(item_len, "item_len", 1)
  bits = checks.python_int(bits, "bits", 1)
  high = checks.traced_bound(items_high, max_items, "items_high", min_items, max_items)
  return _associative_recall(key, high, batch_size, min_items, max_items, item_len, bits)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5, 6))
def _associative_recall(key, high, batch_size, min_items, max_items, item_len, bits):
  block = item_len + 1
  num_steps = block * (max_items + 2)
  item_words, count_words, query_words = _random_words(
      key, (batch_size, max_items, item_len, bits), (batch_size,), (batch_size,)
  )
  items = _fair_bits(item_words)
  num_items = _integers(count_words, min_items, high)
  query = _integers(query_words, 0, num_items - 2)

  t = jnp.arange(num_steps)
  block_of_t = (t // block)[None, :]  # [1, T]
  pos = (t % block)[None, :]
  n = num_items[:, None]
  in_item = (block_of_t < n) & (pos > 0)
  in_query = (block_of_t == n) & (pos > 0)
  in_output = (block_of_t == n + 1) & (pos > 0)

  def item_vectors(item_index):  # [B, T] item index -> [B, T, bits] vector at pos - 1
    index = jnp.clip(item_index, 0, max_items - 1)
    flat = items.reshape(batch_size, max_items * item_len, bits)
    step_index = index * item_len + jnp.clip(pos - 1, 0, item_len - 1)
    return jnp.take_along_axis(flat, step_index[..., None], axis=1)

  data = jnp.where(in_item[..., None], item_vectors(jnp.broadcast_to(block_of_t, in_item.shape)), 0.0)
  data = data + jnp.where(in_query[..., None], item_vectors(query[:, None] + 0 * pos), 0.0)
  item_delimiter = (block_of_t < n) & (pos == 0)
  query_delimiter = ((block_of_t == n) | (block_of_t == n + 1)) & (pos == 0)
  inputs = jnp.concatenate(
      [data, item_delimiter[..., None].astype(jnp.float32),
       query_delimiter[..., None].astype(jnp.float32)], axis=-1
  )
  targets = jnp.where(in_output[..., None], item_vectors(query[:, None] + 1 + 0 * pos), 0.0)
  return {
      "inputs": inputs,
      "targets": targets,
      "mask": in_output,
      "num_items": num_items,
      "query": query,
  }


def copy(
    key: jax.Array,
    batch_size: int,
    *,
    min_length: int = 1,
    max_length: int = 20,
    bits: int = 8,
    length_high: jax.typing.ArrayLike | None = None,
) -> dict[str, jax.Array]:
  r"""Copy (Graves et al., 2014, Sec. 4.1): read a sequence, then write it back.

  Steps :math:`0..n-1` carry random ``bits``-bit vectors, step :math:`n` the
  delimiter (input channel ``bits``), steps :math:`n+1..2n` are blank inputs
  during which the target is the sequence again. Episodes are padded to
  :math:`T = 2\,\mathrm{max\_length} + 1` steps.

  Args:
    key: PRNG key.
    batch_size: number of episodes :math:`B`.
    min_length: shortest sequence :math:`n`.
    max_length: static longest sequence (sets :math:`T`; Graves et al.: 20).
    bits: bits per vector (Graves et al.: 8).
    length_high: longest sequence of this batch, in ``[min_length, max_length]``;
      may be traced (a curriculum). Default ``max_length``.

  Returns:
    A dict with ``inputs`` (float32 ``[B, T, bits + 1]``), ``targets`` (float32
    ``[B, T, bits]``), ``mask`` (bool ``[B, T]``, the :math:`n` output steps) and
    ``lengths`` (int32 ``[B]``).

  Example:
    >>> import jax
    >>> import noisy_jax
    >>> batch = noisy_jax.tasks.copy(jax.random.key(0), 2, max_length=5)
    >>> batch["inputs"].shape, batch["targets"].shape
    ((2, 11, 9), (2, 11, 8))

  References:
    Graves, Wayne and Danihelka, `Neural Turing Machines <https://arxiv.org/abs/1410.5401>`_, 2014.
  """
  key = checks.typed_key(key)
  batch_size = checks.python_int(batch_size, "batch_size", 1)
  min_length, max_length = checks.int_range(
      "min_length", min_length, "max_length", max_length, 1)
  bits = checks.python_int(bits, "bits", 1)
  high = checks.traced_bound(length_high, max_length, "length_high", min_length, max_length)
  return _copy(key, high, batch_size, min_length, max_length, bits)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _copy(key, high, batch_size, min_length, max_length, bits):
  num_steps = 2 * max_length + 1
  bit_words, length_words = _random_words(key, (batch_size, max_length, bits), (batch_size,))
  sequence = _fair_bits(bit_words)
  lengths = _integers(length_words, min_length, high)
  t = jnp.arange(num_steps)[None, :]
  n = lengths[:, None]
  is_input = t < n
  is_output = (t > n) & (t <= 2 * n)
  read = jnp.take_along_axis(sequence, jnp.clip(t, 0, max_length - 1)[..., None], axis=1)
  write = jnp.take_along_axis(
      sequence, jnp.clip(t - n - 1, 0, max_length - 1)[..., None], axis=1
  )
  inputs = jnp.concatenate(
      [jnp.where(is_input[..., None], read, 0.0), (t == n)[..., None].astype(jnp.float32)],
      axis=-1,
  )
  return {
      "inputs": inputs,
      "targets": jnp.where(is_output[..., None], write, 0.0),
      "mask": is_output,
      "lengths": lengths,
  }


def repeat_copy(
    key: jax.Array,
    batch_size: int,
    *,
    min_length: int = 1,
    max_length: int = 10,
    min_repeats: int = 1,
    max_repeats: int = 10,
    bits: int = 8,
) -> dict[str, jax.Array]:
  r"""Repeat copy (Graves et al., 2014, Sec. 4.2): write a sequence back :math:`r` times.

  Steps :math:`0..n-1` carry random vectors; step :math:`n` sets the delimiter
  (input channel ``bits``) and shows the repeat count on its own channel
  (``bits + 1``), normalised to mean 0 and variance 1 over
  ``[min_repeats, max_repeats]``. The targets are the sequence :math:`r` times on
  steps :math:`n+1..n+rn`, then an end marker (target channel ``bits``) at step
  :math:`n + rn + 1`. Episodes are padded to
  :math:`T = \mathrm{max\_length}(\mathrm{max\_repeats} + 1) + 2` steps.

  Args:
    key: PRNG key.
    batch_size: number of episodes :math:`B`.
    min_length: shortest sequence :math:`n`.
    max_length: static longest sequence (sets :math:`T`; Graves et al.: 10).
    min_repeats: fewest repeats :math:`r`.
    max_repeats: static most repeats (sets :math:`T`; Graves et al.: 10).
    bits: bits per vector (Graves et al.: 8).

  Returns:
    A dict with ``inputs`` (float32 ``[B, T, bits + 2]``), ``targets`` (float32
    ``[B, T, bits + 1]``), ``mask`` (bool ``[B, T]``, the :math:`rn + 1` output
    steps), ``lengths`` and ``repeats`` (int32 ``[B]``).

  Example:
    >>> import jax
    >>> import noisy_jax
    >>> batch = noisy_jax.tasks.repeat_copy(jax.random.key(0), 2, max_length=3, max_repeats=2)
    >>> batch["inputs"].shape, batch["targets"].shape
    ((2, 11, 10), (2, 11, 9))

  References:
    Graves, Wayne and Danihelka, `Neural Turing Machines <https://arxiv.org/abs/1410.5401>`_, 2014.
  """
  key = checks.typed_key(key)
  batch_size = checks.python_int(batch_size, "batch_size", 1)
  min_length, max_length = checks.int_range(
      "min_length", min_length, "max_length", max_length, 1)
  min_repeats, max_repeats = checks.int_range(
      "min_repeats", min_repeats, "max_repeats", max_repeats, 1)
  bits = checks.python_int(bits, "bits", 1)
  return _repeat_copy(key, batch_size, min_length, max_length, min_repeats, max_repeats, bits)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6))
def _repeat_copy(key, batch_size, min_length, max_length, min_repeats, max_repeats, bits):
  num_steps = max_length * (max_repeats + 1) + 2
  bit_words, length_words, repeat_words = _random_words(
      key, (batch_size, max_length, bits), (batch_size,), (batch_size,)
  )
  sequence = _fair_bits(bit_words)
  lengths = _integers(length_words, min_length, max_length)
  repeats = _integers(repeat_words, min_repeats, max_repeats)
  span = max_repeats - min_repeats + 1
  repeat_mean = 0.5 * (min_repeats + max_repeats)
  repeat_std = math.sqrt((span * span - 1) / 12.0) or 1.0  # one possible r: no scaling
  t = jnp.arange(num_steps)[None, :]
  n, r = lengths[:, None], repeats[:, None]
  is_input = t < n
  is_output = (t > n) & (t <= n + r * n)
  is_end = t == n + r * n + 1
  read = jnp.take_along_axis(sequence, jnp.clip(t, 0, max_length - 1)[..., None], axis=1)
  write = jnp.take_along_axis(
      sequence, ((jnp.maximum(t - n - 1, 0)) % n)[..., None], axis=1
  )
  delimiter = (t == n).astype(jnp.float32)
  inputs = jnp.concatenate(
      [jnp.where(is_input[..., None], read, 0.0), delimiter[..., None],
       (delimiter * (r - repeat_mean) / repeat_std)[..., None]], axis=-1
  )
  targets = jnp.concatenate(
      [jnp.where(is_output[..., None], write, 0.0), is_end[..., None].astype(jnp.float32)],
      axis=-1,
  )
  return {
      "inputs": inputs,
      "targets": targets,
      "mask": is_output | is_end,
      "lengths": lengths,
      "repeats": repeats,
  }


def fixed_eval_set(
    generator: Callable[..., dict[str, jax.Array]],
    num_examples: int,
    *,
    seed: int = 0,
    **task_kwargs,
) -> dict[str, jax.Array]:
  """A fixed evaluation set: ``generator`` called once with a key reserved for evaluation.

  The key is ``fold_in(key(seed), EVAL_STREAM)``, which a training stream built
  from ``key(seed)`` by splitting never produces; the same arguments always give
  the same set.

  Args:
    generator: one of the task generators above (or any ``(key, batch_size,
      **kwargs) -> batch`` function).
    num_examples: size of the set.
    seed: integer seed of the set.
    **task_kwargs: keyword arguments of ``generator``.

  Returns:
    The batch ``generator`` returns, with ``num_examples`` examples.

  Example:
    >>> import jax.numpy as jnp
    >>> import noisy_jax
    >>> a = noisy_jax.tasks.fixed_eval_set(noisy_jax.tasks.unique_integers, 8)
    >>> b = noisy_jax.tasks.fixed_eval_set(noisy_jax.tasks.unique_integers, 8)
    >>> bool(jnp.array_equal(a["inputs"], b["inputs"]))
    True
  """
  seed = checks.python_int(seed, "seed", 0)
  key = jax.random.fold_in(jax.random.key(seed), _EVAL_STREAM)
  return generator(key, num_examples, **task_kwargs)


def classification_batch(
    key: jax.Array, images: jax.typing.ArrayLike, labels: jax.typing.ArrayLike, batch_size: int
) -> dict[str, jax.Array]:
  """A minibatch drawn uniformly with replacement from an in-memory dataset.

  Args:
    key: PRNG key.
    images: ``[N, D]`` inputs (e.g. from ``experiments.input_pipeline.load_digits``),
      ideally on device.
    labels: ``[N]`` integer labels.
    batch_size: number of examples :math:`B`.

  Returns:
    A dict with ``inputs`` (``[B, D]``) and ``targets`` (int32 ``[B]``).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import noisy_jax
    >>> images, labels = jnp.eye(4), jnp.arange(4)
    >>> batch = noisy_jax.tasks.classification_batch(jax.random.key(0), images, labels, 3)
    >>> bool((batch["inputs"].argmax(-1) == batch["targets"]).all())
    True
  """
  key = checks.typed_key(key)
  batch_size = checks.python_int(batch_size, "batch_size", 1)
  images, labels = jnp.asarray(images), jnp.asarray(labels)
  if images.shape[:1] != labels.shape[:1] or labels.ndim != 1:
    raise ValueError(
        f"images of shape {images.shape} and labels of shape {labels.shape} do not "
        "match. Fix: pass images [N, D] and labels [N]."
    )
  return _classification_batch(key, images, labels, batch_size)


@functools.partial(jax.jit, static_argnums=3)
def _classification_batch(key, images, labels, batch_size):
  (words,) = _random_words(key, (batch_size,))
  index = _integers(words, 0, labels.shape[0] - 1)
  return {"inputs": images[index], "targets": labels[index].astype(jnp.int32)}
