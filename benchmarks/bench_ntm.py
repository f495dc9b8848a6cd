"""Training-step speed of the noisy NTM, an eager PyTorch NTM, and copy-task learning (issue 7).

Workload (issue 7): an NTM with a 128 x 20 memory, one read and one write head
(shifts -1..1), an LSTM controller of 100 units, batch 32, copy sequences of
length 20 (8-bit vectors and a delimiter channel, T = 41 steps); a training step
is the forward pass, the sigmoid cross-entropy over the output steps, the
backward pass and an Adam update with the gradient norm clipped at 10.

* JAX (``harness.compare``, interleaved rounds): the noisy NTM
  (``noisy_rnn(noisy_jax.nn.NTMCell)``, reference-default noise), the same with
  ``deterministic=True``, and a plain NTM (sigmoid/tanh, no noise) that every
  ratio is taken against.
* PyTorch, when ``import torch`` works: the same NTM (same sizes, the same noisy
  activations, Adam, clipping) written the usual eager way, a Python loop over
  time steps; timed in its own loop with ``torch.cuda.synchronize``.
* Copy task (GPU by default, ``--train-copy`` anywhere): lengths uniform in
  1..20, the noisy NTM trained until its bit error on a fixed evaluation set of
  1024 sequences (noise at its expectation) is below 0.1 bits per sequence, or
  ``--max-updates``/``--max-minutes`` run out; the number of updates is recorded.

Usage::

  python -m benchmarks.run_all --only ntm         # all of the above
  python -m benchmarks.bench_ntm --repeats 5      # one file, fewer rounds
  python -m benchmarks.bench_ntm --train-copy --max-updates 20000
  python -m benchmarks.bench_ntm --small --repeats 2   # a dry run at toy sizes

Writes the ``ntm`` section of ``benchmarks/results/<device>.json`` and the device's
table in ``benchmarks/results/<device>.md`` (linked from BENCHMARKS.md).
"""

import argparse
import functools
import statistics
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import noisy_jax.nn
import noisy_jax.tasks
from benchmarks import harness

SECTION = "ntm"
# The issue's NTM (Graves et al.'s LSTM-controller copy NTM) and step.
CONFIG = dict(memory_size=128, memory_width=20, features=100, num_read_heads=1,
              num_write_heads=1, shift_range=1, batch=32, length=20, bits=8)
# --small: the same code at toy sizes, to check that a run goes through (times mean nothing).
SMALL_CONFIG = dict(CONFIG, memory_size=8, memory_width=4, features=16, batch=4, length=3,
                    bits=4)
# Optimizer defaults: Adam 1e-3 with the global gradient norm clipped at 10
# (Graves et al. used RMSProp 1e-4, momentum 0.9, elementwise clipping at 10).
LEARNING_RATE = 1e-3
CLIP_NORM = 10.0
TARGET_BITS = 0.1  # bits per sequence
# Eager PyTorch step time / JAX noisy step time; set on an H100, judged on an H100 or H200.
TORCH_TARGET = 20.0

MARKDOWN_HEADING = "## NTM (issue 7)"
NOISY, DETERMINISTIC, PLAIN = ("noisy NTM", "noisy NTM (deterministic)",
                               "plain NTM (sigmoid/tanh, no noise)")


class CopyNTM(nn.Module):
  """``noisy_rnn(NTMCell)`` and a linear read-out to ``bits`` logits."""

  bits: int
  cell_kwargs: dict

  @nn.compact
  def __call__(self, inputs):
    cell = noisy_jax.nn.NTMCell(**self.cell_kwargs)
    return nn.Dense(self.bits)(noisy_jax.nn.noisy_rnn(cell)(inputs))


