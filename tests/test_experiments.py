"""The experiment runner: configs, smoke training, resume, NaN stop, sharding, report.

Compiling a train step is the expensive part, so runs that share a config share the
compiled step (the ``compiled`` fixture keeps one train.Experiment per config; the
runner itself caches nothing) and the module-scoped fixtures below train each smoke
config once.
"""

import io
import json
import logging as pylogging
import os
import pathlib
import re
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest
import scipy.stats
from absl import flags
from flax import traverse_util

import noisy_jax
import noisy_jax.rnn
from configs import associative_recall
from configs import copy as copy_config
from configs import deep_mlp
from configs import unique_integers
from experiments import checkpoints
from experiments import input_pipeline
from experiments import lock as lock_lib
from experiments import main as main_lib
from experiments import make_run
from experiments import metrics as metrics_lib
from experiments import paper_b_table1
from experiments import report
from experiments import train
from experiments import validation

CONFIG_MODULES = (unique_integers, deep_mlp, associative_recall, copy_config)
# Compiles several times faster on CPU; the smoke runs check behaviour, not speed.
FAST = {"xla_backend_optimization_level": 0}


def _records(workdir, split):
  return [r for r in metrics_lib.read_metrics(workdir) if r["split"] == split]


def _without_timing(records):
  return [{k: v for k, v in r.items() if k != "steps_per_sec"} for r in records]


@pytest.fixture(scope="module")
def compiled():
  """The tests' compile cache: ``compiled(config)`` is one train.Experiment per config."""
  cache = {}

  def get(config):
    key = config.to_json(sort_keys=True)
    if key not in cache:
      cache[key] = train.create_experiment(config, FAST)
    return cache[key]
  return get


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def counting_run(compiled, runs_dir):
  """unique_integers:smoke (noisy LSTM, annealed c, curriculum) on all 8 devices."""
  config = unique_integers.get_config("smoke")
  workdir = runs_dir / "unique_integers" / "smoke"
  return config, workdir, train.train_and_evaluate(config, workdir, experiment=compiled(config))


@pytest.fixture(scope="module")
def mlp_run(compiled, runs_dir):
  config = deep_mlp.get_config("smoke")
  workdir = runs_dir / "deep_mlp" / "smoke"
  return config, workdir, train.train_and_evaluate(config, workdir, experiment=compiled(config))


# --- configs -----------------------------------------------------------------------


@pytest.mark.parametrize("module", CONFIG_MODULES, ids=lambda m: m.__name__)
def test_every_variant_validates(module):
  assert "smoke" in module.VARIANTS
  for variant in module.VARIANTS:
    config = module.get_config(variant)
    assert config.variant == variant
    assert config.is_locked, f"{module.__name__}:{variant} is not locked"
    validation.validate(config, num_available_devices=8)


def _commented_fields(path):
  """Fields assigned in ``path`` with a comment on the line or on the line above."""
  lines = path.read_text().splitlines()
  found = set()
  for number, line in enumerate(lines):
    match = re.match(r"\s*config\.([\w.]+) = ", line)
    if match and ("#" in line or lines[number - 1].strip().startswith("#")):
      found.add(match.group(1))
  return found


def _leaf_paths(tree, prefix=""):
  for name, value in tree.items():
    if isinstance(value, dict):
      yield from _leaf_paths(value, f"{prefix}{name}.")
    else:
      yield prefix + name


@pytest.mark.parametrize("module", CONFIG_MODULES, ids=lambda m: m.__name__)
def test_every_field_is_commented_where_it_is_defined(module):
  commented = _commented_fields(pathlib.Path(module.__file__)) | _commented_fields(
      pathlib.Path(unique_integers.__file__).parent / "common.py")
  for variant in module.VARIANTS:
    missing = set(_leaf_paths(module.get_config(variant).to_dict())) - commented
    assert not missing, f"{module.__name__}:{variant} has uncommented fields {missing}"


def test_table_variants_carry_the_papers_numbers():
  assert unique_integers.get_config("nan_annealed").paper.value == 9.53
  assert unique_integers.get_config("reference").paper.value == 33.28
  zero_noise = deep_mlp.get_config("zero_clip10_noise_lr0.1").paper
  assert zero_noise.value is None and "best 94.5 %, average 49.7 %" in zero_noise.source
  zero = deep_mlp.get_config("zero_clip10_nonoise_lr0.01")
  assert (zero.model.init, zero.optimizer.clip_norm, zero.optimizer.gradient_noise_eta,
          zero.optimizer.learning_rate) == ("zero", 10.0, 0.0, 0.01)
  with pytest.raises(ValueError, match="Valid"):
    deep_mlp.get_config("zero_clip5_noise_lr0.1")


def test_misspelt_fields_and_wrong_types_are_refused_when_assigned():
  config = unique_integers.get_config("smoke")
  with pytest.raises(AttributeError, match='Did you mean "num_steps" instead of "num_step"'):
    config.train.num_step = 3
  with pytest.raises(TypeError, match="x is of original type <class 'str'> and cannot be casted "
                     "to type <class 'int'>"):
    config.train.num_steps = "x"
  with pytest.raises(KeyError, match='Did you mean "length" instead of "lenght"'):
    config.update_from_flattened_dict({"task.lenght": 5})
  assert (config.train.num_steps, "num_step" in config.train) == (4, False)


def test_invalid_configs_fail_before_compiling(tmp_path, monkeypatch):
  def no_build(*args, **kwargs):
    raise AssertionError("the experiment was built for an invalid config")
  monkeypatch.setattr(train, "Experiment", no_build)
  config = unique_integers.get_config("smoke")
  config.optimizer.learning_rate = -1.0
  config.noise.mode = "nanx"
  config.train.log_every = True  # a bool is an int to ConfigDict's type check
  config.train.eval_every = None  # ConfigDict takes None for any field
  config.eval.success_threshold = float("nan")
  with pytest.raises(validation.ConfigError) as error:
    train.train_and_evaluate(config, tmp_path)
  message = str(error.value)
  assert "optimizer.learning_rate must be a number > 0.0, got -1.0" in message
  assert "noise.mode must be one of" in message and "'nanx'" in message
  assert "train.log_every must be an int >= 1, got True" in message
  assert "train.eval_every must be set, got None" in message
  assert "eval.success_threshold must be finite, got nan" in message
  assert not (tmp_path / "checkpoints").exists()


