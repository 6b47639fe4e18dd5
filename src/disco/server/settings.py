"""Server configuration: one typed object, built from CLI flags, environment or tests."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

MiB = 1024 * 1024


class Settings(BaseModel):
    """Every tunable of the server, with the embedded defaults `disco-server` starts with."""

    model_config = ConfigDict(frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    data_dir: Path = Path("disco-data")
    tasks_dir: Path | None = None
    log_level: str = "info"
    load_default_tasks: bool = True

    # Input limits
    max_body_bytes: int = Field(default=256 * MiB, gt=0, description="largest HTTP request body")
    max_frame_bytes: int = Field(default=256 * MiB, gt=0, description="largest WebSocket frame")

    # Access control: when set, POST /tasks and admin routes need `Authorization: Bearer <token>`.
    admin_token: str | None = None

    # Federated round engine
    round_deadline_s: float = Field(
        default=5.0, gt=0, description="seconds after the quorum before a round aggregates anyway"
    )
    max_staleness: int = Field(
        default=1, ge=0, description="rounds an update may lag behind and still be accepted"
    )
    default_min_participants: int = Field(default=2, ge=1)
    aggregation_thread_threshold: int = Field(
        default=100_000, ge=0, description="parameters×clients above which aggregation leaves the loop"
    )

    # Decentralized signaling
    readiness_deadline_s: float = Field(
        default=10.0, gt=0, description="seconds after the minimum is ready before a round starts"
    )
    default_minimum_ready_peers: int = Field(default=3, ge=1)
