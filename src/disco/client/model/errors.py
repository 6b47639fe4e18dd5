"""Why the Python client cannot build, load or train a task's model."""

from disco.errors import DiscoError


class ModelError(DiscoError, ValueError):
    """A task's model (topology, weights, loss or optimizer) the client cannot use as given."""


class UnsupportedLayerError(ModelError):
    """A TF.js layer (or layer option) this converter does not implement; the message names it."""