def test_value_constraints_of_a_model_and_ranges_of_a_task():
  config = copy_config.get_config("smoke")
  config.model.shift_range = -1
  with pytest.raises(validation.ConfigError, match="model.shift_range must be an int >= 0"):
    validation.validate(config, num_available_devices=8)
  config.model.shift_range = 1
  config.task.min_length = 5
  with pytest.raises(validation.ConfigError,
                     match="task.min_length=5 is larger than task.max_length=3"):
    validation.validate(config, num_available_devices=8)


@pytest.mark.parametrize("change, expected", [
    (lambda c: c.train.__setattr__("batch_size", 12), "does not split over 8 devices"),
    (lambda c: c.__setattr__("num_devices", 16), "only 8 devices are visible"),
    (lambda c: c.model.__setattr__("name", "mlp"),
     r"model.name='mlp' needs model.num_layers, model.width, model.init, model.init_std, "
     "which the model section lacks"),
    (lambda c: c.noise.__setattr__("c_final", 40.0), "noise.c_final=40.0 is larger"),
    (lambda c: c.eval.__setattr__("metric", "bit_errors"), "eval.metric='bit_errors'"),
    (lambda c: c.task.__setattr__("curriculum_start", 30), "curriculum_start=30 is longer"),
    (lambda c: c.noise.update({"mode": "none", "anneal": False, "c": 1.0}),
     "noise.c=1.0 with noise.mode='none' has no effect"),
])
def test_impossible_values(change, expected):
  config = unique_integers.get_config("smoke")
  change(config)
  with pytest.raises(validation.ConfigError, match=expected):
    validation.validate(config, num_available_devices=8)


def test_digits_eval_set_larger_than_the_test_split_is_refused():
  config = deep_mlp.get_config("smoke")
  config.eval.num_examples = 100_000
  with pytest.raises(validation.ConfigError, match="eval.num_examples=100000 is larger than"):
    input_pipeline.make_task(config)


def test_unlocked_configs_and_hand_written_sections_are_refused():
  config = deep_mlp.get_config("smoke")
  with pytest.raises(validation.ConfigError, match="The config is not locked"):
    validation.validate(ml_collections.ConfigDict(config.to_dict()), num_available_devices=8)
  model = config.model.to_dict()
  model["width"] = "fifty"  # a hand-written section: ConfigDict's own check never ran
  config.model = ml_collections.ConfigDict(model)
  with pytest.raises(validation.ConfigError, match="Section model is not locked"):
    validation.validate(config, num_available_devices=8)
  config.model.lock()
  with pytest.raises(validation.ConfigError,
                     match="model.width must be an int >= 1, got 'fifty'") as error:
    validation.validate(config, num_available_devices=8)
  assert "not locked" not in str(error.value)


# --- training ----------------------------------------------------------------------


def test_smoke_counting_run(compiled, counting_run):
  config, workdir, result = counting_run
  assert result["summary"]["num_runs"] == config.num_seeds == 2
  assert len(result["per_run"]["error_pct"]) == 2
  train_records = _records(workdir, "train")
  assert [r["step"] for r in train_records] == [2, 4]
  assert [r["step"] for r in _records(workdir, "eval")] == [0, 2, 4]
  assert all(np.isfinite(r["loss"]).all() and len(r["loss"]) == 2 for r in train_records)
  # c is annealed inside the step: 30 / sqrt(floor(t / 2) + 1) at t = 1 and 3.
  np.testing.assert_allclose(train_records[0]["c"], [30.0, 30.0])
  np.testing.assert_allclose(train_records[1]["c"], [30 / np.sqrt(2)] * 2, rtol=1e-6)
  # ...without retracing: one trace served all four updates.
  assert compiled(config).train_step_traces == 1
  assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) \
      == [2, 4]
  assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
  final = json.loads((workdir / "final_metrics.json").read_text())
  assert final["summary"] == result["summary"]
  # Independent runs: different keys give different parameters and losses.
  assert train_records[-1]["loss"][0] != train_records[-1]["loss"][1]


def test_smoke_deep_mlp_run(mlp_run):
  config, workdir, result = mlp_run
  assert result["summary"]["metric"] == "accuracy_pct"
  assert len(result["per_run"]["accuracy_pct"]) == config.num_seeds
  records = _records(workdir, "train")
  assert records and all(np.isfinite(r["grad_norm"]).all() for r in records)


@pytest.mark.parametrize("module", [associative_recall, copy_config],
                         ids=["associative_recall", "copy"])
def test_smoke_ntm_runs(compiled, module, runs_dir):
  config = module.get_config("smoke")
  result = train.train_and_evaluate(config, runs_dir / config.name / "smoke",
                                    experiment=compiled(config))
  assert result["summary"]["metric"] == "bit_errors"
  values = np.asarray(result["per_run"]["bit_errors"])
  assert values.shape == (2,) and np.isfinite(values).all() and (values >= 0).all()


def _first_batches(num_seeds, shared_data):
  config = unique_integers.get_config("smoke")
  config.num_seeds, config.shared_data = num_seeds, shared_data
  experiment = train.create_experiment(config, FAST)
  state = train.TrainState(jax.numpy.asarray(0), None, None, experiment.run_keys(), None)
  return jax.jit(experiment._batch)(state, {})  # pylint: disable=protected-access


def test_data_streams_per_run_and_shared():
  two, three = _first_batches(2, False), _first_batches(3, False)
  assert two["inputs"].shape == (2, 8, 26)
  # Run i's data do not depend on how many runs train beside it...
  np.testing.assert_array_equal(two["inputs"], three["inputs"][:2])
  # ...and differ between runs.
  assert not np.array_equal(three["inputs"][0], three["inputs"][1])
  shared = _first_batches(3, True)
  assert shared["inputs"].shape == (8, 26)  # one batch, broadcast over the runs by vmap


def test_resume_after_kill_matches_uninterrupted(compiled, counting_run, tmp_path, monkeypatch):
  config, workdir, uninterrupted = counting_run
  experiment = compiled(config)
  compiled_step, calls = experiment.train_step, []

  def killed_in_step_3(state, data):
    calls.append(1)
    if len(calls) == 3:
      raise KeyboardInterrupt("killed")
    return compiled_step(state, data)

  monkeypatch.setattr(experiment, "train_step", killed_in_step_3)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, tmp_path, experiment=compiled(config))
  assert (tmp_path / "checkpoints" / "2").exists() and not (tmp_path / "final_metrics.json").exists()
  monkeypatch.setattr(experiment, "train_step", compiled_step)
  resumed = train.train_and_evaluate(config, tmp_path, experiment=compiled(config))
  assert resumed["per_run"] == uninterrupted["per_run"]
  assert _without_timing(metrics_lib.read_metrics(tmp_path)) == _without_timing(
      metrics_lib.read_metrics(workdir))


