"""WebSocket routes of federated learning (placeholder until the handler lands)."""

from fastapi import APIRouter

router = APIRouter()
