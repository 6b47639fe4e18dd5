"""Simulate N participants of one task on one machine (or a Ray cluster).

Each simulated participant is an ordinary `disco.client` participant training against a server:
a remote one, or an in-process one (`simulation_server`). That is why this package sits above
both `client` and `server`, which never import each other.

    from disco.simulation import SimulationOptions, simulate_async, simulation_server
    with simulation_server("titanic", participants=4) as url:
        result = asyncio.run(simulate_async(url, "titanic", 4, SimulationOptions(rounds=10)))
"""

from disco.simulation.local_server import simulation_server
from disco.simulation.options import Engine, ParticipantListener, SimulationOptions
from disco.simulation.results import SimulationResult, SimulationRound
from disco.simulation.run import simulate_async

__all__ = [
    "Engine",
    "ParticipantListener",
    "SimulationOptions",
    "SimulationResult",
    "SimulationRound",
    "simulate_async",
    "simulation_server",
]
