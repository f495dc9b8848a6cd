"""Orbax checkpoints of the whole training state, with fallback past a corrupt checkpoint."""

import pathlib
import shutil
import time
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from absl import logging


def _is_key(leaf: Any) -> bool:
  return hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _to_storable(tree: Any) -> Any:
  """Typed PRNG keys become their raw uint32 data (what Orbax can write)."""
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _abstract_storable(abstract: Any) -> Any:
  def convert(leaf):
    if _is_key(leaf):
      data = jax.eval_shape(jax.random.key_data, leaf)
      return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=leaf.sharding)
    return leaf
  return jax.tree.map(convert, abstract)


def _from_storable(tree: Any, abstract: Any) -> Any:
  # The run keys come from jax.random.key, i.e. the default implementation.
  return jax.tree.map(lambda x, a: jax.random.wrap_key_data(x) if _is_key(a) else x,
                      tree, abstract)


class CheckpointError(RuntimeError):
  """Checkpoints exist but none can be restored."""


class Checkpointer:
  """Saves every ``every`` steps, keeps the last ``max_to_keep``, restores the newest readable.

  Args:
    directory: where the step directories go (``<workdir>/checkpoints``).
    max_to_keep: how many of the latest checkpoints stay on disk.
  """

  def __init__(self, directory: str | pathlib.Path, max_to_keep: int):
    self.directory = pathlib.Path(directory).absolute()
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
    )

  def save(self, step: int, state: Any) -> None:
    """Starts an asynchronous save of ``state`` (a pytree; PRNG keys allowed) at ``step``."""
    self._manager.save(step, args=ocp.args.StandardSave(_to_storable(state)), force=True)

  def restore_latest(self, abstract_state: Any) -> tuple[Any, int] | tuple[None, None]:
    """The newest checkpoint that restores, as ``(state, step)``; ``(None, None)`` if none.

    A checkpoint that fails to restore (truncated or corrupt files) is skipped with
    a warning and the previous one is tried; once one restores, the unreadable
    newer ones are moved to ``<workdir>/unreadable_checkpoints`` (so that the
    resumed run can save those steps again). If checkpoints exist but none
    restores, this raises :class:`CheckpointError` instead of starting afresh.

    Args:
      abstract_state: ``jax.ShapeDtypeStruct`` leaves (with shardings) of the state.
    """
    self._manager.wait_until_finished()
    target = _abstract_storable(abstract_state)
    unreadable = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        restored = self._manager.restore(step, args=ocp.args.StandardRestore(target))
      except Exception as error:  # pylint: disable=broad-except
        # Orbax and TensorStore raise many types for damaged files (ValueError,
        # OSError, KeyError, json errors...); any of them means "not usable".
        logging.warning(
            "Checkpoint at step %d in %s cannot be restored (%s: %s); falling back to "
            "the previous checkpoint.", step, self.directory, type(error).__name__,
            str(error)[:300])
        unreadable.append(step)
        continue
      self._set_aside(unreadable)
      return _from_storable(restored, abstract_state), step
    if unreadable:
      raise CheckpointError(
          f"No checkpoint in {self.directory} restores (steps {sorted(unreadable)}; see the "
          "warnings above). Fix: if the config changed shape (e.g. num_seeds or a model "
          "size), use a new --workdir; to start this run afresh, move the checkpoints "
          "directory away.")
    return None, None

  def _set_aside(self, steps: list[int]) -> None:
    """Moves unreadable step directories to ``unreadable_checkpoints/`` (nothing is deleted)."""
    if not steps:
      return
    aside = self.directory.parent / "unreadable_checkpoints"
    aside.mkdir(exist_ok=True)
    for step in steps:
      source = self.directory / str(step)
      target = aside / f"{step}.{time.strftime('%Y%m%d-%H%M%S')}"
      logging.warning("Moving the unreadable checkpoint at step %d to %s.", step, target)
      shutil.move(source, target)
    self._manager.reload()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()
