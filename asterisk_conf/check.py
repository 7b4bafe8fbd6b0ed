"""`check()`: what is wrong with an Asterisk configuration folder, by file and line.

Every `*.conf` in the folder (and every file `extensions.conf` includes) is parsed with pyst2
and scanned (`confparse`). Then, file by file:

* dialplan: applications not in `known.APPLICATIONS` (or removed from Asterisk 22),
  `Goto`/`GotoIf`/`Gosub`/`GosubIf` targets and `include =>` contexts that do not exist,
  `Local/<exten>@<context>` with an unknown context, `#include`d files that are missing;
  FastAGI URLs and AudioSocket services (expanded through `[globals]`, including the
  `${CUT(NODES,&,${i})}` form the generated failover uses) that are malformed or, with
  `expect`, not one of the controllers' listening addresses;
* manager.conf: permission classes Asterisk does not have (`main/manager.c`), unknown
  options, and with `expect` the AMI user, its bind address and port, and permissions beyond
  what the callcenter uses;
* pjsip.conf: unknown options for the object's type, references to missing auth/aor/transport/
  endpoint objects, endpoint contexts missing from the dialplan;
* secrets that are empty or still a placeholder (`<...>`, as `generate()` writes them);
* http.conf, musiconhold.conf, modules.conf: unknown options and directives.

Line 0 means the whole file (for example a file that should exist and does not).
"""

from __future__ import annotations

import re
from pathlib import Path

from asterisk_conf import known
from asterisk_conf.confparse import ConfFile, Section, parse
from asterisk_conf.dialplan import Dialplan, Step, build, split_app, split_args, split_condition
from asterisk_conf.generate import EXTENSION_PARTS, NODE_SEPARATOR
from asterisk_conf.model import DeploymentConf, EndpointKind, Problem

_AGI_URL = re.compile(r"(h?agi)://([^/]*)(/.*)?")
_CUT = re.compile(r"\$\{CUT\((\w+),(.?),(?:[^{}]|\$\{\w+\})*\)\}")
_VAR = re.compile(r"\$\{(\w+)\}")
_LOCAL = re.compile(r"Local/([^@,/]+)@([^,/)]+)", re.I)
_PLACEHOLDER = re.compile(r"<[^>]*>")
_KNOWN_APPS = {name.lower(): name for name in known.APPLICATIONS}
_REMOVED_APPS = {name.lower(): why for name, why in known.REMOVED_APPLICATIONS.items()}
_GOTO_APPS = {"goto", "gosub"}
_GOTO_IF_APPS = {"gotoif", "gosubif"}
_PJSIP_REFS = {"auth": "auth", "outbound_auth": "auth", "aors": "aor", "transport": "transport"}


def check(conf_dir: Path, expect: DeploymentConf | None = None) -> list[Problem]:
    """The problems found in the Asterisk configuration in `conf_dir`, in file and line order."""
    files, problems = _load(conf_dir)
    if expect is not None:
        wanted = ["manager.conf", "pjsip.conf", "http.conf", "extensions.conf", *EXTENSION_PARTS]
        if _expected_queues(expect):
            wanted.append("queues.conf")
        problems += [
            Problem(name, 0, "file missing (callcenter asterisk-conf writes it)")
            for name in wanted
            if name not in files
        ]
    dialplan_files = _dialplan_files(files, problems)
    plan = build(dialplan_files)
    if dialplan_files:
        problems += _check_dialplan(plan, expect)
    for conf in files.values():
        problems += _check_secrets(conf)
    if "queues.conf" in files:
        problems += _check_queues(files["queues.conf"], plan, expect)
    if "manager.conf" in files:
        problems += _check_manager(files["manager.conf"], expect)
    if "pjsip.conf" in files:
        problems += _check_pjsip(files["pjsip.conf"], plan if dialplan_files else None)
        if expect is not None:
            problems += _check_acd_endpoints(files["pjsip.conf"], expect)
    if "http.conf" in files:
        problems += _check_http(files["http.conf"], expect)
    if "musiconhold.conf" in files:
        problems += _check_options(files["musiconhold.conf"], known.MOH_OPTIONS, "general")
    if "modules.conf" in files:
        problems += _check_modules(files["modules.conf"])
    return sorted(set(problems))


