"""The availability index: free agents per (channel, skill, level), kept in each strategy's order.

Theory of operation
-------------------

The engine needs, for one waiting item, the agent its queue's strategy prefers among the free
agents that match the item's requirement, plus a bounded account of why. Scanning every free
agent that has the item's rarest skill (about 700 in a 10,000-agent, 50-skill center) costs
milliseconds; this index answers in a few dozen steps instead.

Every agent that can take a channel now is entered, for that channel, in one *bucket* per skill
it has, the bucket of its level in that skill: ``(channel, skill, level)``; and in the channel's
*any* bucket (for ``*`` requirements; built on the first such requirement, then kept). Each
bucket keeps three sorted lists, maintained incrementally by :meth:`AgentIndex.update` whenever
the agent's availability, idle order or busy time changes (a binary search and a list
insertion or deletion per bucket and list):

* ``by_idle``: ``(idle_key, ordinal)``, the longest-idle order of
  :attr:`~acd.domain.agents.AgentStatus.idle_key` (free agents first by ``idle_since``, then
  agents holding other work by ``last_assigned_at``), ties on registration order;
* ``by_busy``: ``(busy_seconds, idle time, ordinal)``, for least occupied;
* ``by_ordinal``: registration ordinals, for round robin.

:meth:`AgentIndex.select` reads the requirement term by term. For each term it takes the
*primary* condition ``skill >= level``, the one with the fewest agents at or above its level,
and the buckets of that skill from level 5 down to the minimum: agents below the minimum are
never visited. It then merges those buckets lazily (:func:`_merged`: sorted chunks that double)
in the strategy's order and stops at the first ``limit`` agents that match the whole
requirement (other conditions of the term, other terms, language); agents seen twice (in two
terms) are taken once:

* ``longest_idle``: the merge of the ``by_idle`` lists;
* ``round_robin``: the ``by_ordinal`` lists from just after the queue's cursor, then wrapped;
* ``best_skill`` when every term has at most one condition: the buckets by level, highest
  first, each in idle order - the level *is* the term's level sum, and an agent's first
  appearance carries its best term;
* ``least_occupied``: occupancy since login changes with time, so no static order gives it;
  instead the ``by_busy`` lists are walked fewest busy seconds first with an exact bound (see
  :meth:`AgentIndex._least_occupied`), which stops after a few agents when logins are close;
* ``best_skill`` with a multi-skill term (the sum of several levels) falls back to
  :func:`~acd.domain.routing.select`, the brute-force reference, over the agents of those
  buckets (still never below the primary minimum).

The decision is the one :func:`~acd.domain.routing.select` makes over all free agents; the
property tests compare the two (index against brute force, and a whole engine against one with
``EnginePolicy(brute_force=True)``). The explanation's counts are *lazy*: the eligible count and
the rejected ones are exact (from bucket sizes) for a one-term, one-condition requirement
without a language, and exact whenever the walk or the fallback saw every candidate; otherwise
the walk stopped after ``limit`` eligible agents and ``eligible_count`` is a lower bound
(``counts_exact`` is then False and the rendering says "at least"). Rejections are agents the
selection looked at and turned down: the primary skill below the minimum (one-term
requirements) or another condition failing.

Assumption (true of every status :func:`~acd.domain.agents.transition` makes on the engine's
clock, which never goes back): an agent with busy seconds logged in before now.

Pure: no I/O; the records are the engine's own agent records (profile, status, ordinal).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator, Mapping
from typing import Protocol, TypeVar

from acd.domain.agents import AgentProfile, AgentStatus
from acd.domain.queues import Requirement, Strategy
from acd.domain.routing import (
    Rejection,
    Selection,
    SelectionRequest,
    chosen,
    rank_key,
    select,
)
from acd.domain.work import MAX_SKILL_LEVEL, MIN_SKILL_LEVEL, Channel

__all__ = ["AgentIndex", "IndexedAgent"]

_Entry3 = TypeVar("_Entry3", bound=tuple[float, ...])
_IdleEntry = tuple[float, float, int]
#: (busy seconds, idle order's time, ordinal): least-occupied candidates, fewest busy seconds first.
_BusyEntry = tuple[float, float, int]
_LEVELS_DOWN = tuple(range(MAX_SKILL_LEVEL, MIN_SKILL_LEVEL - 1, -1))
_Key = tuple[float, float, float, int]
_INF = float("inf")


class IndexedAgent(Protocol):
    """What the index reads about an agent (the engine's agent record)."""

    profile: AgentProfile
    status: AgentStatus
    ordinal: int


def _discard(values: list[_Entry3], value: _Entry3) -> None:
    position = bisect_left(values, value)
    if position < len(values) and values[position] == value:
        del values[position]


class _Bucket:
    __slots__ = ("by_busy", "by_idle", "by_ordinal")

    def __init__(self) -> None:
        self.by_idle: list[_IdleEntry] = []
        self.by_busy: list[_BusyEntry] = []
        self.by_ordinal: list[int] = []

    def add(self, idle: _IdleEntry, busy: _BusyEntry) -> None:
        insort(self.by_idle, idle)
        insort(self.by_busy, busy)
        insort(self.by_ordinal, idle[2])

    def discard(self, idle: _IdleEntry, busy: _BusyEntry) -> None:
        _discard(self.by_idle, idle)
        _discard(self.by_busy, busy)
        by_ordinal = self.by_ordinal
        position = bisect_left(by_ordinal, idle[2])
        if position < len(by_ordinal) and by_ordinal[position] == idle[2]:
            del by_ordinal[position]

    def move(self, old: _Place, new: _Place) -> None:
        if old.idle != new.idle:
            _discard(self.by_idle, old.idle)
            insort(self.by_idle, new.idle)
        if old.busy != new.busy:
            _discard(self.by_busy, old.busy)
            insort(self.by_busy, new.busy)


_EMPTY_BUCKET = _Bucket()


class _Place:
    """Where one agent is indexed, so it can be removed exactly (even after its skills changed)."""

    __slots__ = ("busy", "channels", "idle", "login", "skills")

    def __init__(
        self, record: IndexedAgent, channels: tuple[Channel, ...], skills: Mapping[str, int]
    ) -> None:
        status = record.status
        idle_key = status.idle_key
        self.channels = channels
        self.idle: _IdleEntry = (idle_key[0], idle_key[1], record.ordinal)
        self.busy: _BusyEntry = (status.busy_seconds, idle_key[1], record.ordinal)
        self.login = (status.logged_in_at, record.ordinal)
        self.skills = skills


class AgentIndex:
    """The free agents by (channel, skill, level) and by channel, in idle and ordinal order."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[Channel, str, int], _Bucket] = {}
        self._any: dict[Channel, _Bucket] = {}
        self._places: dict[int, _Place] = {}
        self._records: dict[int, IndexedAgent] = {}
        #: (logged_in_at, ordinal) of every indexed agent: the earliest login bounds occupancy.
        #: (logged_in_at, ordinal) of indexed agents, a heap with stale entries skipped lazily.
        self._logins: list[tuple[float, int]] = []
        #: The channel-wide buckets exist once a ``*`` requirement asked for them.
        self._any_kept = False

    # -- maintenance -----------------------------------------------------------------------------

    def update(self, record: IndexedAgent, channels: tuple[Channel, ...]) -> bool:
        """Index ``record`` for ``channels`` in its current order; True if it gained a channel."""
        ordinal = record.ordinal
        old = self._places.get(ordinal)
        if not channels:
            if old is not None:
                self.remove(record)
            return False
        skills = record.profile.skills
        if old is not None and old.skills is not skills:  # new profile: re-enter, new skills
            self.remove(record)
            old = None
        new = _Place(record, channels, skills)
        if old is None:
            self._records[ordinal] = record
            self._places[ordinal] = new
            self._push_login(new.login)
            for channel in channels:
                self._add(channel, new)
            return True
        if old.channels == channels and old.idle == new.idle and old.busy == new.busy:
            if old.login != new.login:
                old.login = new.login
                self._push_login(new.login)
            return False
        gained = False
        for channel in old.channels:
            if channel not in channels:
                self._remove(channel, old)
            else:
                self._move(channel, old, new)
        for channel in channels:
            if channel not in old.channels:
                gained = True
                self._add(channel, new)
        if old.login != new.login:
            self._push_login(new.login)
        self._places[ordinal] = new
        return gained

    def remove(self, record: IndexedAgent) -> None:
        """Take ``record`` out of every bucket it is in."""
        old = self._places.pop(record.ordinal, None)
        if old is None:
            return
        del self._records[record.ordinal]
        for channel in old.channels:
            self._remove(channel, old)

    def channels(self, record: IndexedAgent) -> tuple[Channel, ...]:
        """The channels ``record`` is indexed for (empty if none)."""
        place = self._places.get(record.ordinal)
        return () if place is None else place.channels

    def check(self, record: IndexedAgent, expected: tuple[Channel, ...]) -> list[str]:
        """Problems with ``record``'s entries given the channels it should be indexed for."""
        agent_id = record.profile.agent_id
        got = self.channels(record)
        if got != expected:
            return [f"agent {agent_id} indexed for {got}, expected {expected}"]
        if not expected:
            return []
        want = _Place(record, expected, record.profile.skills)
        problems = []
        earliest = self._earliest_login()
        if earliest is None or earliest > want.login[0]:
            problems.append(f"agent {agent_id} logged in before the earliest indexed login")
        for channel in expected:
            buckets = [self._any.get(channel, _EMPTY_BUCKET)] if self._any_kept else []
            buckets += [
                self._buckets.get((channel, skill, level), _EMPTY_BUCKET)
                for skill, level in record.profile.skills.items()
            ]
            for bucket in buckets:
                if not (_has(bucket.by_idle, want.idle) and _has(bucket.by_busy, want.busy)):
                    problems.append(f"agent {agent_id} missing or stale in the {channel} index")
                    break
        return problems

    def _push_login(self, login: tuple[float, int]) -> None:
        logins = self._logins
        heapq.heappush(logins, login)
        if len(logins) > 2 * len(self._places) + 64:
            self._logins = [place.login for place in self._places.values()]
            heapq.heapify(self._logins)

    def _earliest_login(self) -> float | None:
        logins, places = self._logins, self._places
        while logins:
            login = logins[0]
            place = places.get(login[1])
            if place is not None and place.login == login:
                return login[0]
            heapq.heappop(logins)
        return None

    def _keep_any(self) -> None:
        """Build the channel-wide buckets (first ``*`` requirement) and keep them from now on."""
        self._any_kept = True
        for place in self._places.values():
            for channel in place.channels:
                bucket = self._any.get(channel)
                if bucket is None:
                    bucket = self._any[channel] = _Bucket()
                bucket.add(place.idle, place.busy)

    def _add(self, channel: Channel, place: _Place) -> None:
        if self._any_kept:
            bucket = self._any.get(channel)
            if bucket is None:
                bucket = self._any[channel] = _Bucket()
            bucket.add(place.idle, place.busy)
        buckets = self._buckets
        idle, busy, ordinal = place.idle, place.busy, place.idle[2]
        for skill, level in place.skills.items():  # _Bucket.add, inlined: the hot path
            key = (channel, skill, level)
            bucket = buckets.get(key)
            if bucket is None:
                bucket = buckets[key] = _Bucket()
            insort(bucket.by_idle, idle)
            insort(bucket.by_busy, busy)
            insort(bucket.by_ordinal, ordinal)

    def _remove(self, channel: Channel, place: _Place) -> None:
        if self._any_kept:
            self._any[channel].discard(place.idle, place.busy)
        buckets = self._buckets
        idle, busy, ordinal = place.idle, place.busy, place.idle[2]
        for skill, level in place.skills.items():  # _Bucket.discard, inlined: the hot path
            bucket = buckets[(channel, skill, level)]
            values: list[_IdleEntry] | list[int] = bucket.by_idle
            position = bisect_left(values, idle)
            if position < len(values) and values[position] == idle:
                del values[position]
            values = bucket.by_busy
            position = bisect_left(values, busy)
            if position < len(values) and values[position] == busy:
                del values[position]
            ordinals = bucket.by_ordinal
            position = bisect_left(ordinals, ordinal)
            if position < len(ordinals) and ordinals[position] == ordinal:
                del ordinals[position]

    def _move(self, channel: Channel, old: _Place, new: _Place) -> None:
        if self._any_kept:
            self._any[channel].move(old, new)
        buckets = self._buckets
        for skill, level in old.skills.items():
            buckets[(channel, skill, level)].move(old, new)

    # -- selection -------------------------------------------------------------------------------

    def select(self, request: SelectionRequest) -> Selection | None:
        """The agent :func:`~acd.domain.routing.select` would choose among all indexed agents."""
        requirement = request.rule.requirement
        strategy, limit = request.strategy, request.limit
        terms = self._sources(requirement)
        if not terms:
            return None
        single = all(len(term) <= 1 for term in requirement.alternatives)
        found: _Found | None = None
        if strategy is Strategy.LEAST_OCCUPIED:
            found = self._least_occupied(requirement, terms, request.now, limit, single)
        elif strategy is not Strategy.BEST_SKILL or single:
            found = self._first(requirement, terms, strategy, request.rr_cursor, limit, single)
        if found is None:  # no index order fits: the brute-force policy over the buckets
            return select(request, self._union(terms), check_capacity=False)
        eligible = found.eligible
        if not eligible:
            return None
        eligible_count, exact = max(found.matched, len(eligible)), found.exhausted
        rejected_count, rejected = found.rejected_count, found.rejected
        if len(requirement.alternatives) == 1 and single and requirement.language is None:
            (sources,) = terms
            eligible_count = sum(len(bucket.by_ordinal) for _, bucket in sources)
            exact = True
            below = self._below(requirement)
            rejected_count = sum(len(bucket.by_ordinal) for _, bucket in below)
            rejected = self._name_rejected(requirement, below, limit)
        return chosen(
            request,
            eligible,
            eligible_count=eligible_count,
            rejected_count=rejected_count,
            rejected=rejected,
            counts_exact=exact,
        )

    def select_alone(self, request: SelectionRequest, record: IndexedAgent) -> Selection | None:
        """What :meth:`select` would choose were ``record`` indexed too, when that is ``record``
        for sure: a one-condition requirement without a language (``record``, which is in no
        bucket, can take the item's channel and matches it) that no indexed agent meets.
        None when that does not hold: index ``record`` and call :meth:`select`.

        The explanation is the one :meth:`select` gives then: one eligible agent, exact counts,
        the rejections from the buckets under the minimum level (``record`` is not in them).
        """
        requirement = request.rule.requirement
        alternatives = requirement.alternatives
        if len(alternatives) != 1 or len(alternatives[0]) != 1 or requirement.language is not None:
            return None
        strategy, now = request.strategy, request.now
        if strategy is Strategy.LEAST_OCCUPIED and record.status.logged_in_at >= now:
            return None  # select would fall back to the brute force (no span to bound with)
        ((skill, minimum),) = alternatives[0]
        channel, buckets = requirement.channel, self._buckets
        for level in _LEVELS_DOWN:
            if level < minimum:
                break
            bucket = buckets.get((channel, skill, level))
            if bucket is not None and bucket.by_ordinal:
                return None
        key = rank_key(strategy, requirement, now, request.rr_cursor)(record)
        below = self._below(requirement)
        return chosen(
            request,
            [(key, record)],
            eligible_count=1,
            rejected_count=sum(len(bucket.by_ordinal) for _, bucket in below),
            rejected=self._name_rejected(requirement, below, request.limit),
            counts_exact=True,
        )

    def candidates(self, requirement: Requirement) -> Iterator[IndexedAgent]:
        """Every indexed agent at or above the primary condition of a term, unordered, once:
        what a brute-force selection scans (it filters the rest of the requirement itself)."""
        return self._union(self._sources(requirement))

    def _first(
        self,
        requirement: Requirement,
        terms: list[list[tuple[int, _Bucket]]],
        strategy: Strategy,
        rr_cursor: int,
        limit: int,
        single: bool,
    ) -> _Found:
        """The first ``limit`` matching agents of the walk in the strategy's order."""
        check = requirement.language is not None or not single
        found = _Found(requirement, limit)
        records = self._records
        seen: set[int] = set()
        for key in self._walk(strategy, terms, rr_cursor):
            ordinal = key[3]
            if ordinal in seen:
                continue
            seen.add(ordinal)
            record = records[ordinal]
            if check and not requirement.matches(record.profile):
                found.reject(record)
                continue
            found.eligible.append((key, record))
            if len(found.eligible) >= limit:
                found.exhausted = False
                break
        return found

    def _least_occupied(
        self,
        requirement: Requirement,
        terms: list[list[tuple[int, _Bucket]]],
        now: float,
        limit: int,
        single: bool,
    ) -> _Found | None:
        """The best ``limit`` by occupancy since login, walking the fewest busy seconds first.

        Bound: an agent's occupancy ``busy / (now - logged_in_at)`` is at least
        ``busy_seconds / (now - earliest login)``, so the walk stops once that bound, rounded as
        the key rounds, is above the ``limit``-th best found. Agents with no busy seconds and no
        work have occupancy 0 and load 0, the smallest key prefix, and come in idle order: the
        first ``limit`` of them end that part of the walk. None (use the brute force) when every
        indexed agent logged in at ``now`` or later: the bound has no span to divide by.
        """
        earliest = self._earliest_login()
        if earliest is None or earliest >= now:
            return None
        span = now - earliest
        key_of = rank_key(Strategy.LEAST_OCCUPIED, requirement, now, -1)
        check = requirement.language is not None or not single
        found = _Found(requirement, limit)
        records = self._records
        seen: set[int] = set()
        best: list[tuple[_Key, int]] = []  # sorted, at most ``limit``

        def visit(ordinal: int) -> None:
            seen.add(ordinal)
            record = records[ordinal]
            if check and not requirement.matches(record.profile):
                found.reject(record)
                return
            found.matched += 1
            key = key_of(record)
            if len(best) < limit or key < best[-1][0]:
                insort(best, (key, ordinal))
                del best[limit:]

        buckets = [bucket for sources in terms for _, bucket in sources]
        cuts = [bisect_right(bucket.by_busy, (0.0, _INF, 0)) for bucket in buckets]
        exhausted = True
        pairs = list(zip(buckets, cuts, strict=True))
        for _, _, ordinal in _merged([(bucket.by_busy, 0, cut) for bucket, cut in pairs]):
            if ordinal in seen:
                continue
            visit(ordinal)
            if len(best) >= limit and best[-1][0][:2] == (0.0, 0.0):
                exhausted = False
                break
        rest = [(bucket.by_busy, cut, len(bucket.by_busy)) for bucket, cut in pairs]
        for busy, _, ordinal in _merged(rest):
            if len(best) >= limit and round(busy / span, 6) > best[-1][0][0]:
                exhausted = False
                break
            if ordinal not in seen:
                visit(ordinal)
        found.eligible = [(key, records[ordinal]) for key, ordinal in best]
        found.exhausted = exhausted
        return found

    def _sources(self, requirement: Requirement) -> list[list[tuple[int, _Bucket]]]:
        """Per term, the non-empty buckets of its primary condition as (level, bucket)."""
        channel = requirement.channel
        buckets = self._buckets
        terms: list[list[tuple[int, _Bucket]]] = []
        for term in requirement.alternatives:
            if not term:
                if not self._any_kept:
                    self._keep_any()
                bucket = self._any.get(channel)
                if bucket is not None and bucket.by_ordinal:
                    terms.append([(0, bucket)])
                continue
            best: list[tuple[int, _Bucket]] | None = None
            best_size = -1
            for skill, minimum in term:
                found = []
                size = 0
                for level in _LEVELS_DOWN:
                    if level < minimum:
                        break
                    bucket = buckets.get((channel, skill, level))
                    if bucket is not None and bucket.by_ordinal:
                        found.append((level, bucket))
                        size += len(bucket.by_ordinal)
                if best is None or size < best_size:
                    best, best_size = found, size
                if size == 0:
                    break
            if best:
                terms.append(best)
        return terms

    def _below(self, requirement: Requirement) -> list[tuple[int, _Bucket]]:
        """For a one-condition term, the buckets of its skill under the minimum level."""
        (term,) = requirement.alternatives
        if not term:
            return []
        ((skill, minimum),) = term
        channel = requirement.channel
        return [
            (level, bucket)
            for level in range(MIN_SKILL_LEVEL, minimum)
            if (bucket := self._buckets.get((channel, skill, level))) is not None
            and bucket.by_ordinal
        ]

    def _name_rejected(
        self, requirement: Requirement, below: list[tuple[int, _Bucket]], limit: int
    ) -> list[Rejection]:
        named: list[Rejection] = []
        if not below:
            return named
        ((skill, minimum),) = requirement.alternatives[0]
        records = self._records
        for level, bucket in below:
            reason = f"{skill} {level}<{minimum}"  # what why_not says for this one condition
            for _, _, ordinal in bucket.by_idle:
                if len(named) >= limit:
                    return named
                named.append(Rejection(records[ordinal].profile.agent_id, reason))
        return named

    def _union(self, terms: list[list[tuple[int, _Bucket]]]) -> Iterator[IndexedAgent]:
        records = self._records
        seen: set[int] = set()
        for sources in terms:
            for _, bucket in sources:
                for ordinal in bucket.by_ordinal:
                    if ordinal not in seen:
                        seen.add(ordinal)
                        yield records[ordinal]

    def _walk(
        self, strategy: Strategy, terms: list[list[tuple[int, _Bucket]]], rr_cursor: int
    ) -> Iterator[_Key]:
        """Candidates in the strategy's order, as its rank keys (see routing's key functions)."""
        if strategy is Strategy.BEST_SKILL:
            for level in range(MAX_SKILL_LEVEL, -1, -1):  # level 0: the ``*`` term
                lists = [
                    (bucket.by_idle, 0, len(bucket.by_idle))
                    for sources in terms
                    for at, bucket in sources
                    if at == level
                ]
                prefix = -float(level)
                for first, second, ordinal in _merged(lists):
                    yield (prefix, first, second, ordinal)
            return
        buckets = [bucket for sources in terms for _, bucket in sources]
        if strategy is Strategy.ROUND_ROBIN:
            cuts = [bisect_right(bucket.by_ordinal, rr_cursor) for bucket in buckets]
            pairs = list(zip(buckets, cuts, strict=True))
            for ordinal in _merged([(b.by_ordinal, cut, len(b.by_ordinal)) for b, cut in pairs]):
                yield (0.0, float(ordinal), 0.0, ordinal)
            for ordinal in _merged([(b.by_ordinal, 0, cut) for b, cut in pairs]):
                yield (1.0, float(ordinal), 0.0, ordinal)
            return
        for first, second, ordinal in _merged([(b.by_idle, 0, len(b.by_idle)) for b in buckets]):
            yield (first, second, 0.0, ordinal)


class _Found:
    """The agents a selection found eligible (best first) and those it turned down."""

    __slots__ = (
        "eligible",
        "exhausted",
        "limit",
        "matched",
        "rejected",
        "rejected_count",
        "requirement",
    )

    def __init__(self, requirement: Requirement, limit: int) -> None:
        self.requirement = requirement
        self.limit = limit
        self.eligible: list[tuple[_Key, IndexedAgent]] = []
        #: How many eligible agents were seen (more than ``eligible`` holds when ranking).
        self.matched = 0
        self.rejected: list[Rejection] = []
        self.rejected_count = 0
        #: True if every candidate was looked at (the counts are then exact).
        self.exhausted = True

    def reject(self, record: IndexedAgent) -> None:
        self.rejected_count += 1
        if len(self.rejected) < self.limit:
            reason = self.requirement.why_not(record.profile) or "no alternative matches"
            self.rejected.append(Rejection(record.profile.agent_id, reason))


def _has(values: list[_Entry3], value: _Entry3) -> bool:
    position = bisect_left(values, value)
    return position < len(values) and values[position] == value


_Item = TypeVar("_Item", bound=tuple[float, ...] | int)


def _merged(parts: list[tuple[list[_Item], int, int]]) -> Iterator[_Item]:
    """The merge of sorted ``values[start:stop]`` parts, lazily, in growing sorted chunks.

    Each round takes the next chunk of every part and sorts them together (in C): the entries
    up to the smallest last-taken entry of a part that has more are in their final order; the
    rest are carried into the next round, whose chunks are twice as long. A walk that needs
    the first few entries of a merge of long lists thus touches only a few of each.
    """
    live = [part for part in parts if part[1] < part[2]]
    if len(live) == 1:
        values, start, stop = live[0]
        for position in range(start, stop):
            yield values[position]
        return
    positions = [start for _, start, _ in live]
    carry: list[_Item] = []
    chunk = 8
    while True:
        batch = carry
        bound: _Item | None = None
        for index, (values, _, stop) in enumerate(live):
            position = positions[index]
            if position >= stop:
                continue
            end = min(position + chunk, stop)
            batch.extend(values[position:end])
            positions[index] = end
            if end < stop:
                last = values[end - 1]
                if bound is None or last < bound:  # type: ignore[operator]
                    bound = last
        if not batch:
            return
        batch.sort()
        if bound is None:
            yield from batch
            return
        cut = bisect_right(batch, bound)
        yield from batch[:cut]
        carry = batch[cut:]
        chunk *= 2