def _cell_kwargs(variant: str, config: dict) -> dict:
  sizes = {k: config[k] for k in ("memory_size", "memory_width", "features",
                                   "num_read_heads", "num_write_heads", "shift_range")}
  if variant == DETERMINISTIC:
    return {**sizes, "deterministic": True}
  if variant == PLAIN:
    return {**sizes, "noisy_gates": (), "sigmoid": noisy_jax.UnitNoise("sigmoid", "nah"),
            "tanh": noisy_jax.UnitNoise("tanh", "nan")}
  return sizes


def optimizer() -> optax.GradientTransformation:
  return optax.chain(optax.clip_by_global_norm(CLIP_NORM), optax.adam(LEARNING_RATE))


def _loss(model, params, batch, key):
  logits = model.apply(params, batch["inputs"], rngs={"noise": key})
  mask = batch["mask"].astype(logits.dtype)
  per_step = optax.sigmoid_binary_cross_entropy(logits, batch["targets"]).mean(-1)
  return jnp.sum(per_step * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def train_step_fn(model):
  """``(params, opt_state, batch, key) -> (params, opt_state, loss)``."""
  tx = optimizer()

  def step(params, opt_state, batch, key):
    loss, grads = jax.value_and_grad(functools.partial(_loss, model))(params, batch, key)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step


def _copy_batch(key, config: dict):
  return noisy_jax.tasks.copy(key, config["batch"], min_length=config["length"],
                              max_length=config["length"], bits=config["bits"])


def compiled_steps(config: dict) -> tuple[dict, dict[str, float], tuple]:
  """Returns ``(steps, compile_s, args)``: the three training steps compiled for ``args``.

  ``args`` is ``(params, opt_state, batch, key)`` on the device: the timed batch and
  one set of parameters for all three models (the plain NTM ignores the p's);
  ``compile_s`` holds the seconds each step took to compile.
  """
  batch = _copy_batch(jax.random.key(0), config)
  models = {name: CopyNTM(config["bits"], _cell_kwargs(name, config))
            for name in (NOISY, DETERMINISTIC, PLAIN)}
  params = jax.jit(models[NOISY].init)(
      {"params": jax.random.key(1), "noise": jax.random.key(2)}, batch["inputs"])
  args = jax.device_put((params, optimizer().init(params), batch, jax.random.key(3)))
  steps, compile_s = {}, {}
  for name, model in models.items():
    steps[name], compile_s[name] = harness.compile_timed(train_step_fn(model), *args)
  return steps, compile_s, args


def bench_jax(steps: dict, compile_s: dict[str, float], args: tuple,
              repeats: int) -> dict[str, Any]:
  timings = harness.compare(steps, *args, baseline=PLAIN, repeats=repeats, compile_s=compile_s)
  return {"timings": timings, "steps_per_s": {n: 1.0 / t["median_s"] for n, t in timings.items()},
          "parameters": int(sum(x.size for x in jax.tree.leaves(args[0])))}


# ----------------------------------------------------------------------------- torch


def _torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  return torch


def _torch_noisy(torch, x, p, kind: str):
  """Eq. 12 with the reference-code defaults of noisy_jax (NAH gates, NAN tanh units)."""
  if kind == "sigmoid":  # c = 0.15, alpha = 1.1, half-normal noise
    c, alpha, u = 0.15, 1.1, 0.25 * x + 0.5
    h = torch.clamp(u, 0.0, 1.0)
    eps = torch.randn_like(x).abs()
  else:  # c = 0.5, alpha = 1.15, normal noise
    c, alpha, u = 0.5, 1.15, x
    h = torch.clamp(x, -1.0, 1.0)
    eps = torch.randn_like(x)
  sigma = c * (torch.sigmoid(p * (h - u)) - 0.5) ** 2
  direction = torch.where(x >= 0, 1.0, -1.0)  # -sgn(x) sgn(1 - alpha), alpha > 1
  return alpha * h + (1 - alpha) * u + direction * sigma * eps


class _TorchNTM:
  """The same NTM as ``noisy_jax.nn.NTMCell`` in eager PyTorch, one Python step per time step."""

  def __init__(self, torch, device: str, config: dict):
    self.torch = torch
    n, m, h = config["memory_size"], config["memory_width"], config["features"]
    r, w, s = config["num_read_heads"], config["num_write_heads"], config["shift_range"]
    self.sizes = dict(n=n, m=m, h=h, r=r, w=w, k=r + w, shifts=2 * s + 1)
    k, shifts = r + w, 2 * s + 1
    d = config["bits"] + 1
    self.split = [k * m, k, k, k * shifts, k, w * m, w * m]
    gen = torch.Generator(device="cpu").manual_seed(0)

    def param(*shape, scale=None, uniform=False):
      if uniform:
        value = torch.rand(*shape, generator=gen) * 2 - 1
      elif scale is None:
        value = torch.zeros(*shape)
      else:
        value = scale * torch.randn(*shape, generator=gen)
      return torch.nn.Parameter(value.to(device))

    self.params = dict(
        w_in=param(d + r * m, 4 * h, scale=(d + r * m) ** -0.5),
        w_rec=param(h, 4 * h, scale=h ** -0.5), bias=param(4 * h),
        p_gates=param(3 * h, uniform=True), p_cand=param(h, uniform=True),
        p_cell=param(h, uniform=True),
        head_kernel=param(h, sum(self.split), scale=h ** -0.5), head_bias=param(sum(self.split)),
        p_gate=param(k, uniform=True), p_erase=param(w, m, uniform=True),
        initial_reads=param(r, m, scale=0.1), initial_logits=param(k, n, scale=0.1),
        w_out=param(h + r * m, config["bits"], scale=(h + r * m) ** -0.5),
        b_out=param(config["bits"]),
    )
    self.opt = torch.optim.Adam(self.params.values(), lr=LEARNING_RATE)

  def loss(self, inputs, targets, mask):
    torch, p, z = self.torch, self.params, self.sizes
    batch, steps = inputs.shape[:2]
    n, m, h, r, w, k = z["n"], z["m"], z["h"], z["r"], z["w"], z["k"]
    memory = torch.full((batch, n, m), 1e-6, device=inputs.device)
    reads = p["initial_reads"].expand(batch, r, m)
    prev = torch.softmax(p["initial_logits"], -1).expand(batch, k, n)
    c = hid = torch.zeros(batch, h, device=inputs.device)
    outputs = []
    for t in range(steps):
      x = torch.clamp(torch.cat([inputs[:, t], reads.reshape(batch, r * m)], -1), -20, 20)
      pre = x @ p["w_in"] + hid @ p["w_rec"] + p["bias"]
      gates = _torch_noisy(torch, pre[:, :3 * h], p["p_gates"], "sigmoid")
      i, f, o = gates[:, :h], gates[:, h:2 * h], gates[:, 2 * h:]
      c_new = f * c + i * _torch_noisy(torch, pre[:, 3 * h:], p["p_cand"], "tanh")
      hid = torch.clamp(o * _torch_noisy(torch, c_new, p["p_cell"], "tanh"), -20, 20)
      c = torch.clamp(c_new, -20, 20)
      heads = torch.clamp(hid @ p["head_kernel"] + p["head_bias"], -20, 20)
      keys, beta, gate, shift, gamma, erase, add = torch.split(heads, self.split, -1)
      keys = torch.tanh(keys).reshape(batch, k, m)
      beta = torch.nn.functional.softplus(beta)
      gate = torch.clamp(_torch_noisy(torch, gate, p["p_gate"], "sigmoid"), 0, 1)
      shift = torch.softmax(shift.reshape(batch, k, -1), -1)
      gamma = 1 + torch.nn.functional.softplus(gamma)
      erase = torch.clamp(
          _torch_noisy(torch, erase.reshape(batch, w, m), p["p_erase"], "sigmoid"), 0, 1)
      add = torch.tanh(add.reshape(batch, w, m))
      # Graves et al. Eqs. 5-9: content, interpolation, shift, sharpening.
      norms = keys.norm(dim=-1)[..., None] * memory.norm(dim=-1)[:, None, :]
      similarity = (keys @ memory.transpose(1, 2)) / (norms + 1e-8)
      content = torch.softmax(beta[..., None] * similarity, -1)
      blended = gate[..., None] * content + (1 - gate[..., None]) * prev
      radius = shift.shape[-1] // 2
      shifted = sum(shift[..., j + radius, None] * torch.roll(blended, j, -1)
                    for j in range(-radius, radius + 1))
      prev = torch.softmax(gamma[..., None] * torch.log(torch.clamp(shifted, min=1e-38)), -1)
      # Eq. 2 on the previous memory, then Eqs. 3-4.
      reads = prev[:, :r] @ memory
      write_w = prev[:, r:]
      keep = torch.prod(1 - write_w[..., None] * erase[:, :, None, :], dim=1)
      memory = memory * keep + write_w.transpose(1, 2) @ add
      outputs.append(torch.cat([hid, reads.reshape(batch, r * m)], -1))
    logits = torch.stack(outputs, 1) @ p["w_out"] + p["b_out"]
    per_step = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, targets, reduction="none").mean(-1)
    return (per_step * mask).sum() / mask.sum().clamp(min=1)

  def step(self, inputs, targets, mask):
    loss = self.loss(inputs, targets, mask)
    self.opt.zero_grad()
    loss.backward()
    self.torch.nn.utils.clip_grad_norm_(self.params.values(), CLIP_NORM)
    self.opt.step()
    return loss


