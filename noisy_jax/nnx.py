"""Flax NNX modules: noisy recurrent cells and fast whole-sequence layers."""

from noisy_jax._src.nnx_recurrent import NoiseScale as NoiseScale
from noisy_jax._src.nnx_recurrent import NoisyGRU as NoisyGRU
from noisy_jax._src.nnx_recurrent import NoisyGRUCell as NoisyGRUCell
from noisy_jax._src.nnx_recurrent import NoisyLSTM as NoisyLSTM
from noisy_jax._src.nnx_recurrent import NoisyLSTMCell as NoisyLSTMCell
from noisy_jax._src.nnx_recurrent import set_noise_scale as set_noise_scale
from noisy_jax._src.ntm_nnx import NTMCell as NTMCell

__all__ = (
    "NoiseScale",
    "NoisyGRU",
    "NoisyGRUCell",
    "NoisyLSTM",
    "NoisyLSTMCell",
    "NTMCell",
    "set_noise_scale",
)
