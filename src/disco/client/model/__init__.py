"""TF.js layers models rebuilt as `torch.nn.Module`, with weights exchanged in the TF.js layout."""

from disco.client.model.convert import TfjsModel, build_model
from disco.client.model.errors import ModelError, UnsupportedLayerError

__all__ = ["ModelError", "TfjsModel", "UnsupportedLayerError", "build_model"]
