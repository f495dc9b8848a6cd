"""Builders shared by the recurrent-module tests (this file holds no test).

* Every noisy module class (:data:`CLASSES`) in both frameworks, from one table:
  :func:`linen_module`, :func:`nnx_module`, and their whole-sequence forms
  (:func:`linen_sequence`, :func:`nnx_sequence`), and runs with explicit step keys
  (:func:`linen_with_keys`, :func:`nnx_with_keys`).
* Parameters: random ones of any module (:func:`random_params`), copies between
  Linen dicts and NNX modules (:func:`nnx_params`, :func:`load_params`), and
  parameters under which each output depends on its own step's noise only
  (:func:`memoryless`).
* The float64 references of ``tests/reference_rnn.py`` with the library's default
  ``c`` and ``alpha`` filled in (:func:`reference_sequence`), and the layout of
  flax's own cells in the fused weights (:func:`fused_lstm`, :func:`fused_gru`).
"""

import functools
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax import traverse_util

import noisy_jax
import noisy_jax.nn
import noisy_jax.nnx
from noisy_jax import rnn
from tests import reference_rnn

UnitNoise = rnn.UnitNoise

CLASSES = ("lstm_cell", "gru_cell", "lstm_layer", "gru_layer", "ntm_cell")
FRAMEWORKS = ("linen", "nnx")
# The recurrence each class runs ("ntm": an NTM with its default LSTM controller).
KIND = {"lstm_cell": "lstm", "gru_cell": "gru", "lstm_layer": "lstm", "gru_layer": "gru",
        "ntm_cell": "ntm"}
LINEN = {"lstm_cell": noisy_jax.nn.NoisyLSTMCell, "gru_cell": noisy_jax.nn.NoisyGRUCell,
         "lstm_layer": noisy_jax.nn.NoisyLSTM, "gru_layer": noisy_jax.nn.NoisyGRU,
         "ntm_cell": noisy_jax.nn.NTMCell}
NNX = {"lstm_cell": noisy_jax.nnx.NoisyLSTMCell, "gru_cell": noisy_jax.nnx.NoisyGRUCell,
       "lstm_layer": noisy_jax.nnx.NoisyLSTM, "gru_layer": noisy_jax.nnx.NoisyGRU,
       "ntm_cell": noisy_jax.nnx.NTMCell}
# A small memory keeps the NTM's compiles short.
NTM_SIZES = dict(memory_size=4, memory_width=3)
# NNX modules initialise their parameters eagerly; zeros (then load_params) skip
# compiling the random initialisers, the QR of the orthogonal one included.
ZERO_INIT = dict(kernel_init=nnx.initializers.zeros_init(),
                 recurrent_kernel_init=nnx.initializers.zeros_init(),
                 bias_init=nnx.initializers.zeros_init(), p_init=nnx.initializers.zeros_init())
# Compiles faster on CPU; the tests compare numbers, not speed.
FAST = {"xla_backend_optimization_level": 0}


def is_layer(cls: str) -> bool:
  return cls.endswith("_layer")


def _sizes(cls):
  return NTM_SIZES if cls == "ntm_cell" else {}


def linen_module(cls: str, features: int, **fields) -> nn.Module:
  """The Linen module of ``cls`` (a cell or a layer) with hidden size ``features``."""
  return LINEN[cls](features, **_sizes(cls), **fields)


def nnx_module(cls: str, in_features: int, hidden_features: int, *, rngs: nnx.Rngs,
               zero_init: bool = False, **options) -> nnx.Module:
  """The NNX module of ``cls``; ``zero_init``: zero parameters, for :func:`load_params`."""
  if zero_init:
    options = {**ZERO_INIT, **(dict(initial_state_init=ZERO_INIT["bias_init"])
                               if cls == "ntm_cell" else {}), **options}
  return NNX[cls](in_features, hidden_features, rngs=rngs, **_sizes(cls), **options)


def linen_sequence(cls: str, module: nn.Module, **rnn_fields) -> nn.Module:
  """``(B, T, D) -> outputs``: the layer itself, or the cell under ``noisy_rnn``."""
  return module if is_layer(cls) else noisy_jax.nn.noisy_rnn(module, **rnn_fields)


def linen_variables(cls: str, params) -> dict:
  """The variables of :func:`linen_sequence`'s module (a cell's under ``"cell"``)."""
  return {"params": params if is_layer(cls) else {"cell": params}}


def nnx_sequence(cls: str, module: nnx.Module) -> nnx.Module:
  """``(B, T, D) -> outputs``: the layer itself, or the cell under ``nnx.RNN``."""
  return module if is_layer(cls) else nnx.RNN(module)