def test_resume_refuses_a_changed_config_but_takes_a_new_budget_and_step_size(
    compiled, mlp_run, tmp_path):
  config, workdir, _ = mlp_run
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.copytree(workdir, tmp_path, dirs_exist_ok=True)
  changed = config.copy_and_resolve_references()
  changed.optimizer.gradient_noise_eta = 0.3
  with pytest.raises(validation.ConfigError,
                     match=r"optimizer.gradient_noise_eta: 0.01 -> 0.3\). Fix: use a new --workdir"):
    train.train_and_evaluate(changed, tmp_path, experiment=compiled(changed))
  more_seeds = config.copy_and_resolve_references()
  more_seeds.num_seeds = 3  # a different state shape: refused before any restore
  with pytest.raises(validation.ConfigError, match=r"num_seeds: 2 -> 3"):
    train.train_and_evaluate(more_seeds, tmp_path, experiment=compiled(more_seeds))
  shorter = config.copy_and_resolve_references()
  shorter.train.num_steps = 2
  with pytest.raises(validation.ConfigError, match=r"checkpoint at step 4, past train.num_steps=2"):
    train.train_and_evaluate(shorter, tmp_path, experiment=compiled(config))  # same program
  longer = config.copy_and_resolve_references()
  longer.train.num_steps = 6
  longer.optimizer.learning_rate = 0.05  # allowed: how a run gets past a non-finite loss
  longer.paper.source = "a corrected citation"  # report metadata may change too
  result = train.train_and_evaluate(longer, tmp_path, experiment=compiled(longer))
  assert result["step"] == 6
  assert [r["step"] for r in _records(tmp_path, "train")] == [2, 4, 6]
  # config.json now holds the new values; the resume history keeps the old ones.
  history = [json.loads(line) for line in
             (tmp_path / metrics_lib.RESUME_HISTORY_FILE).read_text().splitlines()]
  assert [(h["step"], h["field"], h["old"], h["new"]) for h in history] == [
      (4, "optimizer.learning_rate", config.optimizer.learning_rate, 0.05),
      (4, "train.num_steps", config.train.num_steps, 6)]
  text = report.table(report.find_runs(tmp_path))
  assert (f"resumed at step 4 with optimizer.learning_rate "
          f"{config.optimizer.learning_rate!r} -> 0.05") in text


def test_corrupt_latest_checkpoint_falls_back(compiled, counting_run, tmp_path, caplog):
  config, workdir, uninterrupted = counting_run
  experiment = compiled(config)
  state = experiment.init_state(experiment.run_keys())
  checkpointer = checkpoints.Checkpointer(tmp_path / "checkpoints", max_to_keep=3)
  for step in (1, 2):
    checkpointer.save(step, state._replace(step=state.step + step))
  checkpointer.close()
  (tmp_path / "checkpoints" / "2" / "default" / "_METADATA").write_text("{corrupt")
  abstract = jax.eval_shape(lambda: state)
  checkpointer = checkpoints.Checkpointer(tmp_path / "checkpoints", max_to_keep=3)
  with caplog.at_level(pylogging.WARNING, logger="absl"):
    restored, step = checkpointer.restore_latest(abstract)
  checkpointer.close()
  assert step == 1 and int(restored.step) == 1
  assert "Checkpoint at step 2" in caplog.text and "falling back" in caplog.text
  np.testing.assert_array_equal(jax.random.key_data(restored.keys), jax.random.key_data(state.keys))
  jax.tree.map(np.testing.assert_array_equal, restored.params, state.params)
  assert not (tmp_path / "checkpoints" / "2").exists()
  set_aside, = (tmp_path / "unreadable_checkpoints").glob("2.*")  # moved, not deleted
  assert (set_aside / "default" / "_METADATA").read_text() == "{corrupt"


