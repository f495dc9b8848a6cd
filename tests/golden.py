"""Golden numbers: outputs, gradients and noise draws that must stay bit-identical.

``python -m tests.golden`` recomputes every case and writes ``tests/golden.npz``
(``--diff [CASE ...]`` only reports what differs from it);
``tests/test_golden.py`` recomputes them and compares bit for bit. A change that is
meant to alter numbers regenerates the file and says why in its commit and in
CHANGELOG.md. The cases cover every public numerical entry point with fixed
parameters and keys: the activations in every mode and kind, the noise generator,
the LSTM/GRU steps and sequences, the NTM step and addressing, every Linen and NNX
module (initial parameters, outputs, gradients), the optimizers, schedules and tasks.

The file was first written from commit d3f5919 (before the core redesign) and
rewritten by the CPU-speed work: the layers' gradients now come from ``jax.vjp``
residuals instead of a remat nested in a remat, and the NTM step's noisy part runs
in one checkpoint, so gradients moved by at most 1.9e-5 of each array's largest
magnitude (the NTM's initial-weighting logits; the rest below 2e-6) and the NTM's
outputs by at most 7e-8; every other output stayed bit-identical.
``python -m tests.golden --diff`` reports such differences against the stored file.

Bit for bit holds on the machine that wrote the file: XLA:CPU compiles for the host's
vector unit, and another one (AVX-512 against AVX2, say) may round a reduction
differently. The file therefore records where it was written (``MACHINE_KEY``: jax,
jaxlib, the CPU's vector-instruction flags); on another machine the test allows each
float array ``CROSS_MACHINE_TOLERANCE`` of its largest magnitude and still wants every
integer array exact. The file was last rewritten, with unchanged code, on a 2-core Xeon
with AVX-512 FP16 (jax 0.10.2), where the previous file's numbers differed by at most
5.2e-5 of an array's largest magnitude (the NTM's initial-weighting gradients; the
rest below 2e-6), the same at the commit before any change of that session.
"""

import functools
import json
import pathlib
import platform
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import noisy_jax
import noisy_jax.nn
import noisy_jax.nnx
from noisy_jax import ntm as ntm_lib
from noisy_jax import rnn as rnn_lib

PATH = pathlib.Path(__file__).with_name("golden.npz")
MACHINE_KEY = "__machine__"  # where the file was written (see machine())
# Allowed on another machine: 4x the largest difference measured between two CPUs.
CROSS_MACHINE_TOLERANCE = 2e-4
B, T, D, H = 2, 4, 3, 5
MODES = ("nan", "nah", "nani", "nanil", "nanis")
KINDS = ("hard_tanh", "hard_sigmoid", "tanh", "sigmoid")


def _normal(seed: int, shape, scale: float = 1.0) -> jax.Array:
  return scale * jax.random.normal(jax.random.key(seed), shape)


def _flat(prefix: str, tree) -> dict[str, jax.Array]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {f"{prefix}{jax.tree_util.keystr(path)}": leaf for path, leaf in leaves}


def _vjp(fn, *args):
  """Outputs and the gradients of every argument for a fixed random cotangent.

  Traced inside each case's single ``jax.jit``, so one case is one compilation.
  """
  out, vjp = jax.vjp(fn, *args)
  leaves, treedef = jax.tree.flatten(out)
  cotangent = jax.tree.unflatten(
      treedef, [_normal(100 + i, jnp.shape(x)).astype(jnp.result_type(x))
                for i, x in enumerate(leaves)])
  return out, vjp(cotangent)


