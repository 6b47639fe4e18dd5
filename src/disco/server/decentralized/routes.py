"""WebSocket routes of decentralized signaling (placeholder until the handler lands)."""

from fastapi import APIRouter

router = APIRouter()
