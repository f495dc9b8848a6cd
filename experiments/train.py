"""Training and evaluation of one experiment config: ``train_and_evaluate(config, workdir)``.

How a run is organised:

* ``config.num_seeds`` independent runs train at once: parameters, optimizer state
  and keys carry a leading run axis and one jitted step ``jax.vmap``s over it.
  Run ``i`` draws everything from ``fold_in(key(config.seed), i)``: its init,
  its data (unless ``config.shared_data``), its unit noise and its gradient noise,
  each from its own fold-in of that key and of the step. So a run never depends
  on how many runs train beside it, and a resumed run replays exactly.
* Batches are generated inside the jitted step (the tasks are pure functions of a
  key), sharded over a ``Mesh`` of ``config.num_devices`` devices along the batch
  axis; parameters are replicated. The same program runs on one device, on eight,
  or on several hosts (``jax.distributed.initialize`` in main.py).
* The annealed noise scale ``c`` is computed from the step inside the jitted step,
  so annealing never recompiles.
* Orbax checkpoints the whole state at step 0 and then every ``checkpoint.every``
  steps (its ``save_interval_steps``); a restarted run resumes from the newest
  readable checkpoint and ends with the same metrics as an uninterrupted run.
* A non-finite loss or gradient, with ``train.on_nonfinite="stop"`` (the default),
  stops training with :class:`NonFiniteLossError`, naming the step and the run;
  checkpoints are only written after the losses since the previous check were found
  finite, so the last one is a good one. With ``"freeze"`` the step itself keeps a
  run whose update is not finite at its last finite parameters and optimizer state
  and records the step (``TrainState.diverged_at``); the other runs train on, and
  the final metrics count the diverged runs (a Paper B-style study, where divergence
  is a result).
* Each call builds its :class:`Experiment` (compiles) unless one is passed in:
  nothing is cached across calls in the process.
"""

import contextlib
import functools
import json
import pathlib
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import traverse_util
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import noisy_jax
import noisy_jax.optim
from experiments import checkpoints
from experiments import input_pipeline
from experiments import lock
from experiments import metrics as metrics_lib
from experiments import models
from experiments import validation

# Fold-in tags of the streams drawn from each run's key.
_INIT, _DATA, _NOISE, _GRADIENT_NOISE = range(4)
# Fold-in tag of the data stream shared by all runs (config.shared_data).
_SHARED_DATA = 0x7FFFFFFF


class NonFiniteLossError(FloatingPointError):
  """Training met a NaN/Inf loss or gradient; the message names the step and the runs."""

  def __init__(self, message: str, step: int, runs: list[int], checkpoint_step: int | None):
    super().__init__(message)
    self.step, self.runs, self.checkpoint_step = step, runs, checkpoint_step


class TrainState(NamedTuple):
  """Everything a run needs to continue; every leaf but ``step`` has a leading run axis."""

  step: jax.Array  # int32 scalar: updates done
  params: Any
  opt_state: Any
  keys: jax.Array  # typed PRNG key of each run, [num_seeds]
  # int32 [num_seeds]: the update at which each run diverged and was frozen
  # (train.on_nonfinite="freeze"), 0 while it trains.
  diverged_at: jax.Array


def make_optimizer(config: ml_collections.ConfigDict, key: jax.Array) -> optax.GradientTransformation:
  """Clipping, then Paper B's gradient noise (after clipping, as in Paper B), then the optimizer.

  Args:
    config: the experiment config (its ``optimizer`` section).
    key: key of the gradient noise; each run gets its own (see ``_per_run_noise_keys``).
  """
  opt = config.optimizer
  parts = []
  if opt.clip_value:
    parts.append(optax.clip(opt.clip_value))
  if opt.clip_norm:
    parts.append(optax.clip_by_global_norm(opt.clip_norm))
  if opt.gradient_noise_eta:
    parts.append(noisy_jax.optim.add_gradient_noise(
        opt.gradient_noise_eta, opt.gradient_noise_gamma, key=key))
  if opt.name == "sgd":
    parts.append(optax.sgd(opt.learning_rate, momentum=opt.momentum or None))
  elif opt.name == "rmsprop":
    parts.append(optax.rmsprop(opt.learning_rate, momentum=opt.momentum))
  else:
    parts.append(optax.adam(opt.learning_rate))
  return optax.chain(*parts)