def _scan_steps(step, carry, xs, keys):
  """Outputs ``(B, T, F)`` of ``step(carry, x_t, key_t) -> (carry, y_t)`` over time."""
  _, ys = jax.lax.scan(lambda carry, inputs: step(carry, *inputs), carry,
                       (jnp.swapaxes(xs, 0, 1), keys))
  return jnp.swapaxes(ys, 0, 1)


def linen_with_keys(cls: str, module: nn.Module, params, xs, keys, **call):
  """Outputs of the Linen ``module`` on ``xs (B, T, D)``, step ``t`` keyed by ``keys[t]``.

  A layer takes the ``(T,)`` keys as its ``rng=``; a cell is stepped with ``rng=keys[t]``.
  """
  variables = {"params": params}
  if is_layer(cls):
    return module.apply(variables, xs, rng=keys, **call)
  carry = module.initialize_carry(jax.random.key(0), xs[:, 0].shape)
  return _scan_steps(lambda carry, x, key: module.apply(variables, carry, x, rng=key),
                     carry, xs, keys)


def nnx_with_keys(cls: str, module: nnx.Module, xs, keys, **call):
  """As :func:`linen_with_keys` for an NNX module (keys passed as ``rngs=``)."""
  if is_layer(cls):
    return module(xs, rngs=keys, **call)
  carry = module.initialize_carry(xs[:, 0].shape)
  return _scan_steps(lambda carry, x, key: module(carry, x, rngs=key), carry, xs, keys)


def nnx_params(module: nnx.Module) -> dict:
  """The module's ``nnx.Param`` values as a (nested) dict: a Linen module's ``params``."""
  return nnx.to_pure_dict(nnx.state(module, nnx.Param))


def load_params(module: nnx.Module, params) -> nnx.Module:
  """Writes a (nested) dict of parameters, e.g. a Linen module's, into ``module``.

  Entries the module does not declare (the ``p`` of a module without noisy gates)
  are left out.
  """
  state = nnx.state(module, nnx.Param)
  declared = {path for path, _ in nnx.iter_graph(module)}
  params = traverse_util.unflatten_dict({
      path: value for path, value in traverse_util.flatten_dict(params).items()
      if path in declared})
  nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, params))
  nnx.update(module, state)
  return module


@functools.cache
def shapes_of(cls: str, in_features: int, hidden_features: int) -> dict:
  """The (nested) parameter shapes of ``cls``, read off an NNX module (do not mutate)."""
  module = nnx_module(cls, in_features, hidden_features, rngs=nnx.Rngs(0), zero_init=True)
  return jax.tree.map(jnp.shape, nnx_params(module))


def random_params(shapes: Mapping, seed: int = 0, scale: float = 1.5, dtype=jnp.float32):
  """Uniform parameters of the (nested) ``shapes``: ``p*`` in [-1, 1], the rest in ±``scale``.

  Drawn in the order of ``shapes``. A large ``scale`` makes many pre-activations
  saturate, where the noise acts.
  """
  rng = np.random.default_rng(seed)

  def draw(shapes):
    params = {}
    for name, shape in shapes.items():
      if isinstance(shape, Mapping):
        params[name] = draw(shape)
      else:
        bound = 1.0 if name == "p" or name.startswith("p_") else scale
        params[name] = jnp.asarray(rng.uniform(-bound, bound, shape), dtype)
    return params

  return draw(shapes)


def rnn_params(cell: str, in_features: int, hidden_features: int, seed: int = 0,
               scale: float = 1.5) -> dict:
  """Random float32 parameters of a noisy ``"lstm"`` or ``"gru"`` (:func:`random_params`)."""
  return random_params(rnn.weight_shapes(cell, in_features, hidden_features), seed, scale)


def _memoryless_rnn(cell: str, params) -> tuple[dict, tuple[str, ...]]:
  params = {k: jnp.zeros_like(v) for k, v in params.items()}
  hidden = params["recurrent_kernel"].shape[0]
  if cell == "lstm":  # i = 1, f = 0 (plain), o noisy at +3, g = 0.5 (plain)
    blocks, noisy_gates = (10.0, -10.0, 3.0, 0.5), ("output",)
  else:  # r = 0, u = 0 (plain), candidate noisy at +3
    blocks, noisy_gates = (-10.0, -10.0, 3.0), ("candidate",)
  params["bias"] = jnp.repeat(jnp.asarray(blocks, jnp.float32), hidden)
  params["p_gates"] = jnp.ones_like(params["p_gates"])
  params["p_candidate"] = jnp.ones_like(params["p_candidate"])
  return params, noisy_gates


