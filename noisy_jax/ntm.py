"""Neural Turing Machine (Graves et al., 2014) with noisy controller gates (Gulcehre et al., 2016).

Addressing functions (one per equation), the pure step and the cells. The cells
are also ``noisy_jax.nn.NTMCell`` (Linen) and ``noisy_jax.nnx.NTMCell`` (NNX).
"""

from noisy_jax._src.addressing import address as address
from noisy_jax._src.addressing import content_weighting as content_weighting
from noisy_jax._src.addressing import cosine_similarity as cosine_similarity
from noisy_jax._src.addressing import interpolate as interpolate
from noisy_jax._src.addressing import read as read
from noisy_jax._src.addressing import sharpen as sharpen
from noisy_jax._src.addressing import shift as shift
from noisy_jax._src.addressing import write as write
from noisy_jax._src.ntm import FeedForwardWeights as FeedForwardWeights
from noisy_jax._src.ntm import NTMCell as NTMCell
from noisy_jax._src.ntm import NTMState as NTMState
from noisy_jax._src.ntm import NTMWeights as NTMWeights
from noisy_jax._src.ntm import gate_names as gate_names
from noisy_jax._src.ntm import initial_state as initial_state
from noisy_jax._src.ntm import ntm_step as ntm_step
from noisy_jax._src.ntm import weight_shapes as weight_shapes
from noisy_jax._src.ntm_nnx import NTMCell as NNXNTMCell
from noisy_jax._src.recurrent import GateNoise as GateNoise

__all__ = (
    "FeedForwardWeights",
    "GateNoise",
    "NNXNTMCell",
    "NTMCell",
    "NTMState",
    "NTMWeights",
    "address",
    "content_weighting",
    "cosine_similarity",
    "gate_names",
    "initial_state",
    "interpolate",
    "ntm_step",
    "read",
    "sharpen",
    "shift",
    "weight_shapes",
    "write",
)
