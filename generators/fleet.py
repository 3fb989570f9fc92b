"""A fleet of servers with stable identities and behaviour, drawn from a seed.

Identities come from Faker (seeded); behaviour from a profile per server type plus
per-server traits (a load bias and an incident proneness), so that the gold tables tell
servers apart: a busy, incident-prone database server scores visibly worse than an idle
file server.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from faker import Faker


@dataclass(frozen=True)
class Region:
    name: str
    utc_offset_hours: float  # drives the daily cycle: busiest mid-afternoon local time
    latitude: float
    longitude: float


REGIONS = (
    Region("us-east", -5, 38.9, -77.4),
    Region("us-west", -8, 45.6, -121.2),
    Region("europe", 1, 50.1, 8.7),
    Region("asia", 8, 1.35, 103.8),
    Region("australia", 10, -33.9, 151.2),
)


@dataclass(frozen=True)
class TypeProfile:
    """Baselines of a server role: mean levels and the swing of the daily cycle."""

    weight: float
    cpu: float
    cpu_swing: float
    memory: float
    memory_swing: float
    disk_io: float
    network_in: float
    network_out: float
    idle_watts: float
    peak_watts: float


PROFILES = {
    "web": TypeProfile(0.30, 35, 18, 45, 6, 300, 4200, 6500, 140, 320),
    "database": TypeProfile(0.20, 48, 15, 72, 4, 2600, 1800, 2400, 220, 520),
    "application": TypeProfile(0.25, 42, 16, 58, 6, 700, 2500, 2600, 180, 420),
    "cache": TypeProfile(0.15, 22, 10, 80, 3, 150, 5200, 5600, 120, 260),
    "file": TypeProfile(0.10, 14, 6, 35, 4, 3300, 2800, 3800, 150, 300),
}


@dataclass(frozen=True)
class Server:
    index: int
    server_id: str
    server_name: str
    server_type: str
    region: Region
    load_bias: float  # added to CPU and memory: some machines simply run hotter
    incident_proneness: float  # multiplies the fleet's incident rate

    @property
    def profile(self) -> TypeProfile:
        return PROFILES[self.server_type]


def build_fleet(servers: int, seed: int) -> tuple[Server, ...]:
    fake = Faker()
    fake.seed_instance(seed)
    rng = random.Random(seed)
    types = list(PROFILES)
    weights = [PROFILES[t].weight for t in types]
    fleet = []
    for i in range(servers):
        server_type = rng.choices(types, weights)[0]
        fleet.append(Server(
            index=i,
            server_id=fake.uuid4(),
            server_name=f"{server_type}-server-{i + 1:03d}",
            server_type=server_type,
            region=REGIONS[rng.randrange(len(REGIONS))],
            load_bias=rng.gauss(0, 7),
            incident_proneness=rng.lognormvariate(0, 1.0),
        ))
    return tuple(fleet)