def memoryless(cls_or_kind: str, params) -> tuple[dict, tuple[str, ...]]:
  """Parameters (of the structure of ``params``) and ``noisy_gates`` under which the
  first ``H`` output columns of each step depend on that step's noise only.

  Zero kernels, plain gates pinned to 0 or 1 by saturating biases, and one noisy gate
  held in saturation (LSTM: the output gate, h = 0.5 o; GRU: the candidate, h = n;
  NTM: its LSTM controller's output gate, the controller's output coming first in
  the NTM's). Fresh noise at every step makes every output differ; the same noise
  at every step (or ``deterministic=True``) makes every output equal.
  """
  kind = KIND.get(cls_or_kind, cls_or_kind)
  if kind != "ntm":
    return _memoryless_rnn(kind, params)
  controller, noisy_gates = _memoryless_rnn("lstm", params["controller"])
  return {**params, "controller": controller}, noisy_gates


def inputs(shape, seed: int = 1, scale: float = 1.0) -> jax.Array:
  """Standard-normal float32 inputs drawn by NumPy (``scale`` times)."""
  return jnp.asarray(scale * np.random.default_rng(seed).normal(size=shape), jnp.float32)


def resolved(unit: UnitNoise) -> UnitNoise:
  """``unit`` with the reference code's default ``c`` and ``alpha`` filled in."""
  c, alpha = noisy_jax.activations.reference_defaults(unit.mode, unit.kind)
  return unit._replace(c=c if unit.c is None else unit.c,
                       alpha=alpha if unit.alpha is None else unit.alpha)


def reference_sequence(cell: str, xs, params, draws, sigmoid: UnitNoise, tanh: UnitNoise,
                       noisy_gates=None, carry=None):
  """Float64 loop over time of the noisy ``cell`` (``draws=None``: the expectation).

  ``sigmoid`` and ``tanh`` may leave ``c`` and ``alpha`` to the library's defaults.
  """
  fn = reference_rnn.lstm_sequence if cell == "lstm" else reference_rnn.gru_sequence
  gates = rnn.CELLS[cell].gates if noisy_gates is None else noisy_gates
  return fn(xs, params, draws, resolved(sigmoid), resolved(tanh), gates, carry)


# The plain path of the cells (noisy_gates=(), the smooth kinds): flax's own cells
# under a parameter mapping into the fused layout of noisy_jax.rnn.
PLAIN = {**noisy_jax.nn.PLAIN, "param_dtype": jnp.float64}


def fused_lstm(per_gate):
  """flax's LSTM gates ``{"i", "f", "g", "o"}: (input kernel, recurrent kernel, bias)``
  in the fused layout ``[input, forget, output, candidate]`` (the candidate is flax's g).
  """
  order = ("i", "f", "o", "g")
  hidden = np.shape(per_gate["i"][1])[0]
  return {
      "input_kernel": np.concatenate([per_gate[g][0] for g in order], axis=-1),
      "recurrent_kernel": np.concatenate([per_gate[g][1] for g in order], axis=-1),
      "bias": np.concatenate([per_gate[g][2] for g in order]),
      # p is unused on the plain path; nonzero, so that a quiet gate using it shows.
      "p_gates": np.full(3 * hidden, 2.0), "p_candidate": np.full(hidden, 2.0),
      "p_cell": np.full(hidden, 2.0),
  }


def fused_gru(per_gate, recurrent_bias):
  """flax's GRU gates ``{"r", "z", "n"}: (input kernel, recurrent kernel, input bias)``
  in the fused layout ``[reset, update, candidate]`` (update is flax's z), with the
  candidate's recurrent bias (flax's b_hn) inside the reset product.
  """
  order = ("r", "z", "n")
  hidden = np.shape(recurrent_bias)[0]
  return {
      "input_kernel": np.concatenate([per_gate[g][0] for g in order], axis=-1),
      "recurrent_kernel": np.concatenate([per_gate[g][1] for g in order], axis=-1),
      "bias": np.concatenate([per_gate[g][2] for g in order]),
      "recurrent_bias": np.asarray(recurrent_bias),
      "p_gates": np.full(2 * hidden, 2.0), "p_candidate": np.full(hidden, 2.0),
  }


def problem_for_flax(cell: str, batch: int, steps: int, in_features: int, hidden: int,
                     seed: int = 30):
  """Float64 inputs ``(B, T, D)`` and a nonzero initial carry (call under enable_x64)."""
  rng = np.random.default_rng(seed)
  xs = jnp.asarray(1.5 * rng.normal(size=(batch, steps, in_features)))
  h0 = jnp.asarray(rng.uniform(-1.0, 1.0, (batch, hidden)))
  return xs, ((2.0 * h0, h0) if cell == "lstm" else h0)