def _per_run_noise_keys(opt_state: Any, run_keys: jax.Array) -> Any:
  """Gives each run its own gradient-noise key (vmapped ``init`` would copy one key)."""
  def fix(node):
    if isinstance(node, noisy_jax.optim.GradientNoiseState):
      data = jax.vmap(lambda k: jax.random.key_data(jax.random.fold_in(k, _GRADIENT_NOISE)))(
          run_keys)
      return node._replace(key_data=data)
    return node
  return jax.tree.map(fix, opt_state,
                      is_leaf=lambda n: isinstance(n, noisy_jax.optim.GradientNoiseState))


def _objective(kind: str, logits: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Per-example metrics; ``loss`` is the cross-entropy (nats per example / sequence)."""
  if kind == "classification":
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
    wrong = (logits.argmax(-1) != batch["targets"]).astype(jnp.float32)
    return {"loss": loss, "error_pct": 100.0 * wrong, "accuracy_pct": 100.0 * (1.0 - wrong)}
  mask = batch["mask"][..., None].astype(logits.dtype)
  loss = (optax.sigmoid_binary_cross_entropy(logits, batch["targets"]) * mask).sum((1, 2))
  wrong_bits = (((logits > 0) != (batch["targets"] > 0.5)) * mask).sum((1, 2))
  return {"loss": loss, "bit_errors": wrong_bits,
          "error_pct": 100.0 * (wrong_bits > 0).astype(jnp.float32)}


def _all_finite(tree: Any) -> jax.Array:
  """Whether every inexact array of ``tree`` (of one run) is finite everywhere."""
  leaves = [jnp.isfinite(x).all() for x in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  return jnp.stack(leaves).all()


def _unit_noise_key(run_key: jax.Array, step: jax.Array) -> jax.Array:
  """The key of a run's unit noise at ``step``."""
  return jax.random.fold_in(jax.random.fold_in(run_key, _NOISE), step)


def _flat_statistics(intermediates: Any) -> dict[str, jax.Array]:
  """Sown unit statistics as ``{"<module>/.../<gate>/<field>": scalar}``.

  Per-step values (a cell under ``nn.RNN`` sows one per step) are averaged.
  """
  flat = {}
  for path, value in jax.tree_util.tree_flatten_with_path(intermediates)[0]:
    names = [str(part.key) if isinstance(part, jax.tree_util.DictKey) else part.name
             for part in path if not isinstance(part, jax.tree_util.SequenceKey)]
    flat["/".join(name for name in names if name != "unit_statistics")] = value.mean()
  return flat


def _weighted_means(per_example: dict[str, jax.Array], weight: jax.Array | None):
  if weight is None:
    return {name: value.mean() for name, value in per_example.items()}
  total = jnp.maximum(weight.sum(), 1.0)
  return {name: (value * weight).sum() / total for name, value in per_example.items()}


class Experiment:
  """The compiled pieces of a config: task, model, optimizer, mesh and jitted functions.

  Build it with :func:`create_experiment`. Passed to several ``train_and_evaluate``
  calls (segments of one run, the tests' fixtures), it compiles once; the calls may
  differ in the fields of ``LOOP_FIELDS``, which the compiled functions do not read.
  """

  def __init__(self, config: ml_collections.ConfigDict, devices: tuple[jax.Device, ...],
               compiler_options: dict[str, Any] | None = None):
    self.config = config
    self.task = input_pipeline.make_task(config)
    self.chance = input_pipeline.chance_metrics(self.task)  # eval metrics of a blind guess
    self.model = models.build_model(config, self.task.num_outputs)
    # Only the structure of the optimizer matters here; each run's key is set at init.
    self.tx = make_optimizer(config, jax.random.key(0))
    self.mesh = Mesh(np.asarray(devices), ("batch",))
    self.replicated = NamedSharding(self.mesh, P())
    self.shared_data = config.shared_data
    batch_spec = P("batch") if self.shared_data else P(None, "batch")
    self.batch_sharding = NamedSharding(self.mesh, batch_spec)
    self.eval_sharding = NamedSharding(self.mesh, P("batch"))
    self.c_schedule = validation.noise_scale_schedule(config.noise)
    self.freeze = config.train.on_nonfinite == "freeze"
    jit = functools.partial(jax.jit, out_shardings=self.replicated,
                            compiler_options=compiler_options)
    self.init_state = jit(self._init_state)
    self.train_step = jit(self._train_step)
    self.train_step_traces = 0  # times the step was traced (annealing c must not add any)
    self.evaluate = jit(self._evaluate)
    self.unit_statistics = jit(self._unit_statistics)  # compiled only if it is called
    self.params_finite = jit(jax.vmap(_all_finite))  # per run

  def run_keys(self) -> jax.Array:
    root = jax.random.key(self.config.seed)
    return jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.arange(self.config.num_seeds))

  def _init_state(self, run_keys: jax.Array) -> TrainState:
    example = jax.tree.map(lambda x: jnp.asarray(x[:1]), self.task.eval_set)

    def init_one(key):
      # deterministic: the noise does not change the parameters' shapes or values,
      # and leaving it out keeps the noise generator out of this compilation.
      params = self.model.init(jax.random.fold_in(key, _INIT), example,
                               c=self.c_schedule(0), deterministic=True)["params"]
      return params, self.tx.init(params)

    params, opt_state = jax.vmap(init_one)(run_keys)
    opt_state = _per_run_noise_keys(opt_state, run_keys)
    return TrainState(jnp.zeros((), jnp.int32), params, opt_state, run_keys,
                      jnp.zeros(run_keys.shape, jnp.int32))

  def _batch(self, state: TrainState, data) -> dict[str, jax.Array]:
    step = state.step
    if self.shared_data:
      key = jax.random.fold_in(
          jax.random.fold_in(jax.random.key(self.config.seed), _SHARED_DATA), step)
      batch = self.task.make_batch(key, step, data)
    else:
      keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.fold_in(k, _DATA), step))(
          state.keys)
      batch = jax.vmap(self.task.make_batch, in_axes=(0, None, None))(keys, step, data)
    return jax.lax.with_sharding_constraint(batch, self.batch_sharding)

  def _train_step(self, state: TrainState, data) -> tuple[TrainState, dict[str, jax.Array]]:
    self.train_step_traces += 1
    step = state.step
    c = self.c_schedule(step)
    batch = self._batch(state, data)

    def run_step(params, opt_state, batch, key, diverged_at):
      noise_key = _unit_noise_key(key, step)

      def loss_fn(p):
        logits = self.model.apply({"params": p}, batch, c=c, deterministic=False,
                                  rngs={"noise": noise_key})
        metrics = _weighted_means(_objective(self.task.objective, logits, batch), None)
        return metrics["loss"], metrics

      (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
      updates, new_opt_state = self.tx.update(grads, opt_state, params)
      new_params = optax.apply_updates(params, updates)
      metrics["grad_norm"] = optax.tree.norm(grads)
      if not self.freeze:
        return new_params, new_opt_state, diverged_at, metrics
      finite = _all_finite((metrics["loss"], metrics["grad_norm"], new_params, new_opt_state))
      keep = finite & (diverged_at == 0)
      diverged_at = jnp.where((diverged_at == 0) & ~finite, step + 1, diverged_at)
      metrics["diverged"] = (diverged_at > 0).astype(jnp.float32)
      select = lambda new, old: jnp.where(keep, new, old)
      return (jax.tree.map(select, new_params, params),
              jax.tree.map(select, new_opt_state, opt_state), diverged_at, metrics)

    params, opt_state, diverged_at, metrics = jax.vmap(
        run_step, in_axes=(0, 0, None if self.shared_data else 0, 0, 0))(
            state.params, state.opt_state, batch, state.keys, state.diverged_at)
    if c is not None:
      metrics["c"] = jnp.broadcast_to(c, state.keys.shape)
    return state._replace(step=step + 1, params=params, opt_state=opt_state,
                          diverged_at=diverged_at), metrics

  def _unit_statistics(self, state: TrainState, data) -> dict[str, jax.Array]:
    """Each run's saturation diagnostics: the next update's forward pass, its statistics sown.

    The same batch, ``c`` and unit noise as ``train_step`` will use at this step,
    with the ``"intermediates"`` collection mutable, so that every noisy module sows
    its :class:`noisy_jax.activations.UnitStatistics`; ``{"<module>/<gate>/<field>":
    [num_seeds]}``, averaged over the steps of a cell under ``nn.RNN``.
    """
    step = state.step
    c = self.c_schedule(step)
    batch = self._batch(state, data)

    def run_statistics(params, batch, key):
      _, sown = self.model.apply({"params": params}, batch, c=c, deterministic=False,
                                 rngs={"noise": _unit_noise_key(key, step)},
                                 mutable=["intermediates"])
      return _flat_statistics(sown.get("intermediates", {}))

    return jax.vmap(run_statistics, in_axes=(0, None if self.shared_data else 0, 0))(
        state.params, batch, state.keys)

  def _evaluate(self, state: TrainState, eval_set) -> dict[str, jax.Array]:
    c = self.c_schedule(state.step)
    weight = eval_set["weight"]

    def run_eval(params):
      logits = self.model.apply({"params": params}, eval_set, c=c, deterministic=True)
      return _weighted_means(_objective(self.task.objective, logits, eval_set), weight)

    return jax.vmap(run_eval)(state.params)

  def device_eval_set(self) -> dict[str, jax.Array]:
    """The evaluation set padded to a multiple of the devices (weight 0) and sharded."""
    host = dict(self.task.eval_set)
    count = len(next(iter(host.values())))
    devices = self.mesh.devices.size
    pad = -count % devices
    host = {k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)]) for k, v in host.items()}
    host["weight"] = np.concatenate([np.ones(count, np.float32), np.zeros(pad, np.float32)])
    return jax.device_put(host, self.eval_sharding)

  def device_data(self) -> dict[str, jax.Array]:
    return jax.device_put(self.task.data, self.replicated)


