"""Synthetic tasks of the papers: pure, key-driven, jit-able batch generators.

``load_digits`` and ``read_idx``, which read data files, moved to the runner's
``experiments/input_pipeline.py``. Until the next release ``noisy_jax.tasks.load_digits``
and ``noisy_jax.tasks.read_idx`` still work, with a ``DeprecationWarning``, where
``experiments`` can be imported (a checkout of the repository: it is not part of the
installed package); elsewhere they raise an ``ImportError`` saying where they went.
"""

import importlib as _importlib
import warnings as _warnings

from noisy_jax._src.tasks import associative_recall as associative_recall
from noisy_jax._src.tasks import classification_batch as classification_batch
from noisy_jax._src.tasks import copy as copy
from noisy_jax._src.tasks import fixed_eval_set as fixed_eval_set
from noisy_jax._src.tasks import linear_curriculum as linear_curriculum
from noisy_jax._src.tasks import repeat_copy as repeat_copy
from noisy_jax._src.tasks import unique_integers as unique_integers

__all__ = (
    "associative_recall",
    "classification_batch",
    "copy",
    "fixed_eval_set",
    "linear_curriculum",
    "repeat_copy",
    "unique_integers",
)

# Names that moved out of the library, kept for one release: old name -> new module.
# The library does not depend on experiments/: the new module is imported on use.
_MOVED = {
    "load_digits": "experiments.input_pipeline",
    "read_idx": "experiments.input_pipeline",
}


def __getattr__(name: str):
  if name not in _MOVED:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  new_module = _MOVED[name]
  try:
    value = getattr(_importlib.import_module(new_module), name)
  except (ImportError, AttributeError) as e:
    raise ImportError(
        f"noisy_jax.tasks.{name} moved to {new_module}.{name} (the file "
        f"{new_module.replace('.', '/')}.py of the noisy_jax repository), which is not "
        f"part of the installed package and could not be imported here ({e}). Fix: run "
        "from a checkout of the repository with its extra installed (pip install -e "
        "'.[experiments]') and import it from there, or copy that file into your project."
    ) from e
  _warnings.warn(
      f"noisy_jax.tasks.{name} is deprecated and will be removed in the next release; "
      f"use {new_module}.{name}.", DeprecationWarning, stacklevel=2)
  return value
