"""Noisy LSTM and GRU maths (Gulcehre et al., 2016): pure steps and whole sequences.

For users who write their own modules; :mod:`noisy_jax.nn` and :mod:`noisy_jax.nnx`
wrap the same functions.
"""

from noisy_jax._src.activations import UnitNoise as UnitNoise
from noisy_jax._src.rnn import CELLS as CELLS
from noisy_jax._src.rnn import GRU_GATES as GRU_GATES
from noisy_jax._src.rnn import LSTM_GATES as LSTM_GATES
from noisy_jax._src.rnn import CellSpec as CellSpec
from noisy_jax._src.rnn import GRUWeights as GRUWeights
from noisy_jax._src.rnn import LSTMWeights as LSTMWeights
from noisy_jax._src.rnn import UnitGroups as UnitGroups
from noisy_jax._src.rnn import activate as activate
from noisy_jax._src.rnn import gru_sequence as gru_sequence
from noisy_jax._src.rnn import group_statistics as group_statistics
from noisy_jax._src.rnn import gru_step as gru_step
from noisy_jax._src.rnn import input_projection as input_projection
from noisy_jax._src.rnn import lstm_sequence as lstm_sequence
from noisy_jax._src.rnn import lstm_step as lstm_step
from noisy_jax._src.rnn import sequence as sequence
from noisy_jax._src.rnn import step as step
from noisy_jax._src.rnn import units as units
from noisy_jax._src.rnn import weight_shapes as weight_shapes

__all__ = (
    "CELLS",
    "CellSpec",
    "GRUWeights",
    "GRU_GATES",
    "LSTMWeights",
    "LSTM_GATES",
    "UnitGroups",
    "UnitNoise",
    "activate",
    "group_statistics",
    "gru_sequence",
    "gru_step",
    "input_projection",
    "lstm_sequence",
    "lstm_step",
    "sequence",
    "step",
    "units",
    "weight_shapes",
)