def test_bit_flipped_checkpoint_is_caught_and_set_aside(tmp_path, caplog):
  """16 bytes XOR-ed inside the newest checkpoint's largest data file, at a place Orbax
  itself does not notice (it restores other values without an error): the digests no
  longer match, so it is set aside with a warning naming it and the previous one
  restores. A checkpoint without digests (an older release's) restores with a warning."""
  state = {"params": jnp.asarray(np.random.default_rng(0).normal(size=(200, 100)), jnp.float32),
           "keys": jax.random.split(jax.random.key(0), 3)}
  checkpointer = checkpoints.Checkpointer(tmp_path / "checkpoints", max_to_keep=3)
  for step in (1, 2):
    checkpointer.save(step, state)
  checkpointer.close()
  largest = max((p for p in (tmp_path / "checkpoints" / "2").rglob("d/*") if p.is_file()),
                key=lambda p: p.stat().st_size)  # the largest array data file
  original = largest.read_bytes()
  abstract = jax.eval_shape(lambda: state)
  saved = checkpoints.digests(state)
  for offset in range(len(original) // 10, len(original) - 16, len(original) // 10):
    data = bytearray(original)
    data[offset:offset + 16] = bytes(b ^ 0xFF for b in data[offset:offset + 16])
    largest.write_bytes(bytes(data))
    with ocp.CheckpointManager(tmp_path / "checkpoints") as manager:
      try:
        silent = manager.restore(2, args=ocp.args.StandardRestore(abstract))
      except Exception:  # pylint: disable=broad-except
        continue
    if checkpoints.digests(silent) != saved:
      break  # restored without an error, with other values
  else:
    pytest.fail("no flip restored silently with changed values: nothing to catch")
  checkpointer = checkpoints.Checkpointer(tmp_path / "checkpoints", max_to_keep=3)
  with caplog.at_level(pylogging.WARNING, logger="absl"):
    restored, step = checkpointer.restore_latest(abstract)
  assert step == 1, caplog.text
  assert "Checkpoint at step 2" in caplog.text and "fails its integrity check" in caplog.text
  set_aside, = (tmp_path / "unreadable_checkpoints").glob("2.*")
  assert (set_aside / "digests.json").exists()
  caplog.clear()
  (tmp_path / checkpoints.DIGESTS_DIR / "1.json").unlink()
  with caplog.at_level(pylogging.WARNING, logger="absl"):
    restored, step = checkpointer.restore_latest(abstract)
  checkpointer.close()
  assert step == 1 and "written before checkpoint digests existed" in caplog.text
  np.testing.assert_array_equal(restored["params"], state["params"])


def test_checkpointer_keeps_the_last_k(compiled, counting_run, tmp_path):
  config, _, _ = counting_run
  experiment = compiled(config)
  state = experiment.init_state(experiment.run_keys())
  checkpointer = checkpoints.Checkpointer(tmp_path, max_to_keep=2)
  for step in (5, 10, 15):
    checkpointer.save(step, state)
  checkpointer.close()
  assert sorted(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()) == [10, 15]


def test_full_disk_is_refused_before_saving_and_orbax_tracebacks_are_one_line(
    tmp_path, monkeypatch):
  """A disk without room for a checkpoint: one CheckpointError naming the sizes and the
  checkpoint the rerun resumes from, raised before Orbax writes (its writer threads
  would log a traceback each); an Orbax error record keeps its line, not its traceback."""
  state = {"params": jnp.ones((100, 100))}
  with checkpoints.Checkpointer(tmp_path, max_to_keep=2) as checkpointer:
    checkpointer.save(1, state)
    checkpointer._manager.wait_until_finished()  # pylint: disable=protected-access
    usage = checkpoints.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(checkpoints.shutil, "disk_usage",
                        lambda path: usage._replace(free=300_000))
    with pytest.raises(checkpoints.CheckpointError,
                       match=r"at step 2 .* about 1\.0 MiB needed, 0\.3 MiB free.* resumes "
                             r"from the last saved checkpoint \(step 1\)") as error:
      checkpointer.save(2, state)
  assert "\n" not in str(error.value)
  assert checkpointer.all_steps() == [1]
  record = pylogging.LogRecord("absl", pylogging.ERROR, "/x/orbax/checkpoint/future.py", 1,
                               "thread raised", None, (ValueError, ValueError("full"), None))
  metrics_lib._quiet_orbax(record)  # pylint: disable=protected-access
  assert record.exc_info is None and record.getMessage() == "thread raised"


def test_resume_from_corrupt_latest_reaches_same_result(compiled, counting_run, tmp_path, caplog):
  config, workdir, uninterrupted = counting_run
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.copytree(workdir, tmp_path, dirs_exist_ok=True)
  (tmp_path / "checkpoints" / "4" / "default" / "_METADATA").write_text("{corrupt")
  with caplog.at_level(pylogging.WARNING, logger="absl"):
    resumed = train.train_and_evaluate(config, tmp_path, experiment=compiled(config))
  assert "Checkpoint at step 4" in caplog.text
  assert resumed["per_run"] == uninterrupted["per_run"]


def test_no_readable_checkpoint_stops_instead_of_starting_afresh(compiled, counting_run, tmp_path):
  config, workdir, _ = counting_run
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.copytree(workdir, tmp_path, dirs_exist_ok=True)
  for step in (2, 4):
    (tmp_path / "checkpoints" / str(step) / "default" / "_METADATA").write_text("{corrupt")
  records = metrics_lib.read_metrics(tmp_path)
  with pytest.raises(checkpoints.CheckpointError, match=r"steps \[2, 4\].*Fix: "):
    train.train_and_evaluate(config, tmp_path, experiment=compiled(config))
  assert metrics_lib.read_metrics(tmp_path) == records  # nothing overwritten
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2", "4"]


def test_rerunning_a_finished_run_changes_nothing(compiled, counting_run, tmp_path):
  config, workdir, uninterrupted = counting_run
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.copytree(workdir, tmp_path, dirs_exist_ok=True)
  again = train.train_and_evaluate(config, tmp_path, experiment=compiled(config))
  assert again["per_run"] == uninterrupted["per_run"]
  assert metrics_lib.read_metrics(tmp_path) == metrics_lib.read_metrics(workdir)


def test_killed_before_the_first_checkpoint_restarts_cleanly(compiled, counting_run, tmp_path,
                                                            monkeypatch):
  config, workdir, uninterrupted = counting_run
  experiment = compiled(config)
  compiled_step = experiment.train_step

  def killed(state, data):
    raise KeyboardInterrupt("killed")

  monkeypatch.setattr(experiment, "train_step", killed)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, tmp_path, experiment=compiled(config))
  assert [(r["step"], r["split"]) for r in metrics_lib.read_metrics(tmp_path)] == [
      (0, "chance"), (0, "eval")]  # the chance level and the step-0 evaluation
  monkeypatch.setattr(experiment, "train_step", compiled_step)
  restarted = train.train_and_evaluate(config, tmp_path, experiment=compiled(config))
  assert restarted["per_run"] == uninterrupted["per_run"]
  assert _without_timing(metrics_lib.read_metrics(tmp_path)) == _without_timing(
      metrics_lib.read_metrics(workdir))  # no second step-0 record


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(compiled, counting_run, tmp_path,
                                                             monkeypatch):
  config, _, _ = counting_run
  experiment = compiled(config)
  compiled_step, calls = experiment.train_step, []

  def run_1_diverges_before_step_3(state, data):
    calls.append(1)
    if len(calls) == 3:
      params = jax.tree.map(lambda p: p.at[1].set(np.nan), state.params)
      state = state._replace(params=params)
    return compiled_step(state, data)

  monkeypatch.setattr(experiment, "train_step", run_1_diverges_before_step_3)
  with pytest.raises(train.NonFiniteLossError) as error:
    train.train_and_evaluate(config, tmp_path, experiment=compiled(config))
  err = error.value
  assert (err.step, err.runs, err.checkpoint_step) == (3, [1], 2)
  assert "at step 3" in str(err) and "run(s) [1] of seed 0" in str(err)
  assert "the last good checkpoint is step 2" in str(err)
  steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert steps == [0, 2]  # the initial state, and the last one before the NaN
  nonfinite, = _records(tmp_path, "nonfinite")
  assert nonfinite["step"] == 3 and nonfinite["diverged"] == [0.0, 1.0]
  assert not (tmp_path / "final_metrics.json").exists()