def activation_cases() -> dict[str, jax.Array]:
  x = jnp.concatenate([_normal(1, (40,), 3.0), jnp.array([-9.0, -2.5, -2.0, 0.0, 2.0, 2.5, 9.0])])
  p = jax.random.uniform(jax.random.key(2), x.shape, minval=-1.0, maxval=1.0)
  out = {}
  for kind in KINDS:
    out[f"plain/{kind}"] = noisy_jax.activations.activation(x, kind=kind)
    for mode in MODES:
      scales = ("reference", "paper") if mode == "nanil" else ("reference",)
      for scale in scales:
        for deterministic in (False, True):
          fn = lambda x, p, c: noisy_jax.noisy_activation(
              x, jax.random.key(3), p, c, None, mode, kind=kind,
              deterministic=deterministic, nanil_scale=scale)
          y, grads = _vjp(fn, x, p, jnp.float32(0.7))
          name = f"act/{kind}/{mode}/{scale}/{deterministic}"
          out[f"{name}/y"] = y
          out.update(_flat(f"{name}/grad", grads))
  out["hard_tanh"] = noisy_jax.hard_tanh(x)
  out["hard_sigmoid"] = noisy_jax.hard_sigmoid(x)
  out["p_init"] = noisy_jax.p_init(jax.random.key(4), (7,))
  return out


def noise_cases() -> dict[str, jax.Array]:
  from noisy_jax._src import noise  # the generator itself has no public module
  out = {}
  for dtype in (jnp.float32, jnp.bfloat16, jnp.float16):
    for impl in ("hash", "jax"):
      out[f"noise/{jnp.dtype(dtype).name}/{impl}"] = noise.standard_normal(
          jax.random.key(5), (3, 7), dtype, noise_impl=impl)
  return out


def _rnn_weights(cell: str):
  shapes = rnn_lib.weight_shapes(cell, D, H)
  params = [_normal(10 + i, s, 0.4) for i, s in enumerate(shapes.values())]
  return (rnn_lib.LSTMWeights if cell == "lstm" else rnn_lib.GRUWeights)(*params)


RNN_VARIANTS = {
    "default": {},
    "reverse": dict(reverse=True, keep_order=True, seq_lengths=jnp.array([4, 2])),
    "time_major": dict(time_major=True, unroll=2),
    "some_gates": dict(noisy_gates={"lstm": ("forget", "candidate"),
                                    "gru": ("update", "candidate")}),
    "deterministic": dict(deterministic=True),
    "modes": dict(sigmoid=rnn_lib.UnitNoise("sigmoid", "nanil", 0.9),
                  tanh=rnn_lib.UnitNoise("hard_tanh", "nanis", 0.3, 1.0)),
}


def rnn_sequence_case(cell: str, variant: str) -> dict[str, jax.Array]:
  kwargs = dict(RNN_VARIANTS[variant])
  if "noisy_gates" in kwargs:
    kwargs["noisy_gates"] = kwargs["noisy_gates"][cell]
  xs = _normal(20, (B, T, D))
  inputs = jnp.swapaxes(xs, 0, 1) if kwargs.get("time_major") else xs
  sequence = rnn_lib.lstm_sequence if cell == "lstm" else rnn_lib.gru_sequence
  fn = lambda w, x: sequence(x, w, jax.random.key(21), **kwargs)
  res, grads = _vjp(fn, _rnn_weights(cell), inputs)
  return {**_flat("out", res), **_flat("grad", grads)}


def rnn_step_case(cell: str) -> dict[str, jax.Array]:
  weights = _rnn_weights(cell)
  step = rnn_lib.lstm_step if cell == "lstm" else rnn_lib.gru_step
  carry = (_normal(22, (B, H)),) * 2 if cell == "lstm" else _normal(22, (B, H))
  x_proj = rnn_lib.input_projection(_normal(20, (B, D)), weights.input_kernel, weights.bias)
  fn = lambda carry, x, w: step(carry, x, w, jax.random.key(23))
  res, grads = _vjp(fn, carry, x_proj, weights)
  return {**_flat("out", res), **_flat("grad", grads)}


def _ntm_weights(controller: str):
  shapes = ntm_lib.weight_shapes(controller, D, 8, 6, 4, 1, 1, 1)
  count = iter(range(1000))
  make = lambda s: _normal(30 + next(count), s, 0.5)
  ctrl_type = ntm_lib.CONTROLLERS[controller].weights_type
  return ntm_lib.NTMWeights(ctrl_type(*map(make, shapes["controller"].values())),
                            *(make(s) for n, s in shapes.items() if n != "controller"))


