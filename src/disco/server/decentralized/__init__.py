"""Decentralized learning: peer membership and signal relaying (never sees weights)."""
