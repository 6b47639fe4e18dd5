"""disco: a Python implementation of the DISCO collaborative-learning platform.

The server publishes tasks and their models, aggregates federated updates and
introduces peers for decentralized training; no training data ever reaches it.
"""

__version__ = "0.1.0"
