"""Federated learning: the per-task round engine and its WebSocket handler."""