def ntm_step_case(controller: str) -> dict[str, jax.Array]:
  weights = _ntm_weights(controller)
  state = ntm_lib.initial_state((B,), controller=controller, features=8, memory_size=6,
                                memory_width=4)

  def run(weights, xs):
    s, outputs = state, []
    for t in range(xs.shape[0]):
      s, y = ntm_lib.ntm_step(s, xs[t], weights, jax.random.key(41 + t),
                              controller=controller)
      outputs.append(y)
    return s, jnp.stack(outputs)

  res, grads = _vjp(run, weights, _normal(40, (2, B, D)))
  # The file was written when NTMState's weightings were read_/write_weights.
  out = {name.replace("_weighting", "_weights"): value
         for name, value in _flat("out", res).items()}
  return {**out, **_flat("grad", grads)}


def addressing_case() -> dict[str, jax.Array]:
  memory = _normal(50, (B, 6, 4))
  weighting = jax.nn.softmax(_normal(51, (B, 2, 6)), -1)
  content_key = _normal(52, (B, 2, 4))
  beta = jax.nn.softplus(_normal(53, (B, 2)))
  gate = jax.nn.sigmoid(_normal(54, (B, 2)))
  shift_weighting = jax.nn.softmax(_normal(55, (B, 2, 3)), -1)
  gamma = 1 + jax.nn.softplus(_normal(56, (B, 2)))
  erase = jax.nn.sigmoid(_normal(57, (B, 1, 4)))
  add = jnp.tanh(_normal(58, (B, 1, 4)))
  return {
      "address": ntm_lib.address(memory, weighting, content_key, beta, gate,
                                 shift_weighting, gamma),
      "read": ntm_lib.read(memory, weighting),
      "write": ntm_lib.write(memory, weighting[:, :1], erase, add),
      "cosine": ntm_lib.cosine_similarity(content_key, memory),
      "content": ntm_lib.content_weighting(memory, content_key, beta),
      "interpolate": ntm_lib.interpolate(weighting, weighting[:, ::-1], gate),
      "shift": ntm_lib.shift(weighting, shift_weighting),
      "sharpen": ntm_lib.sharpen(weighting, gamma),
  }


LINEN_MODULES = {
    "lstm_cell": lambda: noisy_jax.nn.noisy_rnn(noisy_jax.nn.NoisyLSTMCell(H)),
    "gru_cell": lambda: noisy_jax.nn.noisy_rnn(noisy_jax.nn.NoisyGRUCell(H)),
    "lstm": lambda: noisy_jax.nn.NoisyLSTM(
        H, sigmoid=rnn_lib.UnitNoise("hard_sigmoid", "nanil"),
        tanh=rnn_lib.UnitNoise("hard_tanh", "nan", 0.3)),
    "gru": lambda: noisy_jax.nn.NoisyGRU(H, reverse=True, noisy_gates=("reset", "candidate")),
    "ntm": lambda: noisy_jax.nn.noisy_rnn(
        noisy_jax.nn.NTMCell(8, memory_size=6, memory_width=4)),
    "ntm_ff": lambda: noisy_jax.nn.noisy_rnn(noisy_jax.nn.NTMCell(
        8, memory_size=6, memory_width=4, controller="feedforward",
        tanh=rnn_lib.UnitNoise("hard_tanh", "nani"))),
}

