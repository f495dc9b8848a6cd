"""Input pipeline of the experiments: each config's task, and the data files it reads.

* :func:`make_task` turns ``config.task`` into the :class:`Task` the training loop
  sees: a batch function of ``(key, step, data)`` built on the library's pure
  generators (``noisy_jax.tasks``), the arrays it draws from, and a fixed
  evaluation set.
* :func:`load_digits` and :func:`read_idx` read the image data of Paper B's deep
  network from disk: scikit-learn's 8x8 digits, or MNIST from IDX files. They moved
  here from ``noisy_jax.tasks``, whose names still work for one release with a
  ``DeprecationWarning``: a file reader is the runner's business, and the library
  keeps only the generators that run inside a jitted step.
"""

import dataclasses
import gzip
import os
import pathlib
from typing import Callable

import jax
import ml_collections
import numpy as np

import noisy_jax.tasks
from experiments import validation
from noisy_jax._src import checks


@dataclasses.dataclass(frozen=True)
class Task:
  """A task as the training loop sees it."""

  objective: str  # "classification" (targets [B]) or "bits" (targets [B, T, F], mask [B, T])
  num_outputs: int  # classes, or bits per output step
  make_batch: Callable[..., dict[str, jax.Array]]  # (key, step, data) -> one run's batch
  data: dict[str, np.ndarray]  # arrays batches are drawn from (empty for synthetic tasks)
  eval_set: dict[str, np.ndarray]  # fixed evaluation set; "weight" marks real examples


def make_task(config: ml_collections.ConfigDict) -> Task:
  """Builds the task of ``config.task`` with its fixed evaluation set."""
  task, batch_size = config.task, config.train.batch_size
  num_eval, eval_seed = config.eval.num_examples, config.eval.seed
  if task.name == "unique_integers":
    def make_batch(key, step, data):
      del data
      length_high = None
      if task.curriculum_start:
        length_high = noisy_jax.tasks.linear_curriculum(
            step, start=task.curriculum_start, final=task.length,
            ramp_steps=task.curriculum_steps)
      return noisy_jax.tasks.unique_integers(
          key, batch_size, length=task.length, num_values=task.num_values,
          length_high=length_high)
    eval_set = noisy_jax.tasks.fixed_eval_set(
        noisy_jax.tasks.unique_integers, num_eval, seed=eval_seed, length=task.length,
        num_values=task.num_values)
    return Task("classification", task.num_values, make_batch, {}, _host(eval_set))

  if task.name == "digits":
    arrays = load_digits(task.data_dir or None)
    data = {"images": arrays["train_images"], "labels": arrays["train_labels"]}
    count = num_eval or len(arrays["test_labels"])
    if count > len(arrays["test_labels"]):
      raise validation.ConfigError(
          f"eval.num_examples={count} is larger than the test split "
          f"({len(arrays['test_labels'])} examples). Fix: pass 0 (the whole split) or less.")
    eval_set = {"inputs": arrays["test_images"][:count], "targets": arrays["test_labels"][:count]}

    def make_batch(key, step, data):
      del step
      return noisy_jax.tasks.classification_batch(key, data["images"], data["labels"], batch_size)
    num_classes = int(max(arrays["train_labels"].max(), arrays["test_labels"].max())) + 1
    return Task("classification", num_classes, make_batch, data, eval_set)

  generators = {
      "associative_recall": (noisy_jax.tasks.associative_recall,
                             ("min_items", "max_items", "item_len", "bits")),
      "copy": (noisy_jax.tasks.copy, ("min_length", "max_length", "bits")),
      "repeat_copy": (noisy_jax.tasks.repeat_copy,
                      ("min_length", "max_length", "min_repeats", "max_repeats", "bits")),
  }
  generator, fields = generators[task.name]
  kwargs = {name: task[name] for name in fields}

  def make_batch(key, step, data):
    del step, data
    return generator(key, batch_size, **kwargs)
  eval_set = _host(noisy_jax.tasks.fixed_eval_set(generator, num_eval, seed=eval_seed, **kwargs))
  return Task("bits", eval_set["targets"].shape[-1], make_batch, {}, eval_set)


def chance_metrics(task: Task) -> dict[str, float]:
  """The evaluation metrics of the best guess that ignores the input: chance level.

  Classification: always the evaluation set's most common class (``error_pct``,
  ``accuracy_pct``) and its class frequencies as the prediction (``loss``, their
  entropy in nats). Bits: a fair coin for every target bit (expected values):
  ``loss`` is ``ln 2`` per target bit, ``bit_errors`` half the target bits, and
  ``error_pct`` the chance that a sequence gets any bit wrong. The report draws
  these on its plots; a run at chance has learned nothing.
  """
  eval_set = task.eval_set
  if task.objective == "classification":
    counts = np.bincount(np.asarray(eval_set["targets"]).ravel(), minlength=task.num_outputs)
    freq = counts[counts > 0] / counts.sum()
    top = 100.0 * float(freq.max())
    return {"loss": float(-(freq * np.log(freq)).sum()), "error_pct": 100.0 - top,
            "accuracy_pct": top}
  target_bits = np.asarray(eval_set["mask"], np.float64).sum(axis=1) * task.num_outputs
  return {"loss": float(np.log(2.0) * target_bits.mean()),
          "bit_errors": float(target_bits.mean() / 2),
          "error_pct": float(100.0 * (1.0 - 0.5 ** target_bits).mean())}


