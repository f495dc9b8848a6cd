"""The runner's data loaders (experiments/input_pipeline.py) and their deprecated old names."""

import gzip
import struct
import sys

import jax
import numpy as np
import pytest

from experiments import input_pipeline
from noisy_jax import tasks


def _write_idx(path, array, code):
  header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(
      f">{array.ndim}I", *array.shape)
  payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
  opener = gzip.open if str(path).endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(payload)


def _write_mnist(data_dir, num_train=6, num_test=3, seed=1):
  rng = np.random.default_rng(seed)
  for prefix, n in (("train", num_train), ("t10k", num_test)):
    _write_idx(data_dir / f"{prefix}-images-idx3-ubyte.gz",
               rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), 0x08)
    _write_idx(data_dir / f"{prefix}-labels-idx1-ubyte",
               rng.integers(0, 10, (n,), dtype=np.uint8), 0x08)


class TestDigits:

  def test_read_idx_round_trip(self, tmp_path):
    rng = np.random.default_rng(0)
    arrays = {  # every IDX type code, gzipped or not
        0x08: rng.integers(0, 256, (5, 3, 2), dtype=np.uint8),
        0x09: rng.integers(-128, 128, (3, 4), dtype=np.int8),
        0x0B: rng.integers(-30000, 30000, (2, 2, 2), dtype=np.int16),
        0x0C: rng.integers(-1000, 1000, (7,)).astype(np.int32),
        0x0D: rng.normal(size=(4, 2)).astype(np.float32),
        0x0E: rng.normal(size=(3,)),
    }
    for code, array in arrays.items():
      path = tmp_path / (f"{code}.gz" if code % 2 else f"{code}")
      _write_idx(path, array, code)
      got = input_pipeline.read_idx(path)
      assert got.dtype == array.dtype and got.dtype.isnative, hex(code)
      np.testing.assert_array_equal(got, array, err_msg=hex(code))

  def test_read_idx_rejects_bad_files(self, tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match="not an IDX file"):
      input_pipeline.read_idx(tmp_path / "bad")
    _write_idx(tmp_path / "short", np.zeros((4, 4), np.uint8), 0x08)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
      input_pipeline.read_idx(tmp_path / "short")

  def test_load_mnist_from_idx_directory(self, tmp_path):
    _write_mnist(tmp_path)
    data = input_pipeline.load_digits(tmp_path)
    assert data["train_images"].shape == (6, 784) and data["test_images"].shape == (3, 784)
    assert data["train_images"].dtype == np.float32 and data["train_images"].max() <= 1.0
    assert data["test_labels"].dtype == np.int32
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros((2,), np.uint8), 0x08)
    with pytest.raises(ValueError, match="3 test images but 2 labels"):
      input_pipeline.load_digits(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match=r"No t10k-labels-idx1-ubyte\[\.gz\] in "):
      input_pipeline.load_digits(tmp_path)

  def test_sklearn_digits_default_and_batches(self):
    data = input_pipeline.load_digits()
    assert data["train_images"].shape == (1500, 64) and data["test_images"].shape == (297, 64)
    assert 0.0 <= data["train_images"].min() and data["train_images"].max() == 1.0
    assert set(np.unique(data["test_labels"])) == set(range(10))
    batch = jax.jit(tasks.classification_batch, static_argnums=3)(
        jax.random.key(5), data["train_images"], data["train_labels"], 32)
    rows = {row.tobytes(): label for row, label in
            zip(data["train_images"], data["train_labels"])}
    for x, y in zip(np.asarray(batch["inputs"]), np.asarray(batch["targets"])):
      assert rows[x.tobytes()] == y


def test_old_loader_names_warn_and_give_the_new_results(tmp_path):
  _write_mnist(tmp_path)
  calls = {"load_digits": (tmp_path,), "read_idx": (tmp_path / "t10k-labels-idx1-ubyte",)}
  for name, args in calls.items():
    assert name not in tasks.__all__ and name not in dir(tasks)
    with pytest.warns(DeprecationWarning, match=(
        f"noisy_jax.tasks.{name} is deprecated .* use experiments.input_pipeline.{name}")):
      old = getattr(tasks, name)
    jax.tree.map(np.testing.assert_array_equal, old(*args),
                 getattr(input_pipeline, name)(*args))
  for name in tasks.__all__:  # the current names, without a warning
    getattr(tasks, name)


def test_old_loader_names_without_experiments_say_where_they_went(monkeypatch):
  monkeypatch.setitem(sys.modules, "experiments.input_pipeline", None)  # not importable
  with pytest.raises(ImportError, match="noisy_jax.tasks.read_idx moved to "
                     r"experiments.input_pipeline.read_idx \(the file "
                     "experiments/input_pipeline.py"):
    from noisy_jax.tasks import read_idx  # pylint: disable=g-import-not-at-top,unused-import
  with pytest.raises(AttributeError, match="has no attribute 'read_idxx'"):
    getattr(tasks, "read_idxx")


class TestChance:

  def test_classification_chance_is_the_most_common_class(self):
    labels = np.asarray([0, 0, 1, 2, 0, 1, 3, 0], np.int32)  # frequencies 1/2, 1/4, 1/8, 1/8
    task = input_pipeline.Task("classification", 5, None, {}, {"targets": labels})
    chance = input_pipeline.chance_metrics(task)
    assert chance["error_pct"] == pytest.approx(50.0)
    assert chance["accuracy_pct"] == pytest.approx(50.0)
    assert chance["loss"] == pytest.approx(1.75 * np.log(2.0))  # entropy: 1.75 bits

  def test_bits_chance_is_a_fair_coin_per_target_bit(self):
    mask = np.zeros((2, 6), bool)
    mask[0, 1:4] = True  # 3 output steps x 4 bits = 12 target bits
    mask[1, 2:3] = True  # 4 target bits
    task = input_pipeline.Task("bits", 4, None, {}, {"mask": mask})
    chance = input_pipeline.chance_metrics(task)
    assert chance["loss"] == pytest.approx(8.0 * np.log(2.0))
    assert chance["bit_errors"] == pytest.approx(4.0)
    assert chance["error_pct"] == pytest.approx(100.0 * (1 - (2.0**-12 + 2.0**-4) / 2))

  def test_unique_integers_chance_is_the_plateau_of_the_counting_task(self):
    from configs import unique_integers  # pylint: disable=g-import-not-at-top
    config = unique_integers.get_config("reference")
    chance = input_pipeline.chance_metrics(input_pipeline.make_task(config))
    # Always answering the most common number of distinct values among 26 draws from
    # 11 symbols: the plateau (55.4 % error) where Table 5's runs sit at first.
    assert 54.0 < chance["error_pct"] < 57.0
