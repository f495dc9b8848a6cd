"""Training-step speed and memory of the noisy recurrent layers (issue 6).

Workload: forward and backward of ``sum(outputs**2)`` with respect to the
parameters, float32, inputs ``(B, T, D)``, hidden size ``H``. For each shape:

* LSTM: ``noisy_jax.nn.NoisyLSTM`` (noise on; and deterministic), the noisy cell
  scanned by ``nn.RNN`` (``noisy_rnn(NoisyLSTMCell)``), against flax
  ``nn.RNN(nn.OptimizedLSTMCell)`` (the baseline of every ratio) and cuDNN through
  ``jax.experimental.rnn.lstm`` (GPU only);
* GRU: the same against ``nn.RNN(nn.GRUCell)``;
* with PyTorch importable: ``torch.nn.LSTM``/``torch.nn.GRU`` (cuDNN on GPU) and a
  noisy LSTM/GRU written the obvious way in eager PyTorch (a Python loop over time).

JAX functions are timed interleaved round by round (``harness.compare``); PyTorch
ones in their own loop (``torch.cuda.synchronize`` after each call) and compared
by median time. Peak memory of a training step is XLA's plan for the compiled
program (``memory_analysis``: arguments + outputs + temporaries - aliased), which
exists on CPU and GPU alike.

Usage::

  python -m benchmarks.run_all --only recurrent        # the issue's shapes on GPU
  python -m benchmarks.bench_recurrent --small          # CPU-sized shapes
  python -m benchmarks.bench_recurrent --shapes 64,100,512,512 --repeats 50
  python -m benchmarks.bench_recurrent --shapes 2,5,4,8 --no-small   # a dry run of the GPU path

Writes the ``recurrent`` section of ``benchmarks/results/<device>.json`` and the
device's table in ``benchmarks/results/<device>.md`` (linked from BENCHMARKS.md).
"""

import argparse
import statistics
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

import noisy_jax.nn
from benchmarks import harness

SECTION = "recurrent"
# The shapes (B, T, D, H); --small divides them for a 2-core CPU.
SHAPES = ((64, 100, 512, 512), (32, 100, 64, 256))
SMALL_SHAPES = ((16, 100, 128, 128), (8, 100, 32, 64))
# Issue 6's targets, set on an H100 (time ratios, lower is faster, except the torch one;
# judged on an H100 or H200, harness.target).
CUDNN_TARGET = 1.0  # NoisyLSTM time / cuDNN LSTM time
FLAX_TARGET = 0.8  # NoisyLSTM time / flax nn.RNN(OptimizedLSTMCell) time
TORCH_EAGER_TARGET = 30.0  # torch eager noisy LSTM time / NoisyLSTM time
MEMORY_TARGET = 1.05  # NoisyLSTM peak / flax peak

MARKDOWN_HEADING = "## Recurrent layers (issue 6)"

OURS = {"lstm": "NoisyLSTM", "gru": "NoisyGRU"}
BASELINE = {"lstm": "flax nn.RNN(OptimizedLSTMCell)", "gru": "flax nn.RNN(GRUCell)"}
CELL_RNN = {"lstm": "nn.RNN(NoisyLSTMCell)", "gru": "nn.RNN(NoisyGRUCell)"}
CUDNN = "cuDNN jax.experimental.rnn.lstm"
SCAN_AUTODIFF = {"lstm": "lax.scan of lstm_step, autodiff", "gru": "lax.scan of gru_step, autodiff"}


def _loss_and_grad(apply: Callable) -> Callable:
  """``(params, x, key) -> (loss, grads)`` of ``sum(apply(params, x, key)**2)``."""

  def loss(params, x, key):
    return jnp.sum(jnp.square(apply(params, x, key)))

  return jax.value_and_grad(loss)


