"""Flax NNX modules: noisy recurrent cells and fast whole-sequence layers."""

from noisy_jax._src.nnx import NoiseScale as NoiseScale
from noisy_jax._src.nnx import NoisyGRU as NoisyGRU
from noisy_jax._src.nnx import NoisyGRUCell as NoisyGRUCell
from noisy_jax._src.nnx import NoisyLSTM as NoisyLSTM
from noisy_jax._src.nnx import NoisyLSTMCell as NoisyLSTMCell
from noisy_jax._src.nnx import NTMCell as NTMCell
from noisy_jax._src.nnx import PLAIN as PLAIN
from noisy_jax._src.nnx import copy_params as copy_params
from noisy_jax._src.nnx import set_noise_scale as set_noise_scale

__all__ = (
    "NoiseScale",
    "NoisyGRU",
    "NoisyGRUCell",
    "NoisyLSTM",
    "NoisyLSTMCell",
    "NTMCell",
    "PLAIN",
    "copy_params",
    "set_noise_scale",
)
