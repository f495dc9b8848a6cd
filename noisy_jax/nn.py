"""Flax Linen modules: noisy recurrent cells and fast whole-sequence layers."""

from noisy_jax._src.linen import NoisyGRU as NoisyGRU
from noisy_jax._src.linen import NoisyGRUCell as NoisyGRUCell
from noisy_jax._src.linen import NoisyLSTM as NoisyLSTM
from noisy_jax._src.linen import NoisyLSTMCell as NoisyLSTMCell
from noisy_jax._src.linen import NTMCell as NTMCell
from noisy_jax._src.linen import PLAIN as PLAIN
from noisy_jax._src.linen import RNN_SPLIT_RNGS as RNN_SPLIT_RNGS
from noisy_jax._src.linen import noise_settings as noise_settings
from noisy_jax._src.linen import noisy_rnn as noisy_rnn
from noisy_jax._src.linen import params_from_flax as params_from_flax
from noisy_jax._src.linen import params_to_flax as params_to_flax

__all__ = (
    "NoisyGRU",
    "NoisyGRUCell",
    "NoisyLSTM",
    "NoisyLSTMCell",
    "NTMCell",
    "PLAIN",
    "RNN_SPLIT_RNGS",
    "noise_settings",
    "noisy_rnn",
    "params_from_flax",
    "params_to_flax",
)