def test_freeze_keeps_a_diverged_seed_and_trains_the_others(compiled, mlp_run, tmp_path):
  """on_nonfinite="freeze": run 1 of 2 diverges in step 3 (its weights times 1e30
  overflow its logits; they are put back after that step, so step 4 could train it
  again); it stays at its parameters before step 3 and the step is recorded, while
  run 0 trains on exactly as without the divergence; a rerun restores the record."""
  config, _, plain = mlp_run
  config = config.copy_and_resolve_references()
  config.train.on_nonfinite = "freeze"
  config.eval.success_threshold = 0.0  # every finite accuracy succeeds...
  experiment = compiled(config)
  compiled_step, calls, before = experiment.train_step, [], {}

  def run_1_overflows_in_step_3(state, data):
    calls.append(1)
    if len(calls) != 3:
      return compiled_step(state, data)
    before["params"] = jax.tree.map(lambda p: np.asarray(p[1]), state.params)
    overflowing = jax.tree.map(lambda p: p.at[1].multiply(1e30), state.params)
    state, metrics = compiled_step(state._replace(params=overflowing), data)
    params = jax.tree.map(lambda p, b: p.at[1].set(b), state.params, before["params"])
    return state._replace(params=params), metrics

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(experiment, "train_step", run_1_overflows_in_step_3)
    result = train.train_and_evaluate(config, tmp_path, experiment=experiment)
  assert result["diverged_at"] == [0, 3]
  assert result["summary"]["num_diverged"] == 1
  metric = config.eval.metric
  assert result["per_run"][metric][0] == plain["per_run"][metric][0]  # run 0 unaffected
  assert result["summary"]["success_rate"] == 0.5  # ...but a diverged run never does
  assert "| 50% (1 diverged) |" in report.table(report.find_runs(tmp_path))
  nonfinite, = _records(tmp_path, "nonfinite")
  assert nonfinite["step"] == 3 and nonfinite["diverged"] == [0.0, 1.0]
  assert [r["diverged"] for r in _records(tmp_path, "train")] == [[0.0, 0.0], [0.0, 1.0]]
  with checkpoints.Checkpointer(tmp_path / "checkpoints", max_to_keep=2) as checkpointer:
    abstract = jax.eval_shape(experiment.init_state, experiment.run_keys())
    state, step = checkpointer.restore_latest(abstract)
  assert step == 4 and state.diverged_at.tolist() == [0, 3]
  jax.tree.map(np.testing.assert_array_equal,  # step 4 did not train the frozen run
               jax.tree.map(lambda p: np.asarray(p[1]), state.params), before["params"])
  again = train.train_and_evaluate(config, tmp_path, experiment=experiment)  # restored
  assert again["diverged_at"] == [0, 3] and again["per_run"] == result["per_run"]


def test_eight_devices_match_one_device(compiled, counting_run, tmp_path):
  config, workdir, sharded = counting_run
  assert compiled(config).mesh.devices.size == 8
  single = config.copy_and_resolve_references()
  single.num_devices = 1
  result = train.train_and_evaluate(single, tmp_path, experiment=compiled(single))
  assert len(_records(workdir, "train")) == len(_records(tmp_path, "train")) == 2
  for a, b in zip(_records(workdir, "train"), _records(tmp_path, "train")):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=2e-5)
    np.testing.assert_allclose(a["grad_norm"], b["grad_norm"], rtol=2e-4)
  np.testing.assert_allclose(result["per_run"]["loss"], sharded["per_run"]["loss"], rtol=2e-5)


def _free_port() -> int:
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


