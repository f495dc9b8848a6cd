"""Flax Linen modules: noisy recurrent cells and fast whole-sequence layers."""

from noisy_jax._src.linen_recurrent import NoisyGRU as NoisyGRU
from noisy_jax._src.linen_recurrent import NoisyGRUCell as NoisyGRUCell
from noisy_jax._src.linen_recurrent import NoisyLSTM as NoisyLSTM
from noisy_jax._src.linen_recurrent import NoisyLSTMCell as NoisyLSTMCell
from noisy_jax._src.linen_recurrent import RNN_SPLIT_RNGS as RNN_SPLIT_RNGS
from noisy_jax._src.linen_recurrent import noisy_rnn as noisy_rnn
from noisy_jax._src.ntm import NTMCell as NTMCell

__all__ = (
    "NoisyGRU",
    "NoisyGRUCell",
    "NoisyLSTM",
    "NoisyLSTMCell",
    "NTMCell",
    "RNN_SPLIT_RNGS",
    "noisy_rnn",
)