def jax_candidates(cell: str, shape) -> dict[str, tuple[Callable, Any]]:
  """name -> (training step ``f(params, x, key)``, its parameters)."""
  batch, _, features, hidden = shape
  x = jnp.zeros(shape[:3], jnp.float32)
  init_keys = {"params": jax.random.key(0), "noise": jax.random.key(1)}
  layer_cls = noisy_jax.nn.NoisyLSTM if cell == "lstm" else noisy_jax.nn.NoisyGRU
  cell_cls = noisy_jax.nn.NoisyLSTMCell if cell == "lstm" else noisy_jax.nn.NoisyGRUCell
  flax_cell = nn.OptimizedLSTMCell(hidden) if cell == "lstm" else nn.GRUCell(hidden)

  layer = layer_cls(hidden)
  layer_eval = layer_cls(hidden, deterministic=True)
  scanned = noisy_jax.nn.noisy_rnn(cell_cls(hidden))
  flax_rnn = nn.RNN(flax_cell)
  layer_params = layer.init(init_keys, x)["params"]
  candidates = {
      BASELINE[cell]: (
          lambda p, x, k: flax_rnn.apply({"params": p}, x),
          flax_rnn.init(jax.random.key(0), x)["params"]),
      OURS[cell]: (
          lambda p, x, k: layer.apply({"params": p}, x, rng=k), layer_params),
      f"{OURS[cell]} (deterministic)": (
          lambda p, x, k: layer_eval.apply({"params": p}, x), layer_params),
      CELL_RNN[cell]: (
          lambda p, x, k: scanned.apply({"params": {"cell": p}}, x, rngs={"noise": k}),
          layer_params),
  }
  candidates[SCAN_AUTODIFF[cell]] = (
      lambda p, x, k: _scan_autodiff(cell, p, x, k), layer_params)
  if cell == "lstm":
    try:
      candidates[CUDNN] = _cudnn_lstm(batch, features, hidden)
    except Exception as error:  # pylint: disable=broad-except
      # Reported as unavailable by bench_jax, which compiles and runs every candidate first.
      def unavailable(p, x, k, reason=f"{type(error).__name__}: {error}"):
        raise RuntimeError(reason)
      candidates[CUDNN] = (unavailable, None)
  return {name: (_loss_and_grad(fn), params) for name, (fn, params) in candidates.items()}


def _scan_autodiff(cell: str, params, x, key):
  """The baseline of the hand-written VJP: ``jax.lax.scan`` of the library's step, autodiffed.

  The input projection is hoisted out of the loop (one matmul), each step is
  ``noisy_jax.rnn.lstm_step``/``gru_step`` (its elementwise part under
  ``jax.checkpoint``) with the step keys ``jax.random.split(key, T)``: the numbers
  of ``NoisyLSTM``/``NoisyGRU``, with JAX's scan transpose as the backward pass.
  """
  spec = noisy_jax.rnn.CELLS[cell]
  weights = spec.weights_type(*(params[name] for name in spec.weights_type._fields))
  step = noisy_jax.rnn.lstm_step if cell == "lstm" else noisy_jax.rnn.gru_step
  x_proj = noisy_jax.rnn.input_projection(jnp.swapaxes(x, 0, 1), weights.input_kernel,
                                          weights.bias)
  hidden = jnp.zeros((x.shape[0], weights.recurrent_kernel.shape[0]), x.dtype)
  carry = (hidden, hidden) if cell == "lstm" else hidden
  body = lambda carry, inputs: step(carry, inputs[0], weights, inputs[1])
  _, ys = jax.lax.scan(body, carry, (x_proj, jax.random.split(key, x.shape[1])))
  return jnp.swapaxes(ys, 0, 1)


def _cudnn_lstm(batch: int, features: int, hidden: int):
  from jax.experimental import rnn

  weights = rnn.init_lstm_weight(jax.random.key(0), features, hidden, 1, False)
  zeros = jnp.zeros((1, batch, hidden), jnp.float32)

  def apply(weights, x, key):
    del key
    lengths = jnp.full((x.shape[0],), x.shape[1], jnp.int32)
    return rnn.lstm(x, zeros, zeros, weights, lengths, features, hidden, 1, 0.0, False)[0]

  return apply, weights


def _planned_peak(compiled: jax.stages.Compiled) -> int | None:
  """XLA's planned peak of a compiled program: arguments + outputs + temporaries - aliases."""
  analysis = compiled.memory_analysis()
  if analysis is None:
    return None
  return int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes
             + analysis.temp_size_in_bytes - analysis.alias_size_in_bytes)