NNX_MODULES = {
    "lstm_cell": lambda rngs: nnx.RNN(noisy_jax.nnx.NoisyLSTMCell(D, H, rngs=rngs)),
    "gru_cell": lambda rngs: nnx.RNN(noisy_jax.nnx.NoisyGRUCell(D, H, rngs=rngs)),
    "lstm": lambda rngs: noisy_jax.nnx.NoisyLSTM(
        D, H, sigmoid=rnn_lib.UnitNoise("hard_sigmoid", "nanil"),
        tanh=rnn_lib.UnitNoise("hard_tanh", "nan", 0.3), rngs=rngs),
    "gru": lambda rngs: noisy_jax.nnx.NoisyGRU(D, H, reverse=True,
                                               noisy_gates=("reset", "candidate"), rngs=rngs),
    "ntm": lambda rngs: nnx.RNN(noisy_jax.nnx.NTMCell(D, 8, memory_size=6, memory_width=4,
                                                      rngs=rngs)),
    "ntm_ff": lambda rngs: nnx.RNN(noisy_jax.nnx.NTMCell(
        D, 8, memory_size=6, memory_width=4, controller="feedforward",
        tanh=rnn_lib.UnitNoise("hard_tanh", "nani"), rngs=rngs)),
}


def linen_case(name: str) -> dict[str, jax.Array]:
  module = LINEN_MODULES[name]()
  xs = _normal(60, (B, T, D))
  variables = module.init({"params": jax.random.key(61), "noise": jax.random.key(62)}, xs)
  fn = lambda v, x: module.apply(v, x, rngs={"noise": jax.random.key(63)})
  res, grads = _vjp(fn, variables, xs)
  return {**_flat("init", variables), **_flat("out", res), **_flat("grad", grads)}


def nnx_case(name: str) -> dict[str, jax.Array]:
  model = NNX_MODULES[name](nnx.Rngs(params=71, noise=72))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  fn = lambda params, x: nnx.merge(graphdef, params, rest, copy=True)(x)
  res, grads = _vjp(fn, params, _normal(70, (B, T, D)))
  return {**_flat("init", params), **_flat("out", res), **_flat("grad", grads)}


def optim_cases() -> dict[str, jax.Array]:
  out = {}
  params = {"w": _normal(80, (3, 4)), "b": _normal(81, (4,))}
  grads = {"w": _normal(82, (3, 4)), "b": _normal(83, (4,))}
  transforms = {
      "add_noise": noisy_jax.optim.add_gradient_noise(0.3, 0.55, jax.random.key(84)),
      "add_noise_jax": noisy_jax.optim.add_gradient_noise(
          noisy_jax.schedules.gradient_noise_variance(1.0, 0.55), key=85, noise_impl="jax"),
      "noisy_sgd": noisy_jax.optim.noisy_sgd(0.1, 0.01, key=86, max_norm=1.0),
  }
  for name, tx in transforms.items():
    state = tx.init(params)
    for t in range(3):
      updates, state = tx.update(grads, state, params)
      out.update(_flat(f"optim/{name}/{t}", updates))
  steps = jnp.arange(0, 2000, 37)
  out["sched/anneal"] = jax.vmap(noisy_jax.schedules.noise_annealing())(steps)
  out["sched/anneal2"] = jax.vmap(noisy_jax.schedules.noise_annealing(10.0, 0.1, 50))(steps)
  out["sched/variance"] = jax.vmap(noisy_jax.schedules.gradient_noise_variance(0.3, 0.55))(
      steps)
  return out


def task_cases() -> dict[str, jax.Array]:
  tasks = noisy_jax.tasks
  out = {}
  batches = {
      "unique": tasks.unique_integers(jax.random.key(90), 4, min_length=3, length_high=10),
      "recall": tasks.associative_recall(jax.random.key(91), 3),
      "copy": tasks.copy(jax.random.key(92), 3, max_length=5),
      "repeat_copy": tasks.repeat_copy(jax.random.key(93), 3, max_length=4, max_repeats=3),
      "eval_copy": tasks.fixed_eval_set(tasks.copy, 4, seed=3, max_length=4),
      "classify": tasks.classification_batch(
          jax.random.key(94), _normal(95, (10, 3)), jnp.arange(10) % 3, 4),
  }
  for name, batch in batches.items():
    out.update(_flat(f"tasks/{name}", batch))
  out["tasks/curriculum"] = jax.vmap(
      lambda s: tasks.linear_curriculum(s, start=2, final=12, ramp_steps=100))(
          jnp.arange(0, 150, 7))
  return out