def create_experiment(config: ml_collections.ConfigDict,
                      compiler_options: dict[str, Any] | None = None) -> Experiment:
  """The :class:`Experiment` of ``config`` on its devices; validates ``config`` first.

  Args:
    config: an experiment config.
    compiler_options: XLA options for every jitted function, e.g.
      ``{"xla_backend_optimization_level": 0}`` (compiles several times faster on
      CPU, runs slower: what the tests use).
  """
  validation.validate(config, jax.device_count())
  devices = tuple(jax.devices()[:config.num_devices or jax.device_count()])
  return Experiment(config.copy_and_resolve_references(), devices, compiler_options)


# Fields the training loop reads and the compiled functions do not: calls of
# train_and_evaluate that share an Experiment may differ in them.
LOOP_FIELDS = ("train.num_steps", "train.log_every", "train.eval_every",
               "train.unit_statistics", "checkpoint.every", "checkpoint.max_to_keep")


def _differing_fields(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
  """``{field: (old, new)}`` for the dotted fields of two configs' dicts that differ.

  The ``paper.*`` fields (report metadata) are left out: they change nothing trained.
  """
  old = traverse_util.flatten_dict(old, sep=".")
  new = traverse_util.flatten_dict(new, sep=".")
  return {name: (old.get(name), new.get(name)) for name in sorted(old.keys() | new.keys())
          if old.get(name) != new.get(name) and not name.startswith("paper.")}


def _check_same_program(config: ml_collections.ConfigDict, experiment: Experiment) -> None:
  differ = [name for name in _differing_fields(json.loads(experiment.config.to_json()),
                                               json.loads(config.to_json()))
            if name not in LOOP_FIELDS]
  if differ:
    raise ValueError(
        f"experiment= was built for another config ({', '.join(differ)} differ). Fix: "
        "pass create_experiment(config) of this config, or leave experiment out.")


def _fetch(tree: Any) -> Any:
  """Host copies of replicated outputs (also when they span several hosts)."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def _summary(config: ml_collections.ConfigDict, per_run: dict[str, np.ndarray],
             diverged_at: np.ndarray) -> dict[str, Any]:
  """Mean, spread and success of the headline metric; a diverged run never succeeds."""
  metric = config.eval.metric
  values = np.asarray(per_run[metric], np.float64)
  higher = metric in validation.HIGHER_IS_BETTER
  success = validation.meets_threshold(metric, values, config.eval.success_threshold)
  return {
      "metric": metric,
      "mean": float(values.mean()),
      "std": float(values.std()),
      "best": float(values.max() if higher else values.min()),
      "worst": float(values.min() if higher else values.max()),
      "success_rate": float((success & (diverged_at == 0)).mean()),
      "success_threshold": config.eval.success_threshold,
      "num_runs": int(values.size),
      "num_diverged": int((diverged_at > 0).sum()),
  }


class _Run:
  """The host side of one training run: metrics, checkpoints, NaN checks."""

  def __init__(self, config: ml_collections.ConfigDict, writer: metrics_lib.MetricWriter,
               checkpointer: checkpoints.Checkpointer, freeze: bool):
    self.config, self.writer, self.checkpointer = config, writer, checkpointer
    self.freeze = freeze
    self.pending: list[tuple[int, dict[str, jax.Array]]] = []
    self.last_checkpoint: int | None = None
    self.diverged: set[int] = set()  # runs frozen so far (freeze)
    self.window_start = time.perf_counter()

  def check_and_log(self, step: int, log: bool, state: TrainState) -> dict[str, np.ndarray]:
    """Fetches the pending train metrics, handles non-finite ones, logs their mean.

    Stops on a non-finite loss or gradient (``on_nonfinite="stop"``), or reports the
    runs the step froze since the last check (``"freeze"``).
    """
    fetched = [(s, _fetch(m)) for s, m in self.pending]
    self.pending = []
    if self.freeze:
      self.report_frozen(_fetch(state.diverged_at))
    else:
      for s, m in fetched:
        bad = ~(np.isfinite(m["loss"]) & np.isfinite(m["grad_norm"]))
        if bad.any():
          self.raise_non_finite(s, [int(i) for i in np.flatnonzero(bad)], m)
    if not log:
      self.pending = fetched  # checked, and still part of the next logged window
      return {}
    if not fetched:
      return {}
    window = {name: np.mean([m[name] for _, m in fetched], axis=0) for name in fetched[-1][1]}
    elapsed = time.perf_counter() - self.window_start
    window["steps_per_sec"] = np.asarray(len(fetched) / elapsed if elapsed > 0 else 0.0)
    self.window_start = time.perf_counter()
    self.writer.write_scalars(step, {f"train/{name}": value for name, value in window.items()})
    return window

  def report_frozen(self, diverged_at: np.ndarray) -> None:
    """Warns about, and records, each run that diverged since the last check."""
    for run in map(int, np.flatnonzero(diverged_at)):
      if run in self.diverged:
        continue
      self.diverged.add(run)
      at = int(diverged_at[run])
      logging.warning(
          "Run %d of seed %d had a non-finite loss, gradient or update at step %d: it is "
          "frozen at its last finite parameters (train.on_nonfinite='freeze'); the other "
          "runs train on.", run, self.config.seed, at)
      flags = np.zeros(diverged_at.shape, np.float32)
      flags[run] = 1.0
      self.writer.write_scalars(at, {"nonfinite/diverged": flags})

  def raise_non_finite(self, step: int, runs: list[int], metrics: dict[str, np.ndarray]):
    config = self.config
    message = (
        f"Non-finite loss or gradient at step {step} of {config.train.num_steps} in "
        f"run(s) {runs} of seed {config.seed} "
        f"(run i uses key fold_in(key({config.seed}), i)): loss="
        f"{[float(metrics['loss'][i]) for i in runs]}, grad_norm="
        f"{[float(metrics['grad_norm'][i]) for i in runs]}. Training stopped; the last "
        f"good checkpoint is step {self.last_checkpoint} in {self.checkpointer.directory}. "
        "Fix: rerun with the same --workdir (it resumes from that checkpoint) and a lower "
        "--config.optimizer.learning_rate or clipping (--config.optimizer.clip_norm / "
        "clip_value), or check the noise scale; or with "
        "--config.train.on_nonfinite=freeze to freeze the diverged runs and train the "
        "others on.")
    flags = np.zeros(np.shape(metrics["loss"]), np.float32)
    flags[runs] = 1.0
    self.writer.write_scalars(step, {"nonfinite/diverged": flags})
    raise NonFiniteLossError(message, step, runs, self.last_checkpoint)


# Fields a resumed run may change: the budget, how often it logs, evaluates and saves,
# the devices, and the step size, clipping and on_nonfinite (to get past a non-finite
# loss), and whether it logs the unit statistics; the paper.* fields are the report's
# metadata and may change too.
RESUMABLE_CHANGES = ("train.num_steps", "train.log_every", "train.eval_every",
                     "checkpoint.every", "checkpoint.max_to_keep", "num_devices",
                     "optimizer.learning_rate", "optimizer.clip_norm", "optimizer.clip_value",
                     "train.on_nonfinite", "train.unit_statistics")


def _check_resumed_config(config: ml_collections.ConfigDict,
                          saved_path: pathlib.Path) -> list[tuple[str, Any, Any]]:
  """Refuses to resume a checkpoint under a config that trains something else.

  Returns:
    The resumable fields that changed, as ``(field, old, new)``.
  """
  if not saved_path.exists():
    return []
  differ = _differing_fields(json.loads(saved_path.read_text()), json.loads(config.to_json()))
  for name, (old, new) in differ.items():
    if name in RESUMABLE_CHANGES:
      logging.warning("Resuming with %s changed: %r -> %r.", name, old, new)
  changed = [name for name in differ if name not in RESUMABLE_CHANGES]
  if changed:
    details = ", ".join(f"{name}: {differ[name][0]!r} -> {differ[name][1]!r}"
                        for name in changed)
    raise validation.ConfigError(
        f"{saved_path.parent} holds checkpoints of a different config ({details}). Fix: "
        "use a new --workdir, or restore those fields; only "
        f"{', '.join(RESUMABLE_CHANGES)} may change when resuming.")
  return [(name, old, new) for name, (old, new) in differ.items()]


def _record_resume_changes(workdir: pathlib.Path, step: int,
                           changes: list[tuple[str, Any, Any]]) -> None:
  """Appends the fields a resumed run changed to ``<workdir>/resume_history.jsonl``.

  config.json then holds only the newest values; this file keeps the older ones, with
  the step from which each new value applies (experiments/report.py lists them).
  """
  now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
  with (workdir / metrics_lib.RESUME_HISTORY_FILE).open("a") as file:
    for field, old, new in changes:
      file.write(json.dumps({"step": step, "field": field, "old": old, "new": new,
                             "time": now}) + "\n")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       experiment: Experiment | None = None,
                       compiler_options: dict[str, Any] | None = None,
                       writer: metrics_lib.MetricWriter | None = None) -> dict[str, Any]:
  """Trains ``config.num_seeds`` runs of ``config`` in ``workdir`` and evaluates them.

  Resumes from the newest readable checkpoint in ``workdir/checkpoints`` if there
  is one. Writes ``metrics.jsonl`` (and TensorBoard events), ``config.json`` and
  ``final_metrics.json`` into ``workdir``.

  Args:
    config: an experiment config (``configs/<name>.py``); validated first.
    workdir: the run's directory.
    experiment: the compiled functions to use, from ``create_experiment`` of this
      config or of one that differs only in ``LOOP_FIELDS``; None builds them
      (compiles) here.
    compiler_options: XLA options of the compiled functions when ``experiment`` is
      None (see :func:`create_experiment`).
    writer: the metric writer (default: a :class:`metrics_lib.MetricWriter` of
      ``workdir`` on process 0); it is closed at the end.

  Returns:
    The final metrics: ``{"name", "variant", "step", "per_run": {metric: [values]},
    "diverged_at": [step, or 0 for a run that did not diverge],
    "summary": {"metric", "mean", "std", "best", "worst", "success_rate",
    "num_diverged", ...}, "paper": {...}}``.

  Raises:
    validation.ConfigError: the config is invalid (before anything is compiled).
    lock.WorkdirLockedError: another live run trains in ``workdir``.
    NonFiniteLossError: a loss or gradient became NaN/Inf (``on_nonfinite="stop"``).
  """
  if experiment is None:
    experiment = create_experiment(config, compiler_options)
  else:
    validation.validate(config, jax.device_count())
    _check_same_program(config, experiment)
  config = config.copy_and_resolve_references()
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  is_chief = jax.process_index() == 0
  with lock.WorkdirLock(workdir, enabled=is_chief):
    return _train_and_evaluate(config, experiment, workdir, is_chief, writer)


def _train_and_evaluate(config: ml_collections.ConfigDict, experiment: Experiment,
                        workdir: pathlib.Path, is_chief: bool,
                        writer: metrics_lib.MetricWriter | None) -> dict[str, Any]:
  """:func:`train_and_evaluate` inside the workdir's lock."""
  abstract = jax.eval_shape(experiment.init_state, experiment.run_keys())
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=experiment.replicated), abstract)
  with checkpoints.Checkpointer(workdir / "checkpoints", config.checkpoint.max_to_keep,
                                config.checkpoint.every) as checkpointer:
    changes = (_check_resumed_config(config, workdir / metrics_lib.CONFIG_FILE)
               if checkpointer.all_steps() else [])
    state, start = checkpointer.restore_latest(abstract)
    if start is not None and start > config.train.num_steps:
      raise validation.ConfigError(
          f"{workdir} holds a checkpoint at step {start}, past train.num_steps="
          f"{config.train.num_steps}. Fix: pass --config.train.num_steps >= {start}, or "
          "use a new --workdir.")
    if state is None:
      state, start = experiment.init_state(experiment.run_keys()), 0
    else:
      logging.info("Resuming %s:%s from step %d.", config.name, config.variant, start)
    if is_chief and start and changes:
      _record_resume_changes(workdir, start, changes)
    if writer is None:
      writer = metrics_lib.MetricWriter(workdir, resume_step=start, enabled=is_chief)
    with contextlib.closing(writer):
      writer.write_hparams(config.to_dict())
      final = _train_loop(config, experiment, state, start, writer, checkpointer)

  diverged_at = _fetch(final.pop("diverged_at"))
  result = {
      "name": config.name,
      "variant": config.variant,
      "step": config.train.num_steps,
      "per_run": {name: np.asarray(value).tolist() for name, value in final.items()},
      "diverged_at": diverged_at.tolist(),
      "summary": _summary(config, final, diverged_at),
      "chance": experiment.chance,
      "paper": config.paper.to_dict(),
  }
  if is_chief:
    (workdir / metrics_lib.FINAL_METRICS_FILE).write_text(json.dumps(result, indent=2) + "\n")
  return result


