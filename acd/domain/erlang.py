"""Erlang C: probability of waiting, ASA and service level for N agents, an arrival rate, an AHT.

Theory of operation
-------------------

The M/M/N queue (Poisson arrivals at rate ``lambda``, exponential handle times of mean ``AHT``,
``N`` agents, nobody abandons), as in callcenter-anchors.md section c::

    A       = lambda * AHT                             offered load in erlangs
    C(N, A) = [A^N/N! * N/(N-A)] / [sum_{k<N} A^k/k! + A^N/N! * N/(N-A)]
    ASA     = C * AHT / (N - A)
    SL(T)   = 1 - C * exp(-(N - A) * T / AHT)

C is computed through the Erlang B recursion ``B(0) = 1, B(k) = A*B(k-1) / (k + A*B(k-1))`` and
``C = N*B / (N - A*(1 - B))``, which stays exact for thousands of agents where the factorials
overflow. With ``A >= N`` the queue grows without bound: P(wait) = 1, ASA = infinity, SL = 0.

Erlang C over-staffs when callers abandon and has no closed form for skills-based routing; the
simulator (``acd.simulate``) covers those cases and prints this prediction only where it holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "ErlangCPrediction",
    "agents_needed",
    "erlang_b",
    "erlang_c",
    "predict",
]


def erlang_b(agents: int, load: float) -> float:
    """Blocking probability of an M/M/N/N system (Erlang B)."""
    if agents < 0 or load < 0:
        raise ValueError("agents and load must be >= 0")
    blocking = 1.0
    for k in range(1, agents + 1):
        blocking = load * blocking / (k + load * blocking)
    return blocking


def erlang_c(agents: int, load: float) -> float:
    """Probability that an arriving item waits (Erlang C); 1.0 when ``load >= agents``."""
    if agents <= 0 or load >= agents:
        return 1.0
    if load <= 0:
        return 0.0
    blocking = erlang_b(agents, load)
    return agents * blocking / (agents - load * (1.0 - blocking))


@dataclass(frozen=True, slots=True)
class ErlangCPrediction:
    """The Erlang C figures for one staffing level."""

    agents: int
    load: float
    occupancy: float
    p_wait: float
    asa: float
    service_level: float
    threshold: float


def predict(
    agents: int, arrival_rate: float, aht: float, threshold: float = 20.0
) -> ErlangCPrediction:
    """The Erlang C prediction for ``agents``, ``arrival_rate`` (per s), ``aht`` (s), T (s)."""
    if arrival_rate < 0 or aht <= 0 or threshold < 0:
        raise ValueError("arrival_rate >= 0, aht > 0 and threshold >= 0 are required")
    load = arrival_rate * aht
    if agents <= 0 or load >= agents:
        return ErlangCPrediction(
            agents, load, 1.0 if agents > 0 else math.inf, 1.0, math.inf, 0.0, threshold
        )
    p_wait = erlang_c(agents, load)
    asa = p_wait * aht / (agents - load)
    service_level = 1.0 - p_wait * math.exp(-(agents - load) * threshold / aht)
    return ErlangCPrediction(agents, load, load / agents, p_wait, asa, service_level, threshold)


def agents_needed(
    arrival_rate: float, aht: float, *, target: float, threshold: float, limit: int = 100_000
) -> int:
    """The fewest agents whose Erlang C service level within ``threshold`` reaches ``target``."""
    if not 0 < target < 1:
        raise ValueError("target must be between 0 and 1")
    agents = max(1, math.floor(arrival_rate * aht) + 1)
    while agents <= limit:
        if predict(agents, arrival_rate, aht, threshold).service_level >= target:
            return agents
        agents += 1
    raise ValueError(f"no staffing up to {limit} agents reaches the target")
