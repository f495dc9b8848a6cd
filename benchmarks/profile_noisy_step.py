"""Where a noisy training step's time goes: an ablation profile and the compiled program.

For each workload of the CPU-speed issue (forward+backward of ``sum(outputs**2)``
w.r.t. the parameters, float32; the NTM as its copy-task training step), four
variants are compiled and timed interleaved (``harness.compare``), and the time
of each is split as

* **noise generation** = default - "generator off", where "generator off" is the
  same program with the normal generator replaced by a constant (every other op of
  the noisy units stays: the activations, :math:`\\sigma(x)`, the masks, the
  plumbing);
* **noise arithmetic** = "generator off" - deterministic (the noisy units' extra
  ops beyond the test-time expectation);
* **the rest** (matmuls, the test-time activations, the scan) = deterministic.

A matmul-only row times the same recurrence's matmuls alone (the per-step
``(B, H) x (H, G)`` forward and the two backward matmuls, plus the input
projection), so "the rest" can be split into matmuls and everything else.

The compiled program of each variant is counted too: ``draws`` is the number of
normal generators it holds (each hashes with the lowbias32 multiplier
``0x846CA68B`` once), counted once per scan body, so a recurrent layer that
draws every noisy element once forward and once backward shows 2 per kind of unit.

Usage::

  python -m benchmarks.profile_noisy_step [--repeats R] [--only lstm gru cell ntm]

Writes ``benchmarks/results/profile_<device>.json`` and prints a table; the
figures in BENCHMARKS.md ("Where a noisy step's time goes") come from it.
"""

import argparse
import contextlib
import json
import pathlib
import re
from typing import Any, Callable
from unittest import mock

import flax.linen as nn
import jax
import jax.numpy as jnp

import noisy_jax
import noisy_jax.nn
from benchmarks import bench_ntm
from benchmarks import harness
from noisy_jax._src import noise

SHAPES = {"large": (16, 100, 128, 128), "small": (8, 100, 32, 64)}
NTM_SIZES = dict(memory_size=32, memory_width=8, features=64, num_read_heads=1,
                 num_write_heads=1, shift_range=1)
NTM_BATCH, NTM_LENGTH, NTM_BITS = 16, 10, 8  # T = 2 * 10 + 1 = 21 steps
# The second lowbias32 multiplier: one per generator in a compiled program.
_GENERATOR_MARK = str(noise._MIX_MULTIPLIERS[1])


@contextlib.contextmanager
def generator_off():
  """Every normal draw traced inside is a constant 0.5 (shape and dtype kept)."""
  def constant(key_or_seed, shape, dtype=jnp.float32):
    del key_or_seed
    return jnp.full(shape, 0.5, dtype)
  with mock.patch.object(noise, "_hash_normal", constant), \
       mock.patch.object(noise, "_seeded_normal", constant):
    yield


def _loss_and_grad(apply: Callable) -> Callable:
  return jax.value_and_grad(lambda params, x, key: jnp.sum(jnp.square(apply(params, x, key))))


def recurrent_workloads(cell: str, shape, path: str = "layer") -> dict[str, tuple]:
  """variant -> (training step ``f(params, x, key)``, params); ``path`` is "layer" or "cell"."""
  _, _, _, hidden = shape
  x = jnp.zeros(shape[:3], jnp.float32)
  keys = {"params": jax.random.key(0), "noise": jax.random.key(1)}
  if path == "layer":
    cls = noisy_jax.nn.NoisyLSTM if cell == "lstm" else noisy_jax.nn.NoisyGRU
    noisy, det = cls(hidden), cls(hidden, deterministic=True)
    params = noisy.init(keys, x)["params"]
    noisy_fn = lambda p, x, k: noisy.apply({"params": p}, x, rng=k)
    det_fn = lambda p, x, k: det.apply({"params": p}, x)
  else:
    cls = noisy_jax.nn.NoisyLSTMCell if cell == "lstm" else noisy_jax.nn.NoisyGRUCell
    noisy = noisy_jax.nn.noisy_rnn(cls(hidden))
    det = noisy_jax.nn.noisy_rnn(cls(hidden, deterministic=True))
    params = noisy.init(keys, x)["params"]
    noisy_fn = lambda p, x, k: noisy.apply({"params": p}, x, rngs={"noise": k})
    det_fn = lambda p, x, k: det.apply({"params": p}, x)
  flax_cell = nn.OptimizedLSTMCell(hidden) if cell == "lstm" else nn.GRUCell(hidden)
  flax_rnn = nn.RNN(flax_cell)
  flax_params = flax_rnn.init(jax.random.key(0), x)["params"]
  return {
      "flax": (lambda p, x, k: flax_rnn.apply({"params": p}, x), flax_params),
      "default": (noisy_fn, params),
      "generator off": (noisy_fn, params),
      "deterministic": (det_fn, params),
      "matmuls only": (_matmuls_only(cell), _matmul_params(cell, shape)),
  }


def _matmul_params(cell: str, shape):
  _, _, features, hidden = shape
  gates = 4 if cell == "lstm" else 3
  return (0.1 * jnp.ones((features, gates * hidden)), 0.01 * jnp.ones((hidden, gates * hidden)))


def _matmuls_only(cell: str) -> Callable:
  """The recurrence's matmuls with a trivial elementwise part (one add, one slice)."""
  def apply(params, x, key):
    del key
    input_kernel, recurrent_kernel = params
    hidden = recurrent_kernel.shape[0]
    x_proj = jnp.einsum("btd,dg->tbg", x, input_kernel)

    def body(h, x_proj_t):
      h = (x_proj_t + jnp.dot(h, recurrent_kernel))[:, :hidden]
      return h, h

    _, ys = jax.lax.scan(body, jnp.zeros((x.shape[0], hidden)), x_proj)
    return ys
  return apply


