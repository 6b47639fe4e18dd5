"""Simulate N participants of one task on one machine (or a Ray cluster).

Each simulated participant is an ordinary `disco.client` participant training against a server:
a remote one, or an in-process one (`simulation_server`). That is why this package sits above
both `client` and `server`, which never import each other.

    from disco.simulation import SimulationOptions, simulate_async, simulation_server
    with simulation_server("titanic", participants=4) as url:
        result = asyncio.run(simulate_async(url, "titanic", 4, SimulationOptions(rounds=10)))

The names below are imported on first use (PEP 562): the in-process server (FastAPI) and the
trainer (torch) load only when a simulation needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from disco.lazy import lazy_attributes

if TYPE_CHECKING:
    from disco.simulation.local_server import simulation_server
    from disco.simulation.options import Engine, ParticipantListener, SimulationOptions
    from disco.simulation.results import SimulationResult, SimulationRound
    from disco.simulation.run import simulate_async

_WHERE = {
    "Engine": "disco.simulation.options",
    "ParticipantListener": "disco.simulation.options",
    "SimulationOptions": "disco.simulation.options",
    "SimulationResult": "disco.simulation.results",
    "SimulationRound": "disco.simulation.results",
    "simulate_async": "disco.simulation.run",
    "simulation_server": "disco.simulation.local_server",
}

__all__ = [
    "Engine",
    "ParticipantListener",
    "SimulationOptions",
    "SimulationResult",
    "SimulationRound",
    "simulate_async",
    "simulation_server",
]


__getattr__ = lazy_attributes(__name__, _WHERE)
