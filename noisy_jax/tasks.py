"""Synthetic tasks of the papers: pure, key-driven, jit-able batch generators."""

from noisy_jax._src.tasks import associative_recall as associative_recall
from noisy_jax._src.tasks import classification_batch as classification_batch
from noisy_jax._src.tasks import copy as copy
from noisy_jax._src.tasks import fixed_eval_set as fixed_eval_set
from noisy_jax._src.tasks import linear_curriculum as linear_curriculum
from noisy_jax._src.tasks import load_digits as load_digits
from noisy_jax._src.tasks import read_idx as read_idx
from noisy_jax._src.tasks import repeat_copy as repeat_copy
from noisy_jax._src.tasks import unique_integers as unique_integers

__all__ = (
    "associative_recall",
    "classification_batch",
    "copy",
    "fixed_eval_set",
    "linear_curriculum",
    "load_digits",
    "read_idx",
    "repeat_copy",
    "unique_integers",
)
