"""Neural Turing Machine (Graves et al., 2014): addressing functions and cells."""

from noisy_jax._src.addressing import address as address
from noisy_jax._src.addressing import content_weighting as content_weighting
from noisy_jax._src.addressing import cosine_similarity as cosine_similarity
from noisy_jax._src.addressing import interpolate as interpolate
from noisy_jax._src.addressing import read as read
from noisy_jax._src.addressing import sharpen as sharpen
from noisy_jax._src.addressing import shift as shift
from noisy_jax._src.addressing import write as write

__all__ = (
    "address",
    "content_weighting",
    "cosine_similarity",
    "interpolate",
    "read",
    "sharpen",
    "shift",
    "write",
)