def _cases():
  cases = {"activations": activation_cases, "noise": noise_cases,
           "addressing": addressing_case, "optim": optim_cases, "tasks": task_cases}
  for cell in ("lstm", "gru"):
    cases[f"rnn_step/{cell}"] = functools.partial(rnn_step_case, cell)
    for variant in RNN_VARIANTS:
      cases[f"rnn/{cell}/{variant}"] = functools.partial(rnn_sequence_case, cell, variant)
  for controller in ("lstm", "feedforward"):
    cases[f"ntm_step/{controller}"] = functools.partial(ntm_step_case, controller)
  for name in LINEN_MODULES:
    cases[f"linen/{name}"] = functools.partial(linen_case, name)
  for name in NNX_MODULES:
    cases[f"nnx/{name}"] = functools.partial(nnx_case, name)
  return cases


CASES = _cases()
# What `make test` checks (a fifth of the compile time: the activations, the other pure
# modules, one sequence and one module per framework); `make test-slow` checks every case.
FAST = ("activations", "noise", "optim", "tasks", "rnn/lstm/reverse", "linen/gru",
        "nnx/lstm_cell")


def compute(name: str) -> dict[str, np.ndarray]:
  """Case ``name``'s arrays, computed in one ``jax.jit``, keyed ``<name>:<array>``."""
  arrays = jax.jit(CASES[name])()
  return {f"{name}:{k}": _bits_if_exotic(np.asarray(v)) for k, v in arrays.items()}


def machine() -> str:
  """What decides XLA:CPU's rounding here: jax, jaxlib, the architecture, and the CPU's
  vector-instruction flags (Linux's /proc/cpuinfo; empty elsewhere), as JSON."""
  try:
    flags = pathlib.Path("/proc/cpuinfo").read_text()
  except OSError:
    flags = ""
  vector = sorted(set(re.findall(r"\b(?:avx\w*|amx\w*|fma\w*|f16c|sse\w*)\b", flags)))
  return json.dumps({"jax": jax.__version__, "jaxlib": jax.lib.__version__,
                     "arch": platform.machine(), "vector": vector}, sort_keys=True)


def _bits_if_exotic(array: np.ndarray) -> np.ndarray:
  """bfloat16 (which ``np.savez`` stores as raw void) as its unsigned-integer bits."""
  return array.view(f"<u{array.dtype.itemsize}") if array.dtype.kind == "V" else array


def diff(names=None) -> float:
  """Prints every array that differs from the stored file; returns the largest difference.

  The difference of an array is ``max |new - stored| / max |stored|``.
  """
  stored = np.load(PATH)
  worst = 0.0
  for name in names or CASES:
    for key, value in compute(name).items():
      expected = _bits_if_exotic(stored[key])
      if value.tobytes() == expected.tobytes():
        continue
      if value.dtype.kind != "f":
        print(f"{key}: {np.sum(value != expected)} of {value.size} elements differ")
        worst = float("inf")
        continue
      new, old = value.astype(np.float64), expected.astype(np.float64)
      change = float(np.max(np.abs(new - old)) / (np.max(np.abs(old)) or 1.0))
      worst = max(worst, change)
      print(f"{key}: {change:.2e} of its largest magnitude, {np.sum(new != old)} of "
            f"{value.size} elements")
  print(f"largest difference {worst:.2e}")
  return worst


def main() -> None:
  if "--diff" in sys.argv[1:]:
    diff([name for name in sys.argv[1:] if name != "--diff"])
    return
  arrays = {}
  for name in CASES:
    arrays.update(compute(name))
  arrays[MACHINE_KEY] = np.asarray(machine())
  np.savez_compressed(PATH, **arrays)
  print(f"wrote {len(arrays)} arrays to {PATH}")


if __name__ == "__main__":
  main()
