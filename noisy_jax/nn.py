"""Flax Linen modules: noisy recurrent cells and fast whole-sequence layers."""

from noisy_jax._src.linen import NoisyGRU as NoisyGRU
from noisy_jax._src.linen import NoisyGRUCell as NoisyGRUCell
from noisy_jax._src.linen import NoisyLSTM as NoisyLSTM
from noisy_jax._src.linen import NoisyLSTMCell as NoisyLSTMCell
from noisy_jax._src.linen import RNN_SPLIT_RNGS as RNN_SPLIT_RNGS
from noisy_jax._src.linen import noisy_rnn as noisy_rnn
from noisy_jax._src.linen import NTMCell as NTMCell

__all__ = (
    "NoisyGRU",
    "NoisyGRUCell",
    "NoisyLSTM",
    "NoisyLSTMCell",
    "NTMCell",
    "RNN_SPLIT_RNGS",
    "noisy_rnn",
)
