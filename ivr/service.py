"""The IVR service: loads and checks the flows, reloads them, and serves them as FastAGI routes.

``IvrService(settings, path_sink=...)`` wires the FastAGI route (``ivr.adapters.ivr_route``) to
its adapters: the prompt renderer (espeak-ng), the lookups (help desk, knowledge base, webhooks),
the callback port, the customer directory and an optional speech port. Ports not given get their
in-memory stand-ins, because the help desk, customer directory and ACD do not exist yet.

``load()`` reads every ``*.yaml`` in ``flows_dir`` and refuses to start (``FlowInvalidError``
with every problem, file and line) if any flow is wrong or two flows share a name. ``reload()``
does the same but keeps the flows in use when the new set has problems, and returns them; calls
in progress keep the flow they started with, new calls get the new one. ``routes()`` maps
``ivr/<flow name>`` (and the ``ivr`` prefix, for flows added by a reload) to the handler, which
looks the flow up when the call arrives; an unknown flow ends the AGI session without a command,
so the dialplan continues (and the failover dialplan tries its next node or safe route).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ivr.adapters.fastagi_server import AgiHandler, AgiSession
from ivr.adapters.ivr_route import IvrRoute, RouteSettings
from ivr.adapters.lookups import (
    InMemoryCallbacks,
    InMemoryCustomerDirectory,
    InMemoryKnowledgeBase,
    InMemoryTicketDesk,
    LookupRunner,
    WebhookClient,
)
from ivr.adapters.prompt_renderer import PromptRenderer
from ivr.domain.flow import Flow, Problem
from ivr.domain.flow_check import FlowInvalidError, load_checked_flow
from ivr.ports import (
    CallbackPort,
    CustomerDirectory,
    KnowledgeBase,
    PathSink,
    PromptRendering,
    QueuePort,
    SpeechPort,
    TicketDesk,
)

__all__ = ["FLOWS_DIR", "ROUTE_PREFIX", "IvrService", "IvrSettings", "load_flows"]

_log = logging.getLogger(__name__)

FLOWS_DIR = Path(__file__).parent / "flows"
ROUTE_PREFIX = "ivr"
_FLOW_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


@dataclass(frozen=True, slots=True)
class IvrSettings:
    """Where the flows, sounds and rendered prompts are, and how calls leave the IVR."""

    flows_dir: Path = FLOWS_DIR
    sounds_dirs: tuple[Path, ...] = ()
    prompt_cache_dir: Path = Path("/var/cache/callcenter/prompts")
    espeak: str = "espeak-ng"
    route: RouteSettings = field(default_factory=RouteSettings)


def load_flows(
    flows_dir: Path, sounds_dirs: tuple[Path, ...] = ()
) -> tuple[dict[str, Flow], list[Problem]]:
    """Every flow in ``flows_dir`` by name, and every problem found (none: ready to serve)."""
    files = sorted([*flows_dir.glob("*.yaml"), *flows_dir.glob("*.yml")])
    if not files:
        return {}, [Problem(str(flows_dir), 1, "no flow files (*.yaml) in this directory")]
    flows: dict[str, Flow] = {}
    problems: list[Problem] = []
    for path in files:
        try:
            flow = load_checked_flow(path, sounds_dirs)
        except FlowInvalidError as err:
            problems += err.problems
            continue
        if not _FLOW_NAME.match(flow.name):
            problems.append(
                Problem(str(path), 1, f"flow name {flow.name!r} cannot be used in an AGI URL")
            )
        elif flow.name in flows:
            other = flows[flow.name].file
            problems.append(Problem(str(path), 1, f"flow name {flow.name!r} is also in {other}"))
        else:
            flows[flow.name] = flow
    return flows, problems


class IvrService:
    """Owns the loaded flows and the route that runs them."""

    def __init__(
        self,
        settings: IvrSettings,
        *,
        path_sink: PathSink,
        renderer: PromptRendering | None = None,
        tickets: TicketDesk | None = None,
        knowledge: KnowledgeBase | None = None,
        customers: CustomerDirectory | None = None,
        callbacks: CallbackPort | None = None,
        speech: SpeechPort | None = None,
        queue: QueuePort | None = None,
        webhooks: WebhookClient | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self._webhooks = webhooks or WebhookClient()
        self.route = IvrRoute(
            renderer=renderer or PromptRenderer(settings.prompt_cache_dir, settings.espeak),
            lookups=LookupRunner(
                tickets or InMemoryTicketDesk(),
                knowledge or InMemoryKnowledgeBase(),
                self._webhooks,
            ),
            path_sink=path_sink,
            callbacks=callbacks or InMemoryCallbacks(),
            customers=customers or InMemoryCustomerDirectory(),
            speech=speech,
            queue=queue,
            clock=clock,
            settings=settings.route,
        )
        self._flows: dict[str, Flow] = {}

    @property
    def flows(self) -> Mapping[str, Flow]:
        return dict(self._flows)

    def load(self) -> None:
        """Load and check every flow; FlowInvalidError (all problems) if any is wrong."""
        flows, problems = load_flows(self.settings.flows_dir, self.settings.sounds_dirs)
        if problems:
            raise FlowInvalidError(problems)
        self._flows = flows
        _log.info("IVR flows loaded: %s", ", ".join(sorted(flows)))

    def reload(self) -> list[Problem]:
        """Load the flows again; on any problem keep the current ones and return the problems."""
        flows, problems = load_flows(self.settings.flows_dir, self.settings.sounds_dirs)
        if problems:
            _log.error(
                "IVR flows not reloaded, %d problem(s):\n%s",
                len(problems),
                "\n".join(str(p) for p in problems),
            )
            return problems
        self._flows = flows
        _log.info("IVR flows reloaded: %s", ", ".join(sorted(flows)))
        return []

    def routes(self) -> dict[str, AgiHandler]:
        """``{"ivr/<flow name>": handler, ..., "ivr": handler}`` for the FastAGI server."""
        routes: dict[str, AgiHandler] = {
            f"{ROUTE_PREFIX}/{name}": self.handle for name in self._flows
        }
        routes[ROUTE_PREFIX] = self.handle
        return routes

    def flow_for(self, script_path: str) -> Flow | None:
        """The flow an AGI script path (``ivr/main``) names, if loaded."""
        name = script_path.strip("/").removeprefix(f"{ROUTE_PREFIX}/")
        return self._flows.get(name)

    async def handle(self, session: AgiSession) -> None:
        """The FastAGI handler: run the flow named by the script path."""
        flow = self.flow_for(session.env.script_path)
        if flow is None:
            _log.warning(
                "no IVR flow for AGI script %r (unique_id=%s); the dialplan continues",
                session.env.script_path,
                session.unique_id,
            )
            return
        await self.route.run(session, flow)

    async def close(self) -> None:
        """Close the webhook client's HTTP connections."""
        await self._webhooks.close()
