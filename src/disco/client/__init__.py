"""The Python DISCO client (`pip install .[client]`): trains with PyTorch against a DISCO server.

Nothing here is imported by the server: torch stays out of the server's dependencies.
"""

from disco.client.api import Client
from disco.client.data import DataError, Dataset
from disco.client.options import DecentralizedOptions, OptionsError, TrainOptions
from disco.client.session import History, RoundRecord

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