def bench_torch(torch, jax_step, args: tuple, config: dict, repeats: int) -> dict[str, Any]:
  """Times the eager PyTorch NTM and the JAX noisy NTM alternately, step by step.

  ``jax_step`` is the compiled noisy step, ``args`` its arguments (``compiled_steps``).

  On a CPU, PyTorch runs single-threaded: on a loaded 2-core machine its thread
  hand-offs made a step 10-50x slower and erratic, which would flatter JAX.
  """
  device = harness.torch_device(torch)
  if device is None:
    print("  torch has no device of JAX's kind here: the PyTorch row is skipped", flush=True)
    return None
  if device == "cpu":
    torch.set_num_threads(1)
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  batch = args[2]
  inputs, targets, mask = (torch.tensor(np.array(batch[k], np.float32)).to(device)
                           for k in ("inputs", "targets", "mask"))
  model = _TorchNTM(torch, device, config)
  for _ in range(3):
    model.step(inputs, targets, mask)
    jax.block_until_ready(jax_step(*args))
  sync()
  torch_times, jax_times = [], []
  for _ in range(repeats):
    start = time.perf_counter()
    loss = model.step(inputs, targets, mask)
    sync()
    torch_times.append(time.perf_counter() - start)
    start = time.perf_counter()
    jax.block_until_ready(jax_step(*args))
    jax_times.append(time.perf_counter() - start)
  return {
      "median_s": statistics.median(torch_times), "min_s": min(torch_times),
      "jax_noisy_median_s": statistics.median(jax_times), "repeats": repeats,
      "torch_over_jax_noisy": statistics.median(t / j for t, j in zip(torch_times, jax_times)),
      "device": device, "threads": torch.get_num_threads(), "torch_version": torch.__version__,
      "final_loss": float(loss.detach()), "steps_per_s": 1.0 / statistics.median(torch_times),
  }