def test_two_processes_train_as_one(mlp_run, tmp_path):
  """Two processes on 127.0.0.1 (CPU backend, one device each) started with the flags:
  the same losses as one process (this one's run, on 8 devices), metrics written once
  (by process 0), checkpoints written and restored by both."""
  root = pathlib.Path(__file__).parent.parent
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  base = [sys.executable, "-m", "experiments.main", "--config=configs/deep_mlp.py:smoke"]

  def two_processes(workdir, *extra):
    port = _free_port()
    procs = [subprocess.Popen(
        base + [f"--workdir={workdir}", "--multihost", f"--coordinator_address=127.0.0.1:{port}",
                "--num_processes=2", f"--process_id={i}", *extra],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (_, err) in zip(procs, outputs):
      assert proc.returncode == 0, err[-3000:]
    return outputs

  two_processes(tmp_path / "two")
  two, one = _records(tmp_path / "two", "train"), _records(mlp_run[1], "train")
  assert [r["step"] for r in two] == [r["step"] for r in one]  # each record once
  for a, b in zip(two, one):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=2e-5)
  steps = sorted(int(p.name) for p in (tmp_path / "two" / "checkpoints").iterdir()
                 if p.name.isdigit())
  assert steps  # both processes took part in writing them (orbax waits for all)
  outputs = two_processes(tmp_path / "two", f"--config.train.num_steps={steps[-1] + 2}")
  for _, err in outputs:  # both restore
    assert f"Resuming deep_mlp:smoke from step {steps[-1]}" in err


# config_flags loads config files with importlib's deprecated load_module().
@pytest.mark.filterwarnings("ignore:the load_module.. method is deprecated:DeprecationWarning")
def test_main_passes_the_config_file_and_workdir(tmp_path, capsys, monkeypatch):
  calls = []

  def fake_train_and_evaluate(config, workdir):
    calls.append((config, workdir))
    return {"summary": {"metric": "accuracy_pct", "mean": 12.5}}

  monkeypatch.setattr(train, "train_and_evaluate", fake_train_and_evaluate)
  config_path = pathlib.Path(deep_mlp.__file__)
  flags.FLAGS(["main", f"--config={config_path}:smoke", f"--workdir={tmp_path}"])
  try:
    main_lib.main([])
  finally:
    flags.FLAGS.unparse_flags()
  (config, workdir), = calls
  assert (config.name, config.variant, workdir) == ("deep_mlp", "smoke", str(tmp_path))
  assert json.loads(capsys.readouterr().out)["mean"] == 12.5


@pytest.mark.parametrize("error", [
    validation.ConfigError("train.num_steps must be > 0.\nFix: pass a positive value."),
    lock_lib.WorkdirLockedError("/w is in use by process 7 on host h. Fix: wait."),
    checkpoints.CheckpointError("No checkpoint in /w restores. Fix: move it away."),
    train.NonFiniteLossError("Non-finite loss at step 3. Fix: lower the rate.", 3, [0], None),
    OSError(28, "No space left on device", "/w/checkpoints/4"),
], ids=["config", "locked", "checkpoint", "nonfinite", "disk_full"])
@pytest.mark.filterwarnings("ignore:the load_module.. method is deprecated:DeprecationWarning")
def test_main_ends_a_user_error_in_one_line(error, tmp_path, monkeypatch, capsys):
  """One line naming the problem and the fix, no traceback (with --verbosity=1 it raises)."""
  def failing(config, workdir):
    raise error
  monkeypatch.setattr(train, "train_and_evaluate", failing)
  flags.FLAGS(["main", f"--config={deep_mlp.__file__}:smoke", f"--workdir={tmp_path}"])
  try:
    with pytest.raises(SystemExit) as exit_info:
      main_lib.main(["main"])
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "\n" not in message and "Fix:" in message
    if isinstance(error, OSError):
      assert "No space left on device (/w/checkpoints/4)" in message
    flags.FLAGS.verbosity = 1
    with pytest.raises(type(error)):
      main_lib.main(["main"])
  finally:
    flags.FLAGS.unparse_flags()


@pytest.mark.filterwarnings("ignore:the load_module.. method is deprecated:DeprecationWarning")
def test_main_refuses_extra_arguments_and_a_workdir_that_is_a_file(tmp_path):
  flags.FLAGS(["main", f"--config={deep_mlp.__file__}:smoke", f"--workdir={tmp_path}"])
  try:
    with pytest.raises(SystemExit, match=r"unexpected arguments \['num_steps=5'\]\. Fix"):
      main_lib.main(["main", "num_steps=5"])
  finally:
    flags.FLAGS.unparse_flags()
  workdir = tmp_path / "a_file"
  workdir.write_text("")
  flags.FLAGS(["main", f"--config={deep_mlp.__file__}:smoke", f"--workdir={workdir}"])
  try:
    with pytest.raises(SystemExit, match=rf"^error: File exists \({workdir}\)\. Fix: give "
                       "--workdir a writable directory"):
      main_lib.main(["main"])
  finally:
    flags.FLAGS.unparse_flags()


# --- metrics and report --------------------------------------------------------------


def test_report_plots_and_table(counting_run, mlp_run, runs_dir):
  text = report.make_report(runs_dir)
  assert "| smoke | 2 |" in text and "Paper A, Table 5" in text and "Paper B, Table 1" in text
  assert (runs_dir / "report.md").read_text() == text
  for name in ("unique_integers", "deep_mlp"):
    png = (runs_dir / f"{name}_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_unit_statistics_are_logged_at_each_evaluation_and_plotted(compiled, counting_run,
                                                                   tmp_path):
  base, base_workdir, _ = counting_run
  config = base.copy_and_resolve_references()
  config.train.unit_statistics = True  # a loop field: the base config's compiled step serves
  workdir = tmp_path / "unique_integers" / "units"
  train.train_and_evaluate(config, workdir, experiment=compiled(base))
  records = _records(workdir, "units")
  assert [r["step"] for r in records] == [0, 2, 4]
  assert not _records(base_workdir, "units")  # off by default
  for record in records:
    assert record.keys() - {"step", "split"} == {
        f"NoisyLSTM_0/{gate}/{field}" for gate in noisy_jax.rnn.LSTM_GATES
        for field in noisy_jax.activations.UnitStatistics._fields}
    values = {key: np.asarray(value) for key, value in record.items() if "/" in key}
    assert all(v.shape == (config.num_seeds,) and np.isfinite(v).all() for v in values.values())
    assert all(((v >= 0) & (v <= 1)).all() for k, v in values.items() if k.endswith("saturated"))
  # The smoke model's small initial weights keep every unit out of saturation, so NAN
  # adds no noise (Eq. 9: sigma is 0 where h(x) = u(x)); with its weights scaled up, the
  # same step's units saturate and get noise (c = 30 at step 0: smoke anneals from 30).
  experiment = compiled(base)
  state, data = experiment.init_state(experiment.run_keys()), experiment.device_data()
  for scale, saturating in ((1.0, False), (20.0, True)):
    scaled = state._replace(params=jax.tree.map(lambda w, s=scale: s * w, state.params))
    units = jax.device_get(experiment.unit_statistics(scaled, data))
    for gate in noisy_jax.rnn.LSTM_GATES:
      saturated = units[f"NoisyLSTM_0/{gate}/saturated"]
      noise_std = units[f"NoisyLSTM_0/{gate}/noise_std"]
      np.testing.assert_array_equal(noise_std > 0, saturated > 0, err_msg=gate)
    assert (max(units[f"NoisyLSTM_0/{gate}/noise_std"].min()
                for gate in noisy_jax.rnn.LSTM_GATES) > 0) == saturating
  np.testing.assert_array_equal(records[0]["NoisyLSTM_0/cell/noise_std"], 0.0)
  text = report.make_report(workdir.parent)
  png = (workdir.parent / "unique_integers_units.png").read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
  assert "unique_integers_units.png" in text
  assert ("- smoke: units at step 4 (saturated, mean noise std, spread of p): "
          "NoisyLSTM_0/candidate 0.0% 0 ") in text


def test_unit_statistics_leave_the_compiled_train_step_unchanged(counting_run):
  base = counting_run[0]
  texts = []
  for flag in (False, True):
    config = base.copy_and_resolve_references()
    config.train.unit_statistics = flag
    experiment = train.create_experiment(config, FAST)
    state = jax.eval_shape(experiment.init_state, experiment.run_keys())
    texts.append(experiment.train_step.lower(state, experiment.device_data()).as_text())
  assert texts[0] == texts[1]


def test_runs_record_chance_and_the_report_shows_it(counting_run, mlp_run):
  for config, workdir, result in (counting_run, mlp_run):
    expected = input_pipeline.chance_metrics(input_pipeline.make_task(config))
    assert result["chance"] == expected
    (record,) = [r for r in metrics_lib.read_metrics(workdir) if r["split"] == "chance"]
    assert record["step"] == 0 and record.keys() - {"step", "split"} == expected.keys()
    run = report.find_runs(workdir)[0]
    assert report.chance(run) == pytest.approx(expected)
    assert f"| {expected[config.eval.metric]:.1f} |" in report.table([run])


def test_paired_difference_is_the_paired_t_interval():
  rng = np.random.default_rng(0)
  baseline = rng.normal(50, 3, 6)
  values = baseline - 10 + rng.normal(0, 1, 6)
  mean, low, high = report.paired_difference(values, baseline)
  interval = scipy.stats.ttest_rel(values, baseline).confidence_interval(0.95)
  assert mean == pytest.approx(np.mean(values - baseline))
  assert (low, high) == pytest.approx((interval.low, interval.high))
  assert report.paired_difference([3.0], [1.0]) == (2.0, 2.0, 2.0)


def test_report_pairs_variants_by_seed(tmp_path):
  def write(variant, values, curve=()):
    run = tmp_path / variant
    run.mkdir()
    (run / "config.json").write_text(json.dumps(
        {"name": "x", "variant": variant, "seed": 0, "eval": {"metric": "error_pct"},
         "paper": {"value": None, "metric": "", "source": ""}}))
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"step": step, "split": "eval", "error_pct": v}) + "\n" for step, v in curve))
    summary = {"metric": "error_pct", "mean": float(np.mean(values)), "std": 0.0,
               "best": min(values), "success_rate": 0.0, "success_threshold": 5.0,
               "num_runs": len(values)}
    (run / "final_metrics.json").write_text(json.dumps(
        {"step": 10, "per_run": {"error_pct": values}, "summary": summary}))
  write("base", [54.0, 50.0, 52.0])
  write("noisy", [4.5, 14.0, 3.0], curve=((0, [50.0, 50.0, 50.0]), (5, [4.0, 20.0, 12.0]),
                                           (10, [4.5, 14.0, 3.0])))
  text = report.table(report.find_runs(tmp_path, order=("base", "noisy")))
  assert "| base | 3 | 52.00 ± 0.00 | 54.0 50.0 52.0 |" in text  # in seed order
  mean, low, high = report.paired_difference([4.5, 14.0, 3.0], [54.0, 50.0, 52.0])
  assert (f"- noisy - base, error_pct paired by seed (3 pairs): {mean:+.2f}, 95% CI "
          f"[{low:+.2f}, {high:+.2f}]") in text
  # mean 50 -> 12 -> 7.17 at the evaluations of steps 0, 5 and 10 (of 10): from step 5 on
  assert ("- noisy: first evaluation step at success, per seed: 5 - 10; mean moved "
          f"{np.mean([4.5, 14.0, 3.0]) - 12.0:+.2f} since step 5") in text
  assert "- base: first evaluation step at success, per seed: - - -" in text