def _load(conf_dir: Path) -> tuple[dict[str, ConfFile], list[Problem]]:
    files: dict[str, ConfFile] = {}
    problems: list[Problem] = []
    if not conf_dir.is_dir():
        return files, [Problem(str(conf_dir), 0, "not a folder")]
    for path in sorted(conf_dir.glob("*.conf")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            problems.append(Problem(path.name, 0, f"cannot read: {err}"))
            continue
        conf = parse(path.name, text)
        files[path.name] = conf
        problems += conf.problems
    return files, problems


def _dialplan_files(files: dict[str, ConfFile], problems: list[Problem]) -> list[ConfFile]:
    """extensions.conf and, depth first, the files it includes (as Asterisk reads them)."""
    if "extensions.conf" not in files:
        return []
    ordered: list[ConfFile] = []
    seen: set[str] = set()

    def visit(conf: ConfFile) -> None:
        if conf.name in seen:
            return
        seen.add(conf.name)
        ordered.append(conf)
        for line, target in conf.includes:
            name = Path(target).name
            if name not in files:
                problems.append(Problem(conf.name, line, f"#include {target}: no such file"))
                continue
            visit(files[name])

    visit(files["extensions.conf"])
    return ordered


# -- dialplan -------------------------------------------------------------------------------


def _check_dialplan(plan: Dialplan, expect: DeploymentConf | None) -> list[Problem]:
    problems: list[Problem] = []
    for ctx in plan.contexts.values():
        for file, line, name in ctx.includes:
            if name not in plan.contexts:
                problems.append(Problem(file, line, f"include => {name}: no such context"))
    agi_seen: set[str] = set()
    audiosocket_seen: set[str] = set()
    for step in plan.steps:
        problems += _check_step(plan, step, agi_seen, audiosocket_seen, expect)
    if expect is not None:
        problems += _check_coverage(plan, expect, agi_seen, audiosocket_seen)
        problems += _check_inbound(plan, expect)
        for name in (
            "cc-inbound",
            "cc-ivr",
            "cc-queue",
            "cc-safe-route",
            "cc-agents",
            "cc-callback",
        ):
            if name not in plan.contexts:
                problems.append(Problem("extensions.conf", 0, f"context [{name}] is missing"))
    return problems


def _check_inbound(plan: Dialplan, expect: DeploymentConf) -> list[Problem]:
    """Every inbound number of the settings is an extension of cc-inbound."""
    inbound = plan.contexts.get("cc-inbound")
    if inbound is None:
        return []
    return [
        Problem(inbound.file, 0, f"[cc-inbound] has no extension {did} (for flow {flow})")
        for did, flow in expect.inbound
        if did not in inbound.extens
    ]


def _check_step(
    plan: Dialplan,
    step: Step,
    agi_seen: set[str],
    audiosocket_seen: set[str],
    expect: DeploymentConf | None,
) -> list[Problem]:
    problems: list[Problem] = []
    app = step.app.lower()
    where = (step.file, step.line)
    if app in _REMOVED_APPS:
        return [Problem(*where, f"{step.app}: {_REMOVED_APPS[app]}")]
    if app not in _KNOWN_APPS:
        return [Problem(*where, f"unknown application {step.app}")]
    if app in {"tryexec", "exec"}:
        inner_app, inner_args = split_app(step.args)
        if inner_app and "$" not in inner_app:
            inner = Step(step.file, step.line, step.context, step.exten, inner_app, inner_args)
            problems += _check_step(plan, inner, agi_seen, audiosocket_seen, expect)
    if app in _GOTO_APPS:
        problems += _check_target(plan, step, step.args)
    elif app in _GOTO_IF_APPS:
        _, branches = split_condition(step.args)
        for branch in branches:
            problems += _check_target(plan, step, branch)
    elif app in {"agi", "eagi"}:
        problems += _check_agi(plan, step, agi_seen, expect)
    elif app == "audiosocket":
        problems += _check_audiosocket(plan, step, audiosocket_seen, expect)
    for match in _LOCAL.finditer(step.args):
        context = match.group(2).strip()
        if "$" not in context and context not in plan.contexts:
            problems.append(Problem(*where, f"Local/{match.group(1)}@{context}: no such context"))
    return problems


def _check_target(plan: Dialplan, step: Step, target: str) -> list[Problem]:
    parts = split_args(target)
    if parts and "(" in parts[-1]:  # Gosub arguments: prio(arg1,arg2)
        parts[-1] = parts[-1].split("(", 1)[0].strip()
    if not parts or not parts[-1] or len(parts) > 3:
        return [Problem(step.file, step.line, f"{step.app}({target}): bad target")]
    context, exten = step.context, step.exten
    if len(parts) == 3:
        context, exten = parts[0], parts[1]
    elif len(parts) == 2:
        exten = parts[0]
    priority = parts[-1]
    if "$" in context:
        return []
    if context not in plan.contexts:
        return [Problem(step.file, step.line, f"{step.app}: context {context} does not exist")]
    if "$" in exten:
        return []
    labels = plan.find_exten(context, exten)
    if labels is None:
        return [
            Problem(step.file, step.line, f"{step.app}: no extension {exten} in context {context}")
        ]
    if "$" not in priority and not priority.isdigit() and priority not in labels:
        return [
            Problem(step.file, step.line, f"{step.app}: no label {priority} in {exten}@{context}")
        ]
    return []


def _expand(plan: Dialplan, text: str) -> list[str] | None:
    """`text` with `${GLOBAL}` / `${CUT(GLOBAL,d,...)}` replaced (one result per field);
    None when it depends on a variable that is not a global."""
    cut = _CUT.search(text)
    if cut:
        name, delim = cut.group(1), cut.group(2) or "-"
        if name not in plan.globals:
            return None
        pieces = plan.globals[name][0].split(delim)
        results: list[str] = []
        for piece in pieces:
            expanded = _expand(plan, text[: cut.start()] + piece + text[cut.end() :])
            if expanded is None:
                return None
            results += expanded
        return results
    var = _VAR.search(text)
    if var:
        if var.group(1) not in plan.globals:
            return None
        value = plan.globals[var.group(1)][0]
        return _expand(plan, text[: var.start()] + value + text[var.end() :])
    if "${" in text or "$[" in text:
        return None
    return [text]


def _check_agi(
    plan: Dialplan, step: Step, seen: set[str], expect: DeploymentConf | None
) -> list[Problem]:
    command = split_args(step.args)[0] if step.args else ""
    whole = _VAR.fullmatch(command)
    if whole and whole.group(1) in plan.globals:  # AGI(${FASTAGI_URL})
        command = plan.globals[whole.group(1)][0]
    match = _AGI_URL.fullmatch(command)
    if not match:
        if expect is not None and "$" not in command:
            return [Problem(step.file, step.line, f"AGI({command}): not a FastAGI agi:// URL")]
        return []
    hostports = _expand(plan, match.group(2))
    if hostports is None or match.group(1) == "hagi":  # hagi:// is resolved through DNS SRV
        return []
    problems = []
    for hostport in hostports:
        if match.group(1) == "agi" and ":" not in hostport.rpartition("]")[2]:
            hostport += ":4573"
        problem = _check_service(step, "FastAGI", hostport, expect, expect_nodes="agi")
        if problem:
            problems.append(problem)
        seen.add(hostport)
    return problems


def _check_audiosocket(
    plan: Dialplan, step: Step, seen: set[str], expect: DeploymentConf | None
) -> list[Problem]:
    args = split_args(step.args)
    if len(args) < 2 or not args[1]:
        return [Problem(step.file, step.line, "AudioSocket: needs uuid,host:port")]
    services = _expand(plan, args[1])
    if services is None:
        return []
    problems = []
    for service in services:
        problem = _check_service(step, "AudioSocket", service, expect, expect_nodes="audiosocket")
        if problem:
            problems.append(problem)
        seen.add(service)
    return problems


def _check_service(
    step: Step, what: str, hostport: str, expect: DeploymentConf | None, *, expect_nodes: str
) -> Problem | None:
    if not _has_port(hostport):
        return Problem(step.file, step.line, f"{what} target {hostport!r}: expected host:port")
    if expect is None:
        return None
    nodes = expect.agi_nodes if expect_nodes == "agi" else expect.audiosocket_nodes
    if hostport not in nodes:
        return Problem(
            step.file,
            step.line,
            f"{what} target {hostport} is not a controller's address "
            f"(expected one of {', '.join(nodes)})",
        )
    return None


def _has_port(hostport: str) -> bool:
    host, sep, port = hostport.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def _check_coverage(
    plan: Dialplan, expect: DeploymentConf, agi_seen: set[str], audiosocket_seen: set[str]
) -> list[Problem]:
    problems = []
    for name, nodes, seen in (
        ("CC_AGI_NODES", expect.agi_nodes, agi_seen),
        ("CC_AUDIOSOCKET_NODES", expect.audiosocket_nodes, audiosocket_seen),
    ):
        file, line = ("extensions.conf", 0)
        if name in plan.globals:
            value, file, line = plan.globals[name]
            if value.split(NODE_SEPARATOR) != list(nodes):
                problems.append(
                    Problem(file, line, f"{name} = {value}: expected {NODE_SEPARATOR.join(nodes)}")
                )
        missing = [node for node in nodes if node not in seen]
        if missing:
            problems.append(
                Problem(file, line, f"controller node(s) never tried: {', '.join(missing)}")
            )
    return problems


# -- queues.conf ----------------------------------------------------------------------------


def _expected_queues(expect: DeploymentConf) -> list[str]:
    fallback = expect.fallback_route
    extra = [fallback.target] if fallback.kind == "queue" else []
    return list(dict.fromkeys([*expect.queues, *extra]))


def _check_queues(conf: ConfFile, plan: Dialplan, expect: DeploymentConf | None) -> list[Problem]:
    """Every `Queue(<name>)` of the dialplan, and every queue the flows name, is defined."""
    defined = {s.name for s in conf.sections if not s.is_template} - {"general"}
    problems = [
        Problem(conf.name, entry.line, f"[{section.name}] no queue strategy {entry.value!r}")
        for section in conf.sections
        for entry in section.entries
        if entry.key == "strategy" and entry.value not in known.QUEUE_STRATEGIES
    ]
    for step in plan.steps:
        if step.app.lower() != "queue":
            continue
        name = split_args(step.args)[0] if step.args else ""
        if name and "$" not in name and name not in defined:
            problems.append(
                Problem(step.file, step.line, f"Queue({name}): no [{name}] in queues.conf")
            )
    if expect is not None:
        problems += [
            Problem(conf.name, 0, f"no queue [{name}] (an IVR flow's queue step or the fallback)")
            for name in _expected_queues(expect)
            if name not in defined
        ]
    return problems


# -- secrets --------------------------------------------------------------------------------


def _check_secrets(conf: ConfFile) -> list[Problem]:
    keys = known.SECRET_KEYS.get(conf.name, frozenset())
    problems = []
    for section in conf.sections:
        for entry in section.entries:
            if entry.key not in keys:
                continue
            if not entry.value:
                problems.append(
                    Problem(conf.name, entry.line, f"[{section.name}] empty {entry.key}")
                )
            elif _PLACEHOLDER.fullmatch(entry.value):
                problems.append(
                    Problem(
                        conf.name,
                        entry.line,
                        f"[{section.name}] {entry.key} is still the placeholder {entry.value}",
                    )
                )
    return problems


# -- manager.conf ---------------------------------------------------------------------------


def _check_manager(conf: ConfFile, expect: DeploymentConf | None) -> list[Problem]:
    problems = []
    for section in conf.sections:
        allowed = (
            known.MANAGER_GENERAL_OPTIONS
            if section.name == "general"
            else known.MANAGER_USER_OPTIONS
        )
        for entry in section.entries:
            if entry.key not in allowed:
                problems.append(
                    Problem(conf.name, entry.line, f"[{section.name}] unknown option {entry.key}")
                )
            if section.name != "general" and entry.key in {"read", "write"}:
                for perm in (p.strip() for p in entry.value.split(",")):
                    if perm and perm not in known.MANAGER_PERMISSIONS:
                        problems.append(
                            Problem(
                                conf.name,
                                entry.line,
                                f"[{section.name}] {entry.key}: no permission class {perm!r}",
                            )
                        )
    if expect is not None:
        problems += _check_manager_expected(conf, expect)
    return problems


def _check_manager_expected(conf: ConfFile, expect: DeploymentConf) -> list[Problem]:
    problems = []
    general = _section(conf, "general")
    for key, value in (("enabled", "yes"), ("bindaddr", expect.ami_bind)):
        entry = general.get(key) if general else None
        if entry is None or entry.value != value:
            line = entry.line if entry else (general.line if general else 0)
            problems.append(Problem(conf.name, line, f"[general] {key} should be {value}"))
    port = general.get("port") if general else None
    if port is not None and port.value != str(expect.ami_port):
        problems.append(Problem(conf.name, port.line, f"port should be {expect.ami_port}"))
    user = _section(conf, expect.ami_username)
    if user is None:
        return [*problems, Problem(conf.name, 0, f"no AMI user [{expect.ami_username}]")]
    for key, needed in (("read", known.AMI_READ), ("write", known.AMI_WRITE)):
        entry = user.get(key)
        if entry is None:
            problems.append(Problem(conf.name, user.line, f"[{user.name}] no {key} permissions"))
            continue
        granted = {p.strip() for p in entry.value.split(",") if p.strip()}
        extra = sorted(granted - set(needed))
        lacking = sorted(set(needed) - granted) if "all" not in granted else []
        if extra:
            problems.append(
                Problem(
                    conf.name,
                    entry.line,
                    f"[{user.name}] {key}: {', '.join(extra)} is more than the callcenter uses",
                )
            )
        if lacking:
            problems.append(
                Problem(conf.name, entry.line, f"[{user.name}] {key}: lacks {', '.join(lacking)}")
            )
    return problems


# -- pjsip.conf -----------------------------------------------------------------------------


def _check_pjsip(conf: ConfFile, plan: Dialplan | None) -> list[Problem]:
    problems = []
    by_name: dict[str, list[Section]] = {}
    for section in conf.sections:
        by_name.setdefault(section.name, []).append(section)
    types_of: dict[str, set[str]] = {}
    resolved: list[tuple[Section, str, dict[str, tuple[int, str]]]] = []
    for section in conf.sections:
        if section.is_template:
            continue
        options = _inherited(section, by_name)
        kind = options.get("type", (section.line, ""))[1]
        if not kind:
            problems.append(Problem(conf.name, section.line, f"[{section.name}] has no type"))
            continue
        if kind not in known.PJSIP_OPTIONS:
            problems.append(
                Problem(conf.name, options["type"][0], f"[{section.name}] unknown type {kind}")
            )
            continue
        types_of.setdefault(kind, set()).add(section.name)
        resolved.append((section, kind, options))
    for section, kind, options in resolved:
        for key, (line, value) in options.items():
            if key not in known.PJSIP_OPTIONS[kind]:
                problems.append(
                    Problem(conf.name, line, f"[{section.name}] unknown {kind} option {key}")
                )
                continue
            problems += _check_pjsip_reference(conf, section, kind, key, line, value, types_of)
            missing_context = plan is not None and value not in plan.contexts
            if kind == "endpoint" and key == "context" and missing_context:
                problems.append(
                    Problem(conf.name, line, f"[{section.name}] context {value}: no such context")
                )
    return problems


def _check_acd_endpoints(conf: ConfFile, expect: DeploymentConf) -> list[Problem]:
    """Every `PJSIP/<name>` the ACD dials is an endpoint of pjsip.conf."""
    endpoints = {
        section.name
        for section in conf.sections
        if (entry := section.get("type")) is not None and entry.value == "endpoint"
    }
    return [
        Problem(
            conf.name,
            0,
            f"no endpoint [{endpoint.partition('/')[2]}]: the ACD (acd.config_file) dials "
            f"{endpoint}; add the phone to asterisk.agents or change the agent's endpoint",
        )
        for endpoint in expect.acd_endpoints
        if endpoint.upper().startswith("PJSIP/") and endpoint.partition("/")[2] not in endpoints
    ]


def _check_pjsip_reference(
    conf: ConfFile,
    section: Section,
    kind: str,
    key: str,
    line: int,
    value: str,
    types_of: dict[str, set[str]],
) -> list[Problem]:
    wanted = _PJSIP_REFS.get(key) if kind in {"endpoint", "registration"} else None
    if kind == "identify" and key == "endpoint":
        wanted = "endpoint"
    if wanted is None:
        return []
    return [
        Problem(conf.name, line, f"[{section.name}] {key} = {name}: no {wanted} [{name}]")
        for name in (n.strip() for n in value.split(","))
        if name and name not in types_of.get(wanted, set())
    ]


def _inherited(section: Section, by_name: dict[str, list[Section]]) -> dict[str, tuple[int, str]]:
    options: dict[str, tuple[int, str]] = {}
    for parent in section.parents:
        for template in by_name.get(parent, []):
            if template.is_template:
                options |= _inherited(template, by_name)
    for entry in section.entries:
        if entry.key in options and entry.key in {"allow", "disallow"}:
            continue
        options[entry.key] = (entry.line, entry.value)
    return options


# -- http.conf, musiconhold.conf, modules.conf ----------------------------------------------


def _check_http(conf: ConfFile, expect: DeploymentConf | None) -> list[Problem]:
    problems = _check_options(conf, known.HTTP_OPTIONS)
    if expect is None or not any(a.kind is EndpointKind.WEBRTC for a in expect.agents):
        return problems
    general = _section(conf, "general")
    wanted = {"enabled": "yes", "tlsenable": "yes"}
    for key, value in wanted.items():
        entry = general.get(key) if general else None
        if entry is None or entry.value != value:
            line = entry.line if entry else 0
            problems.append(Problem(conf.name, line, f"{key} should be {value} for WebRTC agents"))
    bind = general.get("tlsbindaddr") if general else None
    if bind is None or not bind.value.endswith(f":{expect.http_port}"):
        problems.append(
            Problem(
                conf.name,
                bind.line if bind else 0,
                f"tlsbindaddr should listen on port {expect.http_port} (WSS for WebRTC agents)",
            )
        )
    return problems


def _check_options(conf: ConfFile, allowed: frozenset[str], *skip_sections: str) -> list[Problem]:
    return [
        Problem(conf.name, entry.line, f"[{section.name}] unknown option {entry.key}")
        for section in conf.sections
        if section.name not in skip_sections
        for entry in section.entries
        if entry.key not in allowed
    ]


def _check_modules(conf: ConfFile) -> list[Problem]:
    problems = []
    for section in conf.sections:
        for entry in section.entries:
            if entry.key not in known.MODULES_CONF_KEYS:
                problems.append(Problem(conf.name, entry.line, f"unknown directive {entry.key}"))
            elif entry.key != "autoload" and not entry.value.endswith(".so"):
                problems.append(
                    Problem(conf.name, entry.line, f"{entry.key} {entry.value}: expected a .so")
                )
    return problems


def _section(conf: ConfFile, name: str) -> Section | None:
    found = conf.sections_named(name)
    return found[0] if found else None
