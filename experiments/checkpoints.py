"""Orbax checkpoints of the whole training state, with fallback past a corrupt checkpoint.

Integrity: at every save a SHA-256 digest of each saved array goes to
``<workdir>/checkpoint_digests/<step>.json``; a restored checkpoint must match its
digests and be finite everywhere, or it is set aside like an unreadable one (a flipped
byte in a data file otherwise restores silently, as values up to 1e37).
"""

import errno
import hashlib
import json
import pathlib
import shutil
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from experiments import metrics as metrics_lib

DIGESTS_DIR = "checkpoint_digests"


def _host(leaf: Any) -> np.ndarray:
  """A leaf's value on this host (the state is replicated: any shard is all of it)."""
  if isinstance(leaf, jax.Array):
    leaf = leaf.addressable_data(0)
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
  return np.ascontiguousarray(np.asarray(leaf))


def _digest(value: np.ndarray) -> str:
  digest = hashlib.sha256(f"{value.dtype}{value.shape}".encode())
  digest.update(value.tobytes())
  return digest.hexdigest()


def _host_leaves(tree: Any) -> dict[str, np.ndarray]:
  return {jax.tree_util.keystr(path): _host(leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def digests(tree: Any) -> dict[str, str]:
  """SHA-256 of every array of ``tree`` (dtype, shape and bytes), by its key path."""
  return {name: _digest(value) for name, value in _host_leaves(tree).items()}


def _integrity_problem(tree: Any, saved: dict[str, str] | None) -> str | None:
  """Why a restored tree cannot be trusted; None if it can.

  Each leaf is copied to the host once, for both checks.
  """
  restored = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    value, name = _host(leaf), jax.tree_util.keystr(path)
    if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
      return f"non-finite values in {name}"
    if saved is not None:
      restored[name] = _digest(value)
  for name, digest in (saved or {}).items():
    if restored.get(name) != digest:
      return f"{name} differs from what was saved (SHA-256 mismatch)"
  return None


class CheckpointError(RuntimeError):
  """Checkpoints exist but none can be restored, or one cannot be saved."""


# Room a save needs beyond its arrays: Orbax's metadata files, the digests, the
# metrics lines written before the next save.
_SAVE_MARGIN_BYTES = 1 << 20


class Checkpointer:
  """Orbax's ``CheckpointManager`` with digests, and restore past unreadable checkpoints.

  A context manager, like the manager it wraps: leaving it waits for pending saves
  and closes the manager.

  Args:
    directory: where the step directories go (``<workdir>/checkpoints``).
    max_to_keep: how many of the latest checkpoints stay on disk.
    save_interval_steps: the cadence :meth:`should_save` follows (Orbax's option of
      that name).
  """

  def __init__(self, directory: str | pathlib.Path, max_to_keep: int,
               save_interval_steps: int = 1):
    self.directory = pathlib.Path(directory).absolute()
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, save_interval_steps=save_interval_steps, create=True),
    )

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc_info) -> None:
    try:
      self._manager.close()  # waits for the last save, as the manager's own __exit__
    except Exception as error:  # pylint: disable=broad-except
      if exc_info[0] is None:
        raise self._save_error(error) from error
      logging.warning("Finishing the checkpoint saves failed too: %s", error)

  def _save_error(self, error: Exception, step: int | None = None) -> CheckpointError:
    """A failed save as one line: what failed, and that the older checkpoints remain."""
    at = f"at step {step} " if step is not None else ""
    kept = self.all_steps()
    return CheckpointError(
        f"Saving the checkpoint {at}in {self.directory} failed ({type(error).__name__}: "
        f"{' '.join(str(error).split())[:200]}). Fix: check that the disk has free space "
        "and the directory is writable, then rerun the same command: it resumes from "
        + (f"the last saved checkpoint (step {max(kept)})." if kept else "step 0."))

  def should_save(self, step: int) -> bool:
    """Whether ``step`` is on the save cadence (Orbax's rule: a multiple of
    ``save_interval_steps`` past the newest checkpoint, or any step before the first)."""
    return self._manager.should_save(step)

  def save(self, step: int, state: Any) -> None:
    """Starts an asynchronous save of ``state`` (a pytree; typed PRNG keys allowed) at ``step``.

    The digests of its arrays are written first (by process 0), atomically. A disk
    without room for it (its arrays and a margin) is refused before anything is
    written; a save that fails anyway raises :class:`CheckpointError`.
    """
    values = _host_leaves(state)
    needed = sum(value.nbytes for value in values.values()) + _SAVE_MARGIN_BYTES
    free = shutil.disk_usage(self.directory).free
    if free < needed:
      raise self._save_error(OSError(
          errno.ENOSPC, f"about {needed / 2**20:.1f} MiB needed, {free / 2**20:.1f} MiB "
          "free"), step)
    if jax.process_index() == 0:
      self._digests_dir.mkdir(parents=True, exist_ok=True)
      metrics_lib.write_atomically(
          self._digest_path(step),
          json.dumps({name: _digest(value) for name, value in values.items()}, indent=1,
                     sort_keys=True))
    try:
      self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
    except Exception as error:  # pylint: disable=broad-except
      # Orbax raises what its writer threads met (ValueError for TensorStore's
      # RESOURCE_EXHAUSTED, OSError...), often at the save after the one that failed.
      raise self._save_error(error, step) from error
    if jax.process_index() == 0:  # the manager may have deleted old steps
      kept = {str(s) for s in self._manager.all_steps()} | {str(step)}
      for path in self._digests_dir.glob("*.json"):
        if path.stem not in kept:
          path.unlink()

  @property
  def _digests_dir(self) -> pathlib.Path:
    return self.directory.parent / DIGESTS_DIR

  def _digest_path(self, step: int) -> pathlib.Path:
    return self._digests_dir / f"{step}.json"

  def _saved_digests(self, step: int) -> dict[str, str] | None:
    path = self._digest_path(step)
    if not path.exists():
      logging.warning("Checkpoint at step %d in %s was written before checkpoint digests "
                      "existed (no %s): restored with a finiteness check only.", step,
                      self.directory, path)
      return None
    return json.loads(path.read_text())

  def restore_latest(self, abstract_state: Any) -> tuple[Any, int] | tuple[None, None]:
    """The newest checkpoint that restores, as ``(state, step)``; ``(None, None)`` if none.

    A checkpoint that fails to restore (truncated or corrupt files), or whose
    values differ from the digests written at save time or are not finite, is
    skipped with a warning that names it and the previous one is tried; once one restores, the unreadable
    newer ones are moved to ``<workdir>/unreadable_checkpoints`` (so that the
    resumed run can save those steps again). If checkpoints exist but none
    restores, this raises :class:`CheckpointError` instead of starting afresh.

    Args:
      abstract_state: ``jax.ShapeDtypeStruct`` leaves (with shardings) of the state.
    """
    self._manager.wait_until_finished()
    unreadable = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        restored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
      except Exception as error:  # pylint: disable=broad-except
        # Orbax and TensorStore raise many types for damaged files (ValueError,
        # OSError, KeyError, json errors...); any of them means "not usable".
        logging.warning(
            "Checkpoint at step %d in %s cannot be restored (%s: %s); falling back to "
            "the previous checkpoint.", step, self.directory, type(error).__name__,
            str(error)[:300])
        unreadable.append(step)
        continue
      problem = _integrity_problem(restored, self._saved_digests(step))
      if problem is not None:
        logging.warning(
            "Checkpoint at step %d in %s fails its integrity check (%s); falling back to "
            "the previous checkpoint.", step, self.directory, problem)
        unreadable.append(step)
        continue
      self._set_aside(unreadable)
      return restored, step
    if unreadable:
      raise CheckpointError(
          f"No checkpoint in {self.directory} restores (steps {sorted(unreadable)}; see the "
          "warnings above). Fix: if the state changed shape (num_seeds or a model size, or "
          "a release that adds or drops parameters, see CHANGELOG.md), use a new "
          "--workdir; to start this run afresh, move the checkpoints directory away.")
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
      if self._digest_path(step).exists():
        shutil.move(self._digest_path(step), target / "digests.json")
    self._manager.reload()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def close(self) -> None:
    """Waits for pending saves and releases the manager (as leaving the context does)."""
    self.__exit__(None, None, None)
