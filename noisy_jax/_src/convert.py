"""Parameters of flax's own recurrent cells in the fused layout of :mod:`noisy_jax._src.rnn`.

A flax cell keeps one ``Dense``/``Linear`` per gate and side (``LSTMCell``, Linen's
``OptimizedLSTMCell``, Linen's ``GRUCell``) or one fused pair (NNX's
``OptimizedLSTMCell`` and ``GRUCell``); the noisy cells keep one fused input kernel,
one fused recurrent kernel and one bias. Each flax layout is a row of
:data:`LAYOUTS`; two functions read the table, one per direction. No flax import:
the adapters map flax's classes to these rows.

Block orders: flax's LSTM computes its gates as ``i, f, g, o``, the noisy LSTM's
blocks are ``[input, forget, output, candidate]`` (flax's ``g`` is the candidate);
both GRUs use ``r, z, n`` = ``[reset, update, candidate]``. An LSTM's biases sit on
flax's recurrent side (its input side has none) and sum into the one ``bias``; a
GRU's sit on the input side, plus the candidate's recurrent bias ``b_hn`` (flax's
``hn``), the noisy GRU's ``recurrent_bias``. NNX's ``GRUCell`` has no ``b_hn``.
"""

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from noisy_jax._src import checks
from noisy_jax._src import rnn


class Layout(NamedTuple):
  """Where one flax cell keeps its parameters.

  Attributes:
    cell: the noisy kind, ``"lstm"`` or ``"gru"``.
    order: flax's block of each noisy block, e.g. ``(0, 1, 3, 2)``: the noisy
      LSTM's block 2 (output) is flax's block 3 (``o``).
    input_names: per-gate input ``Dense`` names in flax's order, or a 1-tuple
      naming the fused input ``Linear``.
    recurrent_names: the same for the recurrent side.
    bias_side: ``"input"`` or ``"recurrent"``: the side whose denses carry the
      (summed) biases.
    candidate_bias: the recurrent dense holding the GRU's ``b_hn``; ``None`` where
      flax has none (NNX's ``GRUCell``, and every LSTM).
  """

  cell: str
  order: tuple[int, ...]
  input_names: tuple[str, ...]
  recurrent_names: tuple[str, ...]
  bias_side: str
  candidate_bias: str | None = None


_LSTM_ORDER = (0, 1, 3, 2)  # flax i, f, g, o -> noisy [input, forget, output, candidate]
_LINEN_LSTM = Layout("lstm", _LSTM_ORDER, ("ii", "if", "ig", "io"), ("hi", "hf", "hg", "ho"),
                     "recurrent")

LAYOUTS: dict[str, Layout] = {
    "linen.LSTMCell": _LINEN_LSTM,
    "linen.OptimizedLSTMCell": _LINEN_LSTM,  # same names as LSTMCell, by design
    "linen.GRUCell": Layout("gru", (0, 1, 2), ("ir", "iz", "in"), ("hr", "hz", "hn"),
                            "input", candidate_bias="hn"),
    "nnx.LSTMCell": _LINEN_LSTM._replace(input_names=("ii", "if_", "ig", "io")),
    "nnx.OptimizedLSTMCell": Layout("lstm", _LSTM_ORDER, ("dense_i",), ("dense_h",),
                                    "recurrent"),
    "nnx.GRUCell": Layout("gru", (0, 1, 2), ("dense_i",), ("dense_h",), "input"),
}


def _blocks(denses: Mapping[str, Any], names: tuple[str, ...], field: str,
            num_blocks: int) -> list[np.ndarray]:
  """The ``num_blocks`` column blocks of ``field`` (kernel or bias), in flax's order."""
  if len(names) == 1:
    return np.split(np.asarray(denses[names[0]][field]), num_blocks, axis=-1)
  return [np.asarray(denses[name][field]) for name in names]


def _noisy_order(blocks: list[np.ndarray], layout: Layout) -> np.ndarray:
  return np.concatenate([blocks[j] for j in layout.order], axis=-1)


def from_flax(layout_name: str, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The weights of a noisy cell from a flax cell's parameters (no ``p``).

  Args:
    layout_name: a key of :data:`LAYOUTS`.
    params: the flax cell's parameters, e.g. ``variables["params"]["cell"]``
      (nested dicts of arrays).

  Returns:
    ``{"input_kernel", "recurrent_kernel", "bias"}`` (and the GRU's
    ``"recurrent_bias"``, zeros for NNX's ``GRUCell``) as NumPy arrays.
  """
  layout = LAYOUTS[checks.choice(layout_name, "flax cell", tuple(LAYOUTS))]
  num_blocks = rnn.cell_spec(layout.cell).num_blocks
  side_names = {"input": layout.input_names, "recurrent": layout.recurrent_names}
  weights = {
      f"{prefix}kernel": _noisy_order(_blocks(params, side_names[side], "kernel",
                                              num_blocks), layout)
      for prefix, side in (("input_", "input"), ("recurrent_", "recurrent"))}
  weights["bias"] = _noisy_order(
      _blocks(params, side_names[layout.bias_side], "bias", num_blocks), layout)
  if layout.cell == "gru":
    hidden = weights["recurrent_kernel"].shape[0]
    weights["recurrent_bias"] = (
        np.asarray(params[layout.candidate_bias]["bias"]) if layout.candidate_bias
        else np.zeros(hidden, weights["bias"].dtype))
  return weights


def to_flax(layout_name: str, params: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
  """A flax cell's parameters from a noisy cell's (its ``p``, if any, is dropped).

  Args:
    layout_name: a key of :data:`LAYOUTS`.
    params: the noisy cell's parameters (``input_kernel``, ``recurrent_kernel``,
      ``bias``; the GRU's ``recurrent_bias``).

  Returns:
    The flax cell's parameters, nested dicts of NumPy arrays.

  Raises:
    ValueError: a GRU with a nonzero ``recurrent_bias`` into NNX's ``GRUCell``,
      which has no such bias.
  """
  layout = LAYOUTS[checks.choice(layout_name, "flax cell", tuple(LAYOUTS))]
  num_blocks = rnn.cell_spec(layout.cell).num_blocks
  inverse = np.argsort(layout.order)  # flax block j = noisy block inverse[j]

  def flax_blocks(value):
    blocks = np.split(np.asarray(value), num_blocks, axis=-1)
    return [blocks[k] for k in inverse]

  out: dict[str, dict[str, np.ndarray]] = {}
  for side, names in (("input", layout.input_names), ("recurrent", layout.recurrent_names)):
    fields = {"kernel": flax_blocks(params[f"{side}_kernel"])}
    if side == layout.bias_side:
      fields["bias"] = flax_blocks(params["bias"])
    if len(names) == 1:
      out[names[0]] = {field: np.concatenate(blocks, axis=-1)
                       for field, blocks in fields.items()}
    else:
      for j, name in enumerate(names):
        out[name] = {field: blocks[j] for field, blocks in fields.items()}
  if layout.cell == "gru":
    recurrent_bias = np.asarray(params["recurrent_bias"])
    if layout.candidate_bias:
      out[layout.candidate_bias]["bias"] = recurrent_bias
    elif np.any(recurrent_bias != 0):
      raise ValueError(
          f"{layout_name} has no recurrent bias of the candidate (flax's b_hn), but this "
          "GRU's recurrent_bias is nonzero, so no flax parameters give its outputs. Fix: "
          "convert to linen.GRUCell, or train the noisy GRU with recurrent_bias frozen at 0."
      )
  return out