def _train_loop(config: ml_collections.ConfigDict, experiment: Experiment, state: TrainState,
                start: int, writer: metrics_lib.MetricWriter,
                checkpointer: checkpoints.Checkpointer) -> dict[str, Any]:
  """Trains from ``start`` to ``config.train.num_steps``; the final evaluation and
  ``diverged_at``."""
  run = _Run(config, writer, checkpointer, experiment.freeze)
  run.last_checkpoint = start
  if experiment.freeze:
    run.diverged = {int(i) for i in np.flatnonzero(_fetch(state.diverged_at))}
  data, eval_set = experiment.device_data(), experiment.device_eval_set()
  num_steps = config.train.num_steps
  progress = metrics_lib.Progress(num_steps, start, label=f"{config.name}:{config.variant}")

  def evaluate(step):
    result = _fetch(experiment.evaluate(state, eval_set))
    scalars = {f"eval/{name}": value for name, value in result.items()}
    if config.train.unit_statistics:
      statistics = _fetch(experiment.unit_statistics(state, data))
      scalars.update({f"units/{name}": value for name, value in statistics.items()})
    writer.write_scalars(step, scalars)
    return result

  with contextlib.closing(progress):
    if start == 0:
      writer.write_scalars(0, {f"chance/{name}": value for name, value in experiment.chance.items()})
      evaluate(0)
      if not checkpointer.all_steps():  # a restart from step 0 has it already
        checkpointer.save(0, state)  # the first save: should_save counts from it
    for step in range(start + 1, num_steps + 1):
      state, step_metrics = experiment.train_step(state, data)
      run.pending.append((step, step_metrics))
      log = step % config.train.log_every == 0 or step == num_steps
      save = checkpointer.should_save(step) or step == num_steps
      if log or save:
        window = run.check_and_log(step, log, state)
        if window:
          progress.update(step, f"loss {float(np.mean(window['loss'])):.4g}")
      # The last evaluation precedes the last save, so a run killed between the two
      # redoes both and one restored at num_steps has its whole record.
      if step % config.train.eval_every == 0 or step == num_steps:
        final = evaluate(step)
      if save:
        finite = _fetch(experiment.params_finite(state.params))
        if not finite.all():  # only "stop" gets here: "freeze" keeps parameters finite
          run.raise_non_finite(step, [int(i) for i in np.flatnonzero(~finite)],
                               {"loss": _fetch(step_metrics["loss"]),
                                "grad_norm": _fetch(step_metrics["grad_norm"])})
        checkpointer.save(step, state)
        run.last_checkpoint = step
    if start == num_steps:
      final = _fetch(experiment.evaluate(state, eval_set))
  return {**final, "diverged_at": state.diverged_at}