# ----------------------------------------------------------------------------- copy task


def bits_error(model, params, batch) -> jax.Array:
  """Mean over sequences of the wrongly predicted bits (Graves et al.'s cost per sequence)."""
  logits = model.apply(params, batch["inputs"])
  wrong = ((logits > 0) != (batch["targets"] > 0.5)) & batch["mask"][..., None]
  return jnp.sum(wrong) / batch["inputs"].shape[0]


def train_copy(max_updates: int, max_minutes: float, *, config: dict = CONFIG,
               chunk: int = 100, eval_every: int = 500, seed: int = 0) -> dict[str, Any]:
  """Trains the noisy NTM on copy (lengths 1..20) until < TARGET_BITS bits/sequence."""
  kwargs = _cell_kwargs(NOISY, config)
  model = CopyNTM(config["bits"], kwargs)
  evaluator = CopyNTM(config["bits"], {**kwargs, "deterministic": True})
  eval_set = noisy_jax.tasks.fixed_eval_set(noisy_jax.tasks.copy, 1024, min_length=1,
                                            max_length=config["length"], bits=config["bits"])
  key = jax.random.key(seed)
  init_key, noise_key, train_key = jax.random.split(key, 3)
  params = jax.jit(model.init)({"params": init_key, "noise": noise_key},
                               eval_set["inputs"][: config["batch"]])
  opt_state = optimizer().init(params)
  step = train_step_fn(model)

  def body(carry, key):
    params, opt_state = carry
    data_key, noise_key = jax.random.split(key)
    batch = noisy_jax.tasks.copy(data_key, config["batch"], min_length=1,
                                 max_length=config["length"], bits=config["bits"])
    params, opt_state, loss = step(params, opt_state, batch, noise_key)
    return (params, opt_state), loss

  run_chunk = jax.jit(lambda params, opt_state, keys: jax.lax.scan(
      body, (params, opt_state), keys))
  evaluate = jax.jit(functools.partial(bits_error, evaluator))
  curve, updates, reached = [], 0, None
  start = time.perf_counter()
  train_seconds = 0.0
  while updates < max_updates and time.perf_counter() - start < 60 * max_minutes:
    train_key, chunk_key = jax.random.split(train_key)
    chunk_start = time.perf_counter()
    (params, opt_state), losses = run_chunk(params, opt_state, jax.random.split(chunk_key, chunk))
    losses = np.asarray(losses)
    if updates > 0:  # the first chunk includes compilation
      train_seconds += time.perf_counter() - chunk_start
    updates += chunk
    if not np.all(np.isfinite(losses)):
      curve.append({"updates": updates, "loss": float(losses.mean()), "bits": None})
      break
    if updates % eval_every == 0:
      error = float(evaluate(params, eval_set))
      curve.append({"updates": updates, "loss": float(losses.mean()), "bits": error})
      print(f"    copy: {updates:6d} updates, loss {losses.mean():.4f}, "
            f"{error:.3f} bits/sequence", flush=True)
      if error < TARGET_BITS:
        reached = updates
        break
  return {
      "target_bits_per_sequence": TARGET_BITS, "updates_to_target": reached,
      "updates_run": updates, "wall_s": time.perf_counter() - start,
      "train_steps_per_s": (updates - chunk) / train_seconds if train_seconds else None,
      "curve": curve, "optimizer": f"adam {LEARNING_RATE}, clip_by_global_norm {CLIP_NORM}",
      "batch": config["batch"], "lengths": [1, config["length"]], "seed": seed,
  }


