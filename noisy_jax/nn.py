"""Flax Linen modules: noisy recurrent cells and fast whole-sequence layers."""

from noisy_jax._src.linen_recurrent import NoisyGRU as NoisyGRU
from noisy_jax._src.linen_recurrent import NoisyGRUCell as NoisyGRUCell
from noisy_jax._src.linen_recurrent import NoisyLSTM as NoisyLSTM
from noisy_jax._src.linen_recurrent import NoisyLSTMCell as NoisyLSTMCell
from noisy_jax._src.linen_recurrent import RNN_SPLIT_RNGS as RNN_SPLIT_RNGS
from noisy_jax._src.linen_recurrent import noisy_rnn as noisy_rnn

__all__ = (
    "NoisyGRU",
    "NoisyGRUCell",
    "NoisyLSTM",
    "NoisyLSTMCell",
    "RNN_SPLIT_RNGS",
    "noisy_rnn",
)