def peak_bytes(fn: Callable, *args) -> int | None:
  """XLA's planned peak for ``jit(fn)(*args)``: arguments + outputs + temporaries - aliases."""
  return _planned_peak(jax.jit(fn).lower(*args).compile())


def memory_only(cell: str, shape) -> dict[str, int | None]:
  """Planned peak bytes of each JAX candidate's training step, compiled, not run."""
  candidates = jax_candidates(cell, shape)
  x = jnp.zeros(shape[:3], jnp.float32)
  peaks = {}
  for name, (fn, params) in candidates.items():
    try:
      peaks[name] = peak_bytes(fn, params, x, jax.random.key(0))
    except Exception:  # pylint: disable=broad-except (cuDNN has no CPU lowering)
      continue
  return peaks


def bench_jax(cell: str, shape, repeats: int) -> dict[str, Any]:
  """Times, and takes the planned peak of, each candidate that compiles and runs here.

  Each candidate is compiled once, for the arguments of all (``compare`` feeds every
  function the same ones, and each picks its own parameters; jit prunes the others
  from its program); one that fails to compile or to run is reported as unavailable.
  """
  candidates = jax_candidates(cell, shape)
  names = list(candidates)
  x = jax.random.normal(jax.random.key(2), shape[:3], jnp.float32)
  args = jax.device_put((tuple(candidates[name][1] for name in names), x, jax.random.key(3)))
  compiled, compile_s, memory, unavailable = {}, {}, {}, {}
  for i, name in enumerate(names):
    step = lambda all_params, x, key, fn=candidates[name][0], i=i: fn(all_params[i], x, key)
    try:
      program, seconds = harness.compile_timed(step, *args)
      jax.block_until_ready(program(*args))
    except Exception as error:  # pylint: disable=broad-except (cuDNN has no CPU lowering)
      unavailable[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
      continue
    compiled[name], compile_s[name], memory[name] = program, seconds, _planned_peak(program)
  timings = harness.compare(compiled, *args, baseline=BASELINE[cell], repeats=repeats,
                            compile_s=compile_s)
  return {"timings": timings, "peak_bytes": memory, "unavailable": unavailable}


# ----------------------------------------------------------------------------- torch


def _torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  return torch


def _torch_noisy(torch, x, p, kind: str, c: float, alpha: float, half_normal: bool):
  """Eq. 12 written directly in PyTorch (NAN/NAH, reference-code sign convention)."""
  if kind == "sigmoid":
    u = 0.25 * x + 0.5
    h = torch.clamp(u, 0.0, 1.0)
  else:
    u = x
    h = torch.clamp(x, -1.0, 1.0)
  sigma = c * (torch.sigmoid(p * (h - u)) - 0.5) ** 2
  eps = torch.randn_like(x)
  if half_normal:
    eps = eps.abs()
  sign_x = torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
  direction = -sign_x * (-1.0 if alpha > 1 else 1.0)
  return alpha * h + (1 - alpha) * u + direction * sigma * eps


def torch_candidates(torch, cell: str, shape, device: str) -> dict[str, Callable]:
  """name -> training step closure (forward, ``sum(out**2)``, backward)."""
  batch, steps, features, hidden = shape
  x = torch.randn(batch, steps, features, device=device)
  module = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(
      features, hidden, batch_first=True).to(device)
  gates = 4 if cell == "lstm" else 3
  w_in = torch.nn.Parameter(0.1 * torch.randn(features, gates * hidden, device=device))
  w_rec = torch.nn.Parameter(0.1 * torch.randn(hidden, gates * hidden, device=device))
  bias = torch.nn.Parameter(torch.zeros(gates * hidden, device=device))
  b_hn = torch.nn.Parameter(torch.zeros(hidden, device=device))
  p_gates = torch.nn.Parameter(torch.rand((gates - 1) * hidden, device=device) * 2 - 1)
  p_cand = torch.nn.Parameter(torch.rand(hidden, device=device) * 2 - 1)
  p_cell = torch.nn.Parameter(torch.rand(hidden, device=device) * 2 - 1)
  sig = dict(kind="sigmoid", c=0.15, alpha=1.1, half_normal=True)
  tanh = dict(kind="tanh", c=0.5, alpha=1.15, half_normal=False)

  def eager_noisy():
    h = torch.zeros(batch, hidden, device=device)
    c_state = torch.zeros(batch, hidden, device=device)
    total = 0.0
    for t in range(steps):
      if cell == "lstm":
        z = x[:, t] @ w_in + h @ w_rec + bias
        g = _torch_noisy(torch, z[:, : 3 * hidden], p_gates, **sig)
        i, f, o = g[:, :hidden], g[:, hidden: 2 * hidden], g[:, 2 * hidden:]
        c_state = f * c_state + i * _torch_noisy(torch, z[:, 3 * hidden:], p_cand, **tanh)
        h = o * _torch_noisy(torch, c_state, p_cell, **tanh)
      else:
        zx, zh = x[:, t] @ w_in + bias, h @ w_rec
        g = _torch_noisy(torch, zx[:, : 2 * hidden] + zh[:, : 2 * hidden], p_gates, **sig)
        r, u = g[:, :hidden], g[:, hidden:]
        n = _torch_noisy(torch, zx[:, 2 * hidden:] + r * (zh[:, 2 * hidden:] + b_hn), p_cand,
                         **tanh)
        h = (1 - u) * n + u * h
      total = total + (h ** 2).sum()
    total.backward()

  def cudnn():
    out, _ = module(x)
    (out ** 2).sum().backward()

  kind = "torch.nn.LSTM" if cell == "lstm" else "torch.nn.GRU"
  return {kind: cudnn, f"torch eager noisy {cell.upper()} (per-step loop)": eager_noisy}


def bench_torch(torch, cell: str, shape, repeats: int) -> dict[str, Any] | None:
  device = harness.torch_device(torch)
  if device is None:
    print("  torch has no device of JAX's kind here: PyTorch rows skipped", flush=True)
    return None
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  results = {}
  for name, step in torch_candidates(torch, cell, shape, device).items():
    for _ in range(3):
      step()
    sync()
    times = []
    for _ in range(max(5, repeats // 5 if "eager" in name else repeats)):
      start = time.perf_counter()
      step()
      sync()
      times.append(time.perf_counter() - start)
    results[name] = {"median_s": statistics.median(times), "min_s": min(times),
                     "repeats": len(times), "device": device}
  return results


# ----------------------------------------------------------------------------- report


def _targets(cell: str, run: dict[str, Any]) -> dict[str, Any]:
  timings, memory = run["jax"]["timings"], run["jax"]["peak_bytes"]
  ours = OURS[cell]
  targets = {
      "time_over_flax": 1.0 / timings[ours]["ratio"],
      "memory_over_flax": (memory[ours] / memory[BASELINE[cell]]
                           if memory.get(ours) and memory.get(BASELINE[cell]) else None),
  }
  if CUDNN in timings:
    targets["time_over_cudnn"] = timings[CUDNN]["ratio"] / timings[ours]["ratio"]
  torch_results = run.get("torch") or {}
  for name, stats in torch_results.items():
    if "eager" in name:
      targets["torch_eager_over_ours"] = stats["median_s"] / timings[ours]["median_s"]
    else:
      targets["time_over_torch_cudnn"] = timings[ours]["median_s"] / stats["median_s"]
  return targets


def _fmt_ratio(value, bound: str, met: bool, env: dict[str, Any]) -> str:
  if value is None:
    return "pending (GPU run)"
  return f"{value:.2f} ({harness.target(bound, met, env)})"


def _in_run_order(runs: dict[str, Any], config: dict[str, Any]) -> list[dict[str, Any]]:
  """The runs as measured (LSTM first, shapes as configured); JSON sorts the keys."""
  shapes = [list(s) for s in config["shapes"]]
  return sorted(runs.values(), key=lambda run: (
      ("lstm", "gru").index(run["cell"]),
      shapes.index(run["shape"]) if run["shape"] in shapes else len(shapes)))


def _in_name_order(by_name: dict[str, Any], cell: str) -> list[str]:
  """Candidate names in table order: as built (JSON sorts the keys), unknown names last."""
  order = [BASELINE[cell], OURS[cell], f"{OURS[cell]} (deterministic)", CELL_RNN[cell],
           SCAN_AUTODIFF[cell], CUDNN]
  return ([name for name in order if name in by_name]
          + [name for name in by_name if name not in order])


def table(results: dict[str, Any]) -> str:
  """The markdown table of a results section, as run or as loaded from its JSON file."""
  env, config = results["environment"], results["config"]
  absolute = env["platform"] != "cpu"
  lines = [
      harness.provenance(env) + f": float32 fwd+bwd of `sum(outputs**2)` "
      f"w.r.t. the parameters, median of {config['repeats']} interleaved rounds"
      + ("" if absolute else "; CPU run with CPU-sized shapes: ratios only, no absolute times")
      + ". Time ratio = time / time of the flax baseline of that table (lower is faster); "
      "peak = XLA's planned peak bytes of the compiled step / the baseline's.",
      "",
  ]
  for run in _in_run_order(results["runs"], config):
    cell, shape = run["cell"], run["shape"]
    header = ["(B, T, D, H) = " + str(tuple(shape)) + f" {cell.upper()}", "time ratio",
              "peak ratio"] + (["ms"] if absolute else [])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    timings, memory = run["jax"]["timings"], run["jax"]["peak_bytes"]
    base_memory = memory.get(BASELINE[cell])
    for name in _in_name_order(timings, cell):
      stats = timings[name]
      peak = f"{memory[name] / base_memory:.2f}" if memory.get(name) and base_memory else "-"
      row = [f"`{name}`", f"{1.0 / stats['ratio']:.2f}", peak]
      if absolute:
        row.append(f"{1e3 * stats['median_s']:.2f}")
      lines.append("| " + " | ".join(row) + " |")
    torch_rows = sorted((run.get("torch") or {}).items(), key=lambda item: "eager" in item[0])
    for name, stats in torch_rows:  # cuDNN's row first, as measured (JSON sorts the keys)
      ratio = stats["median_s"] / timings[BASELINE[cell]]["median_s"]
      row = [f"`{name}` ({stats['device']}, own loop)", f"{ratio:.2f}", "-"]
      if absolute:
        row.append(f"{1e3 * stats['median_s']:.2f}")
      lines.append("| " + " | ".join(row) + " |")
    for name, reason in run["jax"]["unavailable"].items():
      # The full reason is in the JSON results.
      lines.append(f"| `{name}` | unavailable on this backend ({reason.split(':')[0]}) | - |"
                   + (" - |" if absolute else ""))
    if run.get("torch") is None:
      lines.append("| PyTorch rows | skipped: torch not importable or without a device of JAX's kind | - |" + (" - |" if absolute else ""))
    lines.append("")
    t = run["targets"]
    ours = OURS[cell]
    notes = [
        f"{ours} / flax time {_fmt_ratio(t['time_over_flax'], f'<= {FLAX_TARGET}', t['time_over_flax'] <= FLAX_TARGET, env)}",
        f"peak memory / flax {_fmt_ratio(t['memory_over_flax'], f'<= {MEMORY_TARGET}', (t['memory_over_flax'] or 0) <= MEMORY_TARGET, env)}",
    ]
    if cell == "lstm":  # jax.experimental.rnn has no GRU
      notes.append(f"{ours} / {CUDNN} time "
                   + _fmt_ratio(t.get("time_over_cudnn"), f"<= {CUDNN_TARGET}",
                                (t.get("time_over_cudnn") or 0) <= CUDNN_TARGET, env))
    notes += [
        f"{ours} / torch cuDNN time "
        + _fmt_ratio(t.get("time_over_torch_cudnn"), f"<= {CUDNN_TARGET}",
                     (t.get("time_over_torch_cudnn") or 0) <= CUDNN_TARGET, env),
        "torch eager noisy / ours time "
        + _fmt_ratio(t.get("torch_eager_over_ours"), f">= {TORCH_EAGER_TARGET}",
                     (t.get("torch_eager_over_ours") or 0) >= TORCH_EAGER_TARGET, env),
    ]
    lines.append(f"- {cell.upper()} {tuple(shape)}: " + "; ".join(notes) + ".")
    lines.append("")
  if results.get("memory_only"):
    lines.append(f"Planned peak memory of a training step at the issue's shapes, compiled for "
                 f"this backend ({env['platform']}) and not run, relative to the flax baseline:")
    lines.append("")
    for run in _in_run_order(results["memory_only"], {"shapes": [list(s) for s in SHAPES]}):
      peaks, base = run["peak_bytes"], run["peak_bytes"].get(BASELINE[run["cell"]])
      parts = [f"`{name}` {peaks[name] / base:.2f}" for name in _in_name_order(peaks, run["cell"])
               if name != BASELINE[run["cell"]] and peaks[name] and base]
      size = f"baseline {base / 2**20:.1f} MiB; " if absolute else ""
      lines.append(f"- {run['cell'].upper()} {tuple(run['shape'])}: {size}" + ", ".join(parts) + ".")
  return "\n".join(lines).rstrip("\n")


def main(outdir=None, *, shapes=None, small: bool | None = None, repeats: int | None = None,
         cells=("lstm", "gru"), markdown: bool = True) -> dict[str, Any]:
  cpu = jax.default_backend() == "cpu"
  small = cpu if small is None else small
  shapes = shapes or (SMALL_SHAPES if small else SHAPES)
  repeats = repeats or (20 if cpu else 50)
  torch = _torch()
  results = {"config": {"shapes": [list(s) for s in shapes], "repeats": repeats,
                        "small": small, "dtype": "float32"},
             "runs": {}}
  for cell in cells:
    for shape in shapes:
      print(f"  {cell} {shape} ...", flush=True)
      run = {"cell": cell, "shape": list(shape), "jax": bench_jax(cell, shape, repeats)}
      run["torch"] = bench_torch(torch, cell, shape, repeats) if torch else None
      run["targets"] = _targets(cell, run)
      for name, stats in run["jax"]["timings"].items():
        print(f"    {name:42s} time ratio {1.0 / stats['ratio']:.3f}  "
              f"peak {run['jax']['peak_bytes'][name]}")
      for name, reason in run["jax"]["unavailable"].items():
        print(f"    {name:42s} unavailable: {reason}")
      results["runs"][f"{cell}_{'x'.join(map(str, shape))}"] = run
  if small:
    # The shapes are too slow to time here, but their memory plan is cheap.
    results["memory_only"] = {}
    for cell in cells:
      for shape in SHAPES:
        print(f"  {cell} {shape} memory plan ...", flush=True)
        results["memory_only"][f"{cell}_{'x'.join(map(str, shape))}"] = {
            "cell": cell, "shape": list(shape), "peak_bytes": memory_only(cell, shape)}
  path = harness.publish("bench_recurrent", SECTION, MARKDOWN_HEADING, results, table, outdir,
                         markdown=markdown)
  print(f"  wrote {path}")
  return results


def _shape(text: str) -> tuple[int, int, int, int]:
  values = tuple(int(v) for v in text.split(","))
  if len(values) != 4:
    raise argparse.ArgumentTypeError(f"a shape is B,T,D,H (four integers), got {text!r}")
  return values


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--shapes", type=_shape, nargs="+", default=None,
                      help="B,T,D,H shapes (default: the issue's on GPU, CPU-sized on CPU)")
  parser.add_argument("--small", action=argparse.BooleanOptionalAction, default=None,
                      help=f"CPU-sized shapes {SMALL_SHAPES} and the issue's shapes' memory "
                           "plan (default: on a CPU); --no-small runs as on a GPU")
  parser.add_argument("--repeats", type=int, default=None, help="interleaved timing rounds")
  parser.add_argument("--cells", nargs="+", default=["lstm", "gru"], choices=["lstm", "gru"])
  parser.add_argument("--outdir", default=None)
  parser.add_argument("--no-markdown", action="store_true", help="write no table (neither does --outdir)")
  flags = parser.parse_args()
  main(flags.outdir, shapes=flags.shapes, small=flags.small, repeats=flags.repeats,
       cells=tuple(flags.cells), markdown=not flags.no_markdown)
