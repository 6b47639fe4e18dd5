"""HTTP routes: the tasks API and model files (placeholder until it lands)."""

from fastapi import APIRouter

router = APIRouter()
