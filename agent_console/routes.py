"""Route definitions: one table gives aiohttp its routes, auth its rules, OpenAPI its paths.

Every route is a `RouteSpec` saying who may call it (`Access` and `roles`) and what its input
looks like (JSON Schema subset, see `agent_console.schema`). The auth middleware refuses any
matched route that has no spec (fail closed), so a handler added without one is unreachable.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiohttp import web

from agent_console.errors import InvalidInput
from agent_console.schema import Schema, validate
from tickets.users import Role

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ALL_ROLES = frozenset(Role)
STAFF = ALL_ROLES
SUPERVISORS = frozenset({Role.SUPERVISOR, Role.ADMIN})
ADMINS = frozenset({Role.ADMIN})
AGENTS = frozenset({Role.AGENT})


class Access(StrEnum):
    USER = "user"  # a session cookie or an API token of a user whose role is in `roles`
    METRICS = "metrics"  # the metrics bearer token (or, without one, a loopback peer only)
    VISITOR = "visitor"  # the chat widget's WebSocket: same-origin only, signed visitor token
    PUBLIC = "public"  # carries no data: health, the login form, the widget's static files
    LINK = "link"  # a signed token in the path is the credential (the email survey page)


@dataclass(frozen=True, slots=True)
class RouteSpec:
    method: str
    path: str
    handler: Handler
    summary: str
    access: Access = Access.USER
    roles: frozenset[Role] = STAFF
    body: Schema | None = None
    query: Mapping[str, Schema] = field(default_factory=dict)
    response: Schema | None = None
    tag: str = "api"
    content_type: str = "application/json"

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)


SPECS = web.AppKey("route_specs", dict[tuple[str, str], RouteSpec])
JSON_BODY = web.RequestKey("json_body", dict[str, Any])
QUERY = web.RequestKey("query", dict[str, Any])


def add_routes(app: web.Application, specs: Iterable[RouteSpec]) -> None:
    table = app.setdefault(SPECS, {})
    for spec in specs:
        if spec.key in table:
            raise ValueError(f"route {spec.method} {spec.path} defined twice")
        table[spec.key] = spec
        app.router.add_route(spec.method, spec.path, spec.handler, name=spec.handler.__name__)


def spec_for(request: web.Request) -> RouteSpec | None:
    resource = request.match_info.route.resource
    if resource is None:
        return None
    return request.app[SPECS].get((request.method, resource.canonical))


async def parse_input(request: web.Request, spec: RouteSpec) -> None:
    """Validate the JSON body and query parameters against the spec (after authentication)."""
    query: dict[str, Any] = {}
    for name, schema in spec.query.items():
        raw = request.query.get(name)
        if raw is None:
            continue
        query[name] = _coerce(schema, raw)
        validate(schema, query[name], name)
    unknown = sorted(set(request.query) - set(spec.query))
    if unknown:
        raise InvalidInput(f"{unknown[0]}: unknown query parameter", field=unknown[0])
    request[QUERY] = query
    if spec.body is not None:
        try:
            body = await request.json()
        except ValueError as err:
            raise InvalidInput(f"body: not JSON ({err})") from err
        validate(spec.body, body)
        if not isinstance(body, dict):
            raise InvalidInput("body: expected a JSON object")
        request[JSON_BODY] = body


def _coerce(schema: Schema, raw: str) -> Any:
    if schema.get("type") == "integer" and re.fullmatch(r"-?\d{1,12}", raw):
        return int(raw)
    return raw


def path_int(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not re.fullmatch(r"\d{1,12}", raw):
        raise InvalidInput(f"{name}: expected a positive integer", field=name)
    return int(raw)


# -- OpenAPI -----------------------------------------------------------------------------------

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "stable error id"},
        "message": {"type": "string"},
        "field": {"type": "string"},
    },
    "required": ["error", "message"],
}


def openapi_document(specs: Iterable[RouteSpec], *, title: str, version: str) -> dict[str, Any]:
    """An OpenAPI 3.1 document of exactly these routes."""
    paths: dict[str, dict[str, Any]] = {}
    for spec in sorted(specs, key=lambda s: s.key):
        operation: dict[str, Any] = {
            "operationId": spec.handler.__name__,
            "summary": spec.summary,
            "tags": [spec.tag],
            "responses": _responses(spec),
            "security": _security(spec),
        }
        if spec.access == Access.USER:
            operation["x-roles"] = sorted(spec.roles)
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{(\w+)\}", spec.path)
        ]
        parameters += [
            {"name": name, "in": "query", "required": False, "schema": dict(schema)}
            for name, schema in spec.query.items()
        ]
        if parameters:
            operation["parameters"] = parameters
        if spec.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": dict(spec.body)}},
            }
        paths.setdefault(spec.path, {})[spec.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "cc_session"},
                "token": {"type": "http", "scheme": "bearer"},
            },
        },
    }


def _security(spec: RouteSpec) -> list[dict[str, list[str]]]:
    if spec.access == Access.USER:
        return [{"session": []}, {"token": []}]
    if spec.access == Access.METRICS:
        return [{"token": []}]
    return []


def _responses(spec: RouteSpec) -> dict[str, Any]:
    error = {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    ok: dict[str, Any] = {"description": "success"}
    if spec.response is not None:
        ok["content"] = {spec.content_type: {"schema": dict(spec.response)}}
    status = "101" if spec.method == "GET" and spec.path.endswith("/ws") else "200"
    out: dict[str, Any] = {status: ok}
    if spec.access == Access.LINK:
        out["404"] = {"description": "the link is forged, damaged or expired"}
        out["409"] = {"description": "already used"}
        out["429"] = {"description": "too many requests from this address"}
    elif spec.access != Access.PUBLIC:
        out["401"] = error
        out["403"] = error
    if spec.body is not None or spec.query:
        out["400"] = error
    return out
