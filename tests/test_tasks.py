"""Invariants of the synthetic task generators, checked against plain NumPy re-derivations."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from noisy_jax import tasks


def _np(batch):
  return jax.tree.map(np.asarray, batch)


class TestUniqueIntegers:

  def test_targets_count_distinct_values(self):
    batch = _np(tasks.unique_integers(jax.random.key(0), 64))
    assert batch["inputs"].shape == (64, 26)
    assert batch["inputs"].min() >= 0 and batch["inputs"].max() <= 10
    assert batch["mask"].all() and (batch["lengths"] == 26).all()
    expected = [len(set(row)) for row in batch["inputs"]]
    np.testing.assert_array_equal(batch["counts"], expected)
    np.testing.assert_array_equal(batch["targets"], batch["counts"] - 1)
    # The paper's values 0..10 inclusive: all 11 symbols occur.
    assert set(np.unique(batch["inputs"])) == set(range(11))

  def test_curriculum_lengths_masks_and_traced_bound(self):
    traces = []

    @jax.jit
    def generate(key, length_high):
      traces.append(1)
      return tasks.unique_integers(key, 256, min_length=3, length_high=length_high)

    keys = jax.random.split(jax.random.key(1), 2)
    for key, bound in zip(keys, (5, 12)):
      batch = _np(generate(key, bound))
      assert batch["lengths"].min() >= 3 and batch["lengths"].max() <= bound
      assert batch["lengths"].max() == bound  # 256 draws reach the bound
      np.testing.assert_array_equal(
          batch["mask"], np.arange(26)[None] < batch["lengths"][:, None]
      )
      assert (batch["inputs"][~batch["mask"]] == 0).all()
      expected = [len(set(row[:n])) for row, n in zip(batch["inputs"], batch["lengths"])]
      np.testing.assert_array_equal(batch["counts"], expected)
    assert len(traces) == 1, "a new curriculum bound must not retrace"

  def test_linear_curriculum(self):
    got = [int(tasks.linear_curriculum(t, start=4, final=26, ramp_steps=10)) for t in
           (0, 1, 5, 10, 99)]
    assert got == [4, 6, 15, 26, 26]

  def test_bad_arguments(self):
    with pytest.raises(ValueError, match=r"length_high must be a scalar in \[1, 26\]"):
      tasks.unique_integers(jax.random.key(0), 2, length_high=27)
    with pytest.raises(ValueError, match="min_length=9 is larger than length_high=5"):
      tasks.unique_integers(jax.random.key(0), 2, min_length=9, length_high=5)
    with pytest.raises(TypeError, match="batch_size"):
      tasks.unique_integers(jax.random.key(0), 2.0)
    with pytest.raises(TypeError, match="key must be a PRNG key from jax.random.key"):
      tasks.unique_integers(jnp.zeros(3), 2)


  def test_deprecated_max_length_keyword_warns_and_gives_the_same_batch(self):
    want = tasks.unique_integers(jax.random.key(5), 8, min_length=3, length_high=10)
    with pytest.warns(DeprecationWarning,
                      match=r"unique_integers\(max_length=\.\.\.\) is deprecated; use length_high="):
      got = tasks.unique_integers(jax.random.key(5), 8, min_length=3, max_length=10)
    chex.assert_trees_all_equal(got, want)
    with pytest.warns(DeprecationWarning):  # through fixed_eval_set's keywords too
      got = tasks.fixed_eval_set(tasks.unique_integers, 8, max_length=10)
    chex.assert_trees_all_equal(got, tasks.fixed_eval_set(tasks.unique_integers, 8,
                                                           length_high=10))


class TestAssociativeRecall:

  @pytest.mark.parametrize("items_high", [None, 3])
  def test_layout_query_and_target(self, items_high):
    item_len, bits, max_items = 3, 6, 8
    batch = _np(tasks.associative_recall(
        jax.random.key(2), 64, min_items=2, max_items=max_items, item_len=item_len,
        bits=bits, items_high=items_high))
    block = item_len + 1
    assert batch["inputs"].shape == (64, block * (max_items + 2), bits + 2)
    high = max_items if items_high is None else items_high
    assert batch["num_items"].min() >= 2 and batch["num_items"].max() <= high
    assert (batch["query"] >= 0).all() and (batch["query"] <= batch["num_items"] - 2).all()
    for x, y, m, n, q in zip(batch["inputs"], batch["targets"], batch["mask"],
                             batch["num_items"], batch["query"]):
      data = x[:, :bits]
      items = [data[i * block + 1:(i + 1) * block] for i in range(n)]
      np.testing.assert_array_equal(np.flatnonzero(x[:, bits]), np.arange(n) * block)
      np.testing.assert_array_equal(np.flatnonzero(x[:, bits + 1]), [n * block, (n + 1) * block])
      np.testing.assert_array_equal(data[n * block + 1:(n + 1) * block], items[q])
      out = slice((n + 1) * block + 1, (n + 2) * block)
      np.testing.assert_array_equal(np.flatnonzero(m), np.arange(out.start, out.stop))
      np.testing.assert_array_equal(y[out], items[q + 1])
      assert not y[~m].any() and not data[(n + 1) * block:].any()
      assert set(np.unique(data)) <= {0.0, 1.0}

  def test_bad_arguments(self):
    with pytest.raises(ValueError, match="min_items"):
      tasks.associative_recall(jax.random.key(0), 2, min_items=1)
    with pytest.raises(ValueError, match="items_high"):
      tasks.associative_recall(jax.random.key(0), 2, max_items=6, items_high=7)


class TestCopy:

  def test_copy_targets_are_the_input_sequence(self):
    bits = 8
    batch = _np(tasks.copy(jax.random.key(3), 32, min_length=2, max_length=7, bits=bits))
    assert batch["inputs"].shape == (32, 15, bits + 1)
    for x, y, m, n in zip(batch["inputs"], batch["targets"], batch["mask"], batch["lengths"]):
      assert 2 <= n <= 7
      np.testing.assert_array_equal(np.flatnonzero(x[:, bits]), [n])
      np.testing.assert_array_equal(np.flatnonzero(m), np.arange(n + 1, 2 * n + 1))
      np.testing.assert_array_equal(y[m], x[:n, :bits])
      assert not x[n + 1:, :bits].any() and not y[~m].any()

  def test_repeat_copy_targets_repeats_and_end_marker(self):
    bits = 4
    batch = _np(tasks.repeat_copy(jax.random.key(4), 32, min_length=1, max_length=4,
                                  min_repeats=1, max_repeats=3, bits=bits))
    assert batch["inputs"].shape == (32, 4 * 4 + 2, bits + 2)
    std = np.sqrt((3 * 3 - 1) / 12.0)
    for x, y, m, n, r in zip(batch["inputs"], batch["targets"], batch["mask"],
                             batch["lengths"], batch["repeats"]):
      np.testing.assert_array_equal(np.flatnonzero(x[:, bits]), [n])
      np.testing.assert_allclose(x[n, bits + 1], (r - 2.0) / std, rtol=1e-6)
      np.testing.assert_array_equal(np.flatnonzero(m), np.arange(n + 1, n + r * n + 2))
      np.testing.assert_array_equal(y[n + 1:n + r * n + 1, :bits], np.tile(x[:n, :bits], (r, 1)))
      np.testing.assert_array_equal(np.flatnonzero(y[:, bits]), [n + r * n + 1])
      assert not y[~m].any()


@pytest.mark.parametrize(
    "generator, kwargs, error, match",
    [
        (tasks.copy, dict(min_length=5, max_length=3), ValueError,
         "min_length=5 is larger than max_length=3"),
        (tasks.copy, dict(max_length=4, length_high=5), ValueError,
         r"length_high must be a scalar in \[1, 4\]"),
        (tasks.copy, dict(max_length=4.0), TypeError, "max_length must be a Python int"),
        (tasks.repeat_copy, dict(min_repeats=0), ValueError, "min_repeats must be >= 1"),
        (tasks.repeat_copy, dict(min_repeats=3, max_repeats=2), ValueError,
         "min_repeats=3 is larger than max_repeats=2"),
        (tasks.associative_recall, dict(min_items=4, max_items=3), ValueError,
         "min_items=4 is larger than max_items=3"),
    ],
)
def test_bad_ranges_name_both_bounds(generator, kwargs, error, match):
  with pytest.raises(error, match=match):
    generator(jax.random.key(0), 2, **kwargs)


def test_fixed_eval_set_is_fixed_and_apart_from_training():
  a = tasks.fixed_eval_set(tasks.unique_integers, 16, seed=3)
  b = tasks.fixed_eval_set(tasks.unique_integers, 16, seed=3)
  chex.assert_trees_all_equal(a, b)
  train = tasks.unique_integers(jax.random.key(3), 16)
  assert not np.array_equal(a["inputs"], train["inputs"])
  c = tasks.fixed_eval_set(tasks.associative_recall, 4, seed=3, max_items=16)
  assert c["inputs"].shape == (4, 4 * 18, 8)