def _host(tree):
  return jax.tree.map(np.asarray, tree)



_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an IDX file (the MNIST format), gzipped or not, into a NumPy array.

  The header is two zero bytes, a type code (0x08 ubyte, 0x09 byte, 0x0B int16,
  0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, then each
  dimension as a big-endian uint32; the data follow in C order, big-endian.

  Args:
    path: the file; a ``.gz`` suffix is decompressed.

  Returns:
    The array, in native byte order.

  Raises:
    ValueError: a bad header, or a data size that does not match the header.
  """
  path = pathlib.Path(path)
  opener = gzip.open if path.suffix == ".gz" else open
  with opener(path, "rb") as f:
    raw = f.read()
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
    raise ValueError(
        f"{path} is not an IDX file: it must start with two zero bytes and a type "
        f"code in {sorted(_IDX_DTYPES)}, got header bytes {list(raw[:4])}."
    )
  dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
  header = 4 + 4 * ndim
  shape = tuple(int(d) for d in np.frombuffer(raw[4:header], ">u4"))
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if len(raw) - header != expected:
    raise ValueError(
        f"{path}: the header announces shape {shape} ({expected} bytes of data) but "
        f"the file holds {len(raw) - header} bytes. The file is truncated or corrupt."
    )
  return np.frombuffer(raw[header:], dtype).reshape(shape).astype(dtype.newbyteorder("="))


_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _find_idx(data_dir: pathlib.Path, stem: str) -> pathlib.Path:
  for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
    if (data_dir / name).exists():
      return data_dir / name
  raise FileNotFoundError(
      f"No {stem}[.gz] in {data_dir}. Fix: put the four MNIST IDX files "
      f"({', '.join(_MNIST_FILES.values())}) there, or leave data_dir empty for "
      "scikit-learn's bundled 8x8 digits."
  )


def load_digits(
    data_dir: str | os.PathLike | None = None, *, num_test: int = 297
) -> dict[str, np.ndarray]:
  """Digit images for Paper B's deep network: MNIST from IDX files, or sklearn's 8x8 digits.

  With ``data_dir``, reads the four MNIST IDX files (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte``, each optionally ``.gz``) and scales pixels to
  [0, 1]. Without it, loads the 1,797 8x8 digits bundled with scikit-learn (no
  download), scales the 0..16 pixels to [0, 1], and holds out the last
  ``num_test`` of a fixed permutation (seed 0) as the test set.

  Args:
    data_dir: a directory with the MNIST IDX files, or None for sklearn's digits.
    num_test: size of the sklearn test split (ignored for MNIST, which has its own).

  Returns:
    A dict with ``train_images``, ``test_images`` (float32 ``[N, D]``, D = 784 or
    64) and ``train_labels``, ``test_labels`` (int32 ``[N]``).

  Note:
    Paper B trains on MNIST; sklearn's digits are the offline default so that the
    experiment runs anywhere. Its numbers are therefore not directly comparable
    with Paper B's Table 1.
  """
  if data_dir:
    data_dir = pathlib.Path(data_dir)
    arrays = {name: read_idx(_find_idx(data_dir, stem)) for name, stem in _MNIST_FILES.items()}
    out = {}
    for split in ("train", "test"):
      images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
      if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{data_dir}: {images.shape[0]} {split} images but {labels.shape[0]} labels."
        )
      out[f"{split}_images"] = images.reshape(images.shape[0], -1).astype(np.float32) / 255.0
      out[f"{split}_labels"] = labels.astype(np.int32)
    return out
  try:
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        "load_digits() without data_dir needs scikit-learn. Fix: pip install "
        "'noisy_jax[experiments]', or pass data_dir with the MNIST IDX files."
    ) from e
  digits = datasets.load_digits()
  num_test = checks.python_int(num_test, "num_test", 1, len(digits.target) - 1)
  order = np.random.default_rng(0).permutation(len(digits.target))
  images = (digits.data[order] / 16.0).astype(np.float32)
  labels = digits.target[order].astype(np.int32)
  return {
      "train_images": images[:-num_test],
      "train_labels": labels[:-num_test],
      "test_images": images[-num_test:],
      "test_labels": labels[-num_test:],
  }
