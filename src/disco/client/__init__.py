"""The Python DISCO client (`pip install .[client]`): trains with PyTorch against a DISCO server.

Nothing here is imported by the server: torch stays out of the server's dependencies.

The names below are imported on first use (PEP 562): `import disco.client.remote` or
`disco.client.options` (what `disco tasks` and argument checks need) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from disco.lazy import lazy_attributes

if TYPE_CHECKING:
    from disco.client.api import Client
    from disco.client.data import DataError, Dataset
    from disco.client.options import DecentralizedOptions, OptionsError, TrainOptions
    from disco.client.session import History, RoundRecord

_WHERE = {
    "Client": "disco.client.api",
    "DataError": "disco.client.data",
    "Dataset": "disco.client.data",
    "DecentralizedOptions": "disco.client.options",
    "OptionsError": "disco.client.options",
    "TrainOptions": "disco.client.options",
    "History": "disco.client.session",
    "RoundRecord": "disco.client.session",
}

__all__ = [
    "Client",
    "DataError",
    "Dataset",
    "DecentralizedOptions",
    "History",
    "OptionsError",
    "RoundRecord",
    "TrainOptions",
]


__getattr__ = lazy_attributes(__name__, _WHERE)
