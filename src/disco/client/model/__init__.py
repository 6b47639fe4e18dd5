"""TF.js layers models rebuilt as `torch.nn.Module`, with weights exchanged in the TF.js layout."""

from disco.client.model.convert import TfjsModel, build_model
from disco.client.model.layers import UnsupportedLayerError

__all__ = ["TfjsModel", "UnsupportedLayerError", "build_model"]
