"""Array types shared by the aggregation functions.

`Weights` is the wire module's alias (one float32 array per model tensor, in the model's weight
order), re-exported so the whole project spells the type once.
"""

from typing import TypeAlias

from disco.protocol.weights import Weights

Shape: TypeAlias = tuple[int, ...]

__all__ = ["Shape", "Weights"]