def ntm_workloads() -> tuple[dict[str, tuple], tuple]:
  """variant -> (train step, args): the copy-task training step of bench_ntm at NTM_SIZES."""
  batch = noisy_jax.tasks.copy(jax.random.key(0), NTM_BATCH, min_length=NTM_LENGTH,
                               max_length=NTM_LENGTH, bits=NTM_BITS)
  models = {
      "default": bench_ntm.CopyNTM(NTM_BITS, dict(NTM_SIZES)),
      "deterministic": bench_ntm.CopyNTM(NTM_BITS, {**NTM_SIZES, "deterministic": True}),
      "plain": bench_ntm.CopyNTM(NTM_BITS, {
          **NTM_SIZES, "noisy_gates": (), "sigmoid": noisy_jax.UnitNoise("sigmoid", "nah"),
          "tanh": noisy_jax.UnitNoise("tanh", "nan")}),
  }
  models["generator off"] = models["default"]
  params = jax.jit(models["default"].init)(
      {"params": jax.random.key(1), "noise": jax.random.key(2)}, batch["inputs"])
  opt_state = bench_ntm.optimizer().init(params)
  fns = {name: bench_ntm.train_step_fn(model) for name, model in models.items()}
  return fns, (params, opt_state, batch, jax.random.key(3))


def draws(compiled_text: str) -> int:
  return compiled_text.count(_GENERATOR_MARK)


def _compile(fn, args, off: bool):
  # The library's jitted helpers cache their traces: the patched variant is traced
  # afresh, and nothing it traced is reused by the others.
  jax.clear_caches()
  with generator_off() if off else contextlib.nullcontext():
    compiled = jax.jit(fn).lower(*args).compile()
  jax.clear_caches()
  return compiled


def profile(fns: dict[str, Callable], args: tuple, baseline: str, repeats: int) -> dict:
  """Times every variant interleaved; returns per-variant ratios and draw counts."""
  compiled = {name: _compile(fn, args, name == "generator off") for name, fn in fns.items()}
  counts = {name: draws(c.as_text()) for name, c in compiled.items()}
  timings = harness.compare(compiled, *args, baseline=baseline, repeats=repeats)
  return {"timings": timings, "draws": counts}


def _split(run: dict, reference: str) -> dict[str, float]:
  """Shares of the default step's time, in units of the reference's time."""
  t = {name: 1.0 / stats["ratio"] for name, stats in run["timings"].items()}
  split = {
      "default / reference": t["default"],
      "noise generation": t["default"] - t["generator off"],
      "noise arithmetic": t["generator off"] - t["deterministic"],
      "deterministic / reference": t["deterministic"],
  }
  if "matmuls only" in t:
    split["matmuls only / reference"] = t["matmuls only"]
  return split


def main(repeats: int, only: tuple[str, ...]) -> dict[str, Any]:
  results = {}
  for cell in ("lstm", "gru"):
    if cell not in only:
      continue
    for size, shape in SHAPES.items():
      results[f"{cell}_layer_{size}"] = _profile_with_params(
          recurrent_workloads(cell, shape), "flax", repeats, shape)
  if "cell" in only:
    shape = SHAPES["large"]
    results["lstm_cell_large"] = _profile_with_params(
        recurrent_workloads("lstm", shape, path="cell"), "flax", repeats, shape)
  if "ntm" in only:
    fns, args = ntm_workloads()
    run = profile(fns, args, "plain", repeats)
    run["split"] = _split(run, "plain")
    run["shape"] = {**NTM_SIZES, "batch": NTM_BATCH, "steps": 2 * NTM_LENGTH + 1}
    results["ntm"] = run
    _print("ntm", run)
  out = pathlib.Path(harness.RESULTS_DIR) / f"profile_{harness.device_slug()}.json"
  out.write_text(json.dumps({"environment": harness.environment(), "repeats": repeats,
                             "runs": results}, indent=2, sort_keys=True) + "\n")
  print(f"wrote {out}")
  return results


def _profile_with_params(workloads, baseline, repeats, shape):
  """profile() of ``variant -> (fn, params)``, each function taking its own parameters."""
  names = list(workloads)
  params = [workloads[name][1] for name in names]
  x = jax.random.normal(jax.random.key(2), shape[:3])
  indexed = {name: (lambda i, f: lambda ps, x, k: f(ps[i], x, k))(i, workloads[name][0])
             for i, name in enumerate(names)}
  run = profile({n: _loss_and_grad(f) for n, f in indexed.items()}, (tuple(params), x,
                jax.random.key(3)), baseline, repeats)
  run["split"] = _split(run, baseline)
  run["shape"] = list(shape)
  _print(f"{shape}", run)
  return run


def _print(title: str, run: dict) -> None:
  print(f"== {title}")
  for name, stats in run["timings"].items():
    print(f"  {name:16s} time ratio {1.0 / stats['ratio']:.3f}  draws {run['draws'][name]}")
  print("  split: " + ", ".join(f"{k} {v:.3f}" for k, v in run["split"].items()), flush=True)


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--only", nargs="+", default=["lstm", "gru", "cell", "ntm"],
                      choices=["lstm", "gru", "cell", "ntm"])
  flags = parser.parse_args()
  main(flags.repeats, tuple(flags.only))