def main(outdir=None, *, repeats: int | None = None, train_copy_task: bool | None = None,
         max_updates: int = 100_000, max_minutes: float = 20.0,
         small: bool = False) -> dict[str, Any]:
  cpu = jax.default_backend() == "cpu"
  repeats = repeats or (10 if cpu else 50)
  train_copy_task = (not cpu) if train_copy_task is None else train_copy_task
  config = SMALL_CONFIG if small else CONFIG
  results: dict[str, Any] = {"config": {**config, "repeats": repeats, "small": small,
                                        "learning_rate": LEARNING_RATE, "clip_norm": CLIP_NORM}}
  print("  jax training steps ...", flush=True)
  steps, compile_s, args = compiled_steps(config)
  results["jax"] = bench_jax(steps, compile_s, args, repeats)
  for name, stats in results["jax"]["timings"].items():
    print(f"    {name:36s} {results['jax']['steps_per_s'][name]:8.2f} steps/s, "
          f"time / plain {1.0 / stats['ratio']:.3f}, compile {stats['compile_s']:.1f} s")
  torch = _torch()
  if torch is None:
    results["torch"] = None
    print("    torch: not importable, skipped")
  else:
    print("  torch eager NTM ...", flush=True)
    results["torch"] = bench_torch(torch, steps[NOISY], args, config, max(5, repeats // 2))
  if results["torch"] is not None:
    ratio = results["torch"]["torch_over_jax_noisy"]
    print(f"    torch eager ({results['torch']['device']}) {results['torch']['steps_per_s']:.2f} "
          f"steps/s; torch time / JAX noisy time {ratio:.1f} (H100 target >= {TORCH_TARGET})")
  if train_copy_task:
    print("  copy task ...", flush=True)
    results["copy"] = train_copy(max_updates, max_minutes, config=config)
    print(f"    updates to < {TARGET_BITS} bits/sequence: {results['copy']['updates_to_target']}")
  else:
    results["copy"] = None
  path = harness.publish("bench_ntm", SECTION, MARKDOWN_HEADING, results, table, outdir)
  print(f"  wrote {path}")
  return results


def table(results: dict[str, Any]) -> str:
  """The markdown table of a results section, as run or as loaded from its JSON file."""
  env, config = results["environment"], results["config"]
  absolute = env["platform"] != "cpu"
  timings = results["jax"]["timings"]
  lines = [
      harness.provenance(env) + f": copy-task training step of the NTM "
      f"(memory {config['memory_size']} x {config['memory_width']}, LSTM controller "
      f"{config['features']}, batch {config['batch']}, T = {2 * config['length'] + 1}), "
      f"median of {config['repeats']} interleaved rounds.",
      "",
      "| training step | time / plain NTM |" + (" steps/s |" if absolute else ""),
      "|---|---|" + ("---|" if absolute else ""),
  ]
  for name in (PLAIN, DETERMINISTIC, NOISY):
    row = f"| {name} | {1.0 / timings[name]['ratio']:.2f} |"
    lines.append(row + (f" {results['jax']['steps_per_s'][name]:.1f} |" if absolute else ""))
  torch = results.get("torch")
  if torch is not None:
    ratio = torch["torch_over_jax_noisy"]
    verdict = harness.target(f">= {TORCH_TARGET}", ratio >= TORCH_TARGET, env)
    lines.append(f"| eager PyTorch noisy NTM ({torch['device']}), per time step | "
                 f"{ratio:.2f} x the JAX noisy step ({verdict}) |"
                 + (f" {torch['steps_per_s']:.1f} |" if absolute else ""))
  else:
    lines.append("| eager PyTorch noisy NTM | skipped: torch not importable |"
                 + (" - |" if absolute else ""))
  copy = results.get("copy")
  if copy is not None:
    lines += ["", f"Copy task: {copy['updates_to_target']} updates to < {TARGET_BITS} bits "
                  "per sequence."]
  return "\n".join(lines)


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--repeats", type=int, default=None, help="interleaved timing rounds")
  parser.add_argument("--train-copy", action=argparse.BooleanOptionalAction, default=None,
                      help="train the copy task (default: on a GPU/TPU only)")
  parser.add_argument("--max-updates", type=int, default=100_000)
  parser.add_argument("--max-minutes", type=float, default=20.0)
  parser.add_argument("--small", action="store_true",
                      help=f"toy sizes instead of the issue's, for a dry run: {SMALL_CONFIG}")
  parser.add_argument("--outdir", default=None)
  args = parser.parse_args()
  main(args.outdir, repeats=args.repeats, train_copy_task=args.train_copy,
       max_updates=args.max_updates, max_minutes=args.max_minutes, small=args.small)
