"""TF.js layers models rebuilt as `torch.nn.Module`, and PyTorch modules exported as TF.js.

Weights are exchanged in the TF.js layout either way.
"""

from disco.client.model.convert import TfjsModel, build_model
from disco.client.model.errors import ModelError, UnsupportedLayerError
from disco.client.model.export import ExportError, TfjsExport, export_tfjs

__all__ = [
    "ExportError",
    "ModelError",
    "TfjsExport",
    "TfjsModel",
    "UnsupportedLayerError",
    "build_model",
    "export_tfjs",
]