def test_paper_b_table1_pools_the_two_learning_rates():
  def run(variant, accuracies):
    return {"config": {"name": "deep_mlp", "variant": variant},
            "final": {"per_run": {"accuracy_pct": accuracies}}}
  runs = [run("zero_clip10_noise_lr0.1", [95.0, 10.0]),
          run("zero_clip10_noise_lr0.01", [10.0, 11.0]),
          run("good_clip10_nonoise_lr0.1", [97.0]), run("smoke", [50.0]),
          {"config": {"name": "deep_mlp", "variant": "simple_noclip_noise_lr0.1"}, "final": None}]
  good, zero = paper_b_table1.pooled_rows(runs)  # the paper's order: good init first
  assert zero["setting"] == ("zero", "clip10", "noise") and zero["runs"] == 4
  assert (zero["best"], zero["average"], zero["above_90"]) == (95.0, 31.5, 1)
  assert zero["rates"] == {"0.01": 10.5, "0.1": 52.5} and zero["paper"] == (94.5, 49.7)
  assert good["runs"] == 1
  with pytest.raises(ValueError, match="Two finished runs of deep_mlp:good_clip10_nonoise_lr0.1"):
    paper_b_table1.pooled_rows(runs + [run("good_clip10_nonoise_lr0.1", [96.0])])
  text = paper_b_table1.markdown([zero])
  assert ("| zero clip10 noise | 4 | 95.0 | 31.5 | lr 0.01: 10.5, lr 0.1: 52.5 | 1 | 94.5 | 49.7 |"
          in text)


class _CluLikeWriter:
  """What a clu.metric_writers writer offers: these four methods, scalar values."""

  def __init__(self):
    self.calls = []

  def write_scalars(self, step, scalars):
    assert all(isinstance(v, float) for v in scalars.values()), scalars
    self.calls.append(("scalars", step, dict(scalars)))

  def write_hparams(self, hparams):
    self.calls.append(("hparams", dict(hparams)))

  def flush(self):
    self.calls.append(("flush",))

  def close(self):
    self.calls.append(("close",))


def test_metric_writer_drops_records_past_the_resumed_step(tmp_path):
  """Per-run values go to metrics.jsonl, their mean and spread to clu-style writers."""
  clu = _CluLikeWriter()
  writer = metrics_lib.MetricWriter(tmp_path, scalar_writers=[clu])
  writer.write_hparams({"train": {"num_steps": 3}, "name": "x"})
  for step in (1, 2, 3):
    writer.write_scalars(step, {"train/loss": np.asarray([step, 3.0 * step]),
                                "eval/error_pct": np.asarray([50.0, np.nan])})
  writer.flush()
  writer.close()
  assert json.loads((tmp_path / metrics_lib.CONFIG_FILE).read_text())["train"] == {
      "num_steps": 3}
  assert clu.calls[0] == ("hparams", {"train.num_steps": 3, "name": "x"})
  assert clu.calls[1][:2] == ("scalars", 1)
  assert clu.calls[1][2]["train/loss"] == 2.0 and clu.calls[1][2]["train/loss_std"] == 1.0
  assert clu.calls[-2:] == [("flush",), ("close",)]
  first = metrics_lib.read_metrics(tmp_path)[:2]
  assert [(r["step"], r["split"]) for r in first] == [(1, "train"), (1, "eval")]
  assert first[0]["loss"] == [1.0, 3.0] and first[1]["error_pct"] == [50.0, "nan"]
  metrics_lib.MetricWriter(tmp_path, resume_step=2, scalar_writers=()).close()
  assert [r["step"] for r in metrics_lib.read_metrics(tmp_path)] == [1, 1, 2, 2]


def test_torn_last_metrics_line_is_set_aside_not_fatal(tmp_path, caplog, monkeypatch):
  """A kill mid-write leaves half a line: reading warns (file and line named) and skips
  it, resuming moves it to metrics.jsonl.torn, and the rewrite is atomic (a kill during
  it leaves the old file whole)."""
  writer = metrics_lib.MetricWriter(tmp_path, scalar_writers=())
  for step in (1, 2):
    writer.write_scalars(step, {"train/loss": np.asarray([step])})
  writer.close()
  path = tmp_path / metrics_lib.METRICS_FILE
  with path.open("a") as file:
    file.write('{"step": 3, "split": "tr')
  with caplog.at_level("WARNING"):
    assert [r["step"] for r in metrics_lib.read_metrics(tmp_path)] == [1, 2]
  assert f"{path}: line 3 is torn" in caplog.text

  def killed(*args):
    raise KeyboardInterrupt  # the kill lands between writing the copy and the rename
  with monkeypatch.context() as patch:
    patch.setattr(metrics_lib.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
      metrics_lib.MetricWriter(tmp_path, resume_step=2, scalar_writers=())
  assert [r["step"] for r in metrics_lib.read_metrics(tmp_path)] == [1, 2]  # history kept
  metrics_lib.MetricWriter(tmp_path, resume_step=2, scalar_writers=()).close()
  assert path.read_text().count("\n") == 2
  assert (tmp_path / "metrics.jsonl.torn").read_text().startswith('{"step": 3, "split": "tr')
  with path.open("a") as file:
    file.write('garbage\n{"step": 3}\n')
  with pytest.raises(ValueError, match=r"line 3 is not JSON .* not the last line"):
    metrics_lib.read_metrics(tmp_path)


def test_second_run_on_a_workdir_refuses_and_a_stale_lock_is_taken_over(tmp_path, caplog):
  """Two runs on one workdir would write every record twice: the second one refuses,
  naming the holder; a lock left by a dead process, or with an old heartbeat, is taken."""
  held = lock_lib.WorkdirLock(tmp_path)
  with held:
    holder = json.loads((tmp_path / lock_lib.LOCK_FILE).read_text())
    assert holder["pid"] == os.getpid()
    with pytest.raises(lock_lib.WorkdirLockedError,
                       match=rf"in use by process {os.getpid()} on host .*Fix: wait"):
      with lock_lib.WorkdirLock(tmp_path):
        pass
  assert not (tmp_path / lock_lib.LOCK_FILE).exists()  # released
  # A process of this host that does not exist (above Linux's largest pid), and a
  # holder elsewhere whose heartbeat stopped ten minutes ago.
  for stale in ({"pid": 2**22 + 1, "host": socket.gethostname(), "heartbeat": time.time()},
                {"pid": os.getpid(), "host": "elsewhere", "heartbeat": time.time() - 600}):
    (tmp_path / lock_lib.LOCK_FILE).write_text(json.dumps(stale))
    with caplog.at_level("WARNING"), lock_lib.WorkdirLock(tmp_path):
      pass
    assert f"Taking over the stale lock {tmp_path / lock_lib.LOCK_FILE}" in caplog.text
    caplog.clear()


def test_train_and_evaluate_holds_the_workdir_lock(compiled, counting_run, tmp_path):
  config, _, _ = counting_run
  (tmp_path / lock_lib.LOCK_FILE).write_text(json.dumps(
      {"pid": os.getpid(), "host": socket.gethostname(), "heartbeat": time.time()}))
  with pytest.raises(lock_lib.WorkdirLockedError):
    train.train_and_evaluate(config, tmp_path, experiment=compiled(config))


def test_progress_bar_on_terminal_and_log_lines_otherwise(caplog):
  class Terminal(io.StringIO):
    def isatty(self):
      return True
  terminal = Terminal()
  bar = metrics_lib.Progress(100, 0, label="x", stream=terminal)
  bar.update(50, "loss 1.0")
  bar.close()
  assert terminal.getvalue().startswith("\r[############............] x step 50/100 (")
  assert "steps/s, ETA 0:00:0" in terminal.getvalue()
  with caplog.at_level(pylogging.INFO, logger="absl"):
    metrics_lib.Progress(10, 0, stream=io.StringIO()).update(5, "loss 2.0")
  assert "step 5/10" in caplog.text and "loss 2.0" in caplog.text


def test_make_run_configs_differ_only_in_the_ingredient():
  for comparison in make_run.COMPARISONS:
    base, *others = [make_run.small_config(comparison, v) for v in comparison.variants]
    validation.validate(base, num_available_devices=1)
    full = comparison.config_module.get_config(comparison.variants[0])
    flat = lambda c: traverse_util.flatten_dict(c.to_dict(), sep=".")
    assert {k: v for k, v in flat(base).items() if k in comparison.overrides} == (
        comparison.overrides)  # every override took
    assert flat(base)["task.name"] == flat(full)["task.name"]
    for other in others:  # each pair differs in its ingredient only
      differ = {k for k, v in flat(other).items() if flat(base)[k] != v}
      assert differ <= {"variant", "noise.mode", "optimizer.gradient_noise_eta", "paper.value",
                        "paper.source"}, differ
      assert differ & {"noise.mode", "optimizer.gradient_noise_eta"}


def test_main_typo_in_a_config_override_is_one_line(tmp_path):
  command = [sys.executable, "-m", "experiments.main", "--config=configs/deep_mlp.py:smoke",
             f"--workdir={tmp_path}", "--config.trian.num_steps=3"]
  root = pathlib.Path(__file__).parent.parent
  result = subprocess.run(command, cwd=root, capture_output=True, text=True)
  assert result.returncode == 1
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: bad command-line flag: unknown config field 'trian' "
                         "(Did you mean \"train\" instead of \"trian\"?). Fix:"), result.stderr
  assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_main_command_line_with_override_and_resume(tmp_path):
  command = [sys.executable, "-m", "experiments.main", "--config=configs/deep_mlp.py:smoke",
             f"--workdir={tmp_path}", "--config.num_seeds=3"]
  root = pathlib.Path(__file__).parent.parent
  first = subprocess.run(command, cwd=root, capture_output=True, text=True, check=True)
  assert json.loads(first.stdout)["num_runs"] == 3
  again = subprocess.run(command, cwd=root, capture_output=True, text=True, check=True)
  assert json.loads(again.stdout) == json.loads(first.stdout)
  assert "Resuming deep_mlp:smoke from step 4" in again.stderr


@pytest.mark.slow
def test_make_run_end_to_end(tmp_path):
  text = make_run.run(tmp_path)
  for variant in ("simple_clip10_nonoise_lr0.1", "reference", "nan"):
    assert f"| {variant} | " in text
  assert "paired by seed" in text
  for name in ("deep_mlp", "unique_integers"):
    assert (tmp_path / f"{name}_curves.png").exists()
