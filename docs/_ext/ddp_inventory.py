"""What the reference documents, read from the code itself so the pages cannot drift.

Settings come from the ``PartnerSettings`` accessor's properties, system checks from
Django's check registry (and the ``Error``/``Warning`` calls of the modules that register
them), commands from their argparse parsers, failure reasons from ``failures.PAGES`` and
signals from ``signals.py``. Nothing here needs Sphinx: the test suite imports it too.
Call the functions after ``django.setup()``.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE = "django_datadog_partner"
FIRST_RELEASE = "0.1.0"

#: The release that introduced each setting. A new setting needs an entry: the docs build
#: and tests/test_docs.py fail until it has one.
SETTINGS_SINCE: dict[str, str] = {
    "CLIENT_ID": FIRST_RELEASE,
    "CLIENT_SECRET": FIRST_RELEASE,
    "SCOPES": FIRST_RELEASE,
    "BASE_URL": FIRST_RELEASE,
    "ENCRYPTION_KEYS": FIRST_RELEASE,
    "EXTRA_SITES": FIRST_RELEASE,
    "HTTP_TIMEOUT": FIRST_RELEASE,
    "MAX_RESPONSE_BYTES": FIRST_RELEASE,
    "SANDBOX_FORCE": FIRST_RELEASE,
    "OWNERS_FOR_USER": FIRST_RELEASE,
    "CAN_MANAGE_CONNECTION": FIRST_RELEASE,
    "SUCCESS_URL": FIRST_RELEASE,
    "REQUIRED_SCOPES": FIRST_RELEASE,
    "TRACKED_MODELS": FIRST_RELEASE,
    "KICK_ON_COMMIT": FIRST_RELEASE,
    "KICK_INTERVAL": FIRST_RELEASE,
    "DELIVERY_CONCURRENCY": FIRST_RELEASE,
    "DELIVERY_BATCH_SIZE": FIRST_RELEASE,
    "EVENT_MAX_AGE": FIRST_RELEASE,
    "METRIC_MAX_AGE": FIRST_RELEASE,
    "BACKOFF_BASE": FIRST_RELEASE,
    "BACKOFF_CAP": FIRST_RELEASE,
    "OUTBOX_STALE_AFTER": FIRST_RELEASE,
    "LEASE_SECONDS": FIRST_RELEASE,
    "BREAKER_THRESHOLD": FIRST_RELEASE,
    "BREAKER_COOLDOWN": FIRST_RELEASE,
    "SOURCE_TYPE_NAME": FIRST_RELEASE,
    "LOG_SOURCE": FIRST_RELEASE,
    "LOG_SERVICE": FIRST_RELEASE,
    "SERVICE_CHECK_MAX_AGE": FIRST_RELEASE,
    "HEARTBEAT_METRIC": FIRST_RELEASE,
    "HEARTBEAT_INTERVAL": FIRST_RELEASE,
    "METRICS": FIRST_RELEASE,
    "SAMPLE_LOGS": FIRST_RELEASE,
    "UNINSTALL_TEXT": FIRST_RELEASE,
}

ACCESSORS = {"_get": "value", "_seconds": "seconds", "hook": "hook"}


@dataclass(frozen=True)
class Setting:
    name: str
    annotation: str
    kind: str  # "value", "seconds" or "hook"
    required: bool
    default: str | None  # Python source of the default, None when required
    default_seconds: float | None
    doc: str
    since: str | None


@dataclass(frozen=True)
class Check:
    id: str
    level: str
    message: str
    hint: str
    database: bool
    registered_as: str


@dataclass(frozen=True)
class Argument:
    names: tuple[str, ...]
    metavar: str
    help: str
    default: str | None
    choices: tuple[str, ...]
    required: bool
    positional: bool


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: tuple[Argument, ...]
    failures: tuple[str, ...]  # what makes it exit 1 (CommandError messages)
    runs_system_checks: bool


@dataclass(frozen=True)
class Failure:
    reason: str
    status: int
    title: str
    explanation: str
    next_step: str


@dataclass(frozen=True)
class SignalDoc:
    name: str
    doc: str
    arguments: tuple[str, ...]


@dataclass
class _Module:
    module: ModuleType
    tree: ast.Module
    functions: dict[str, ast.FunctionDef] = field(default_factory=dict)


# --- Settings ---------------------------------------------------------------------------


def settings() -> list[Setting]:
    """Every key of ``DATADOG_PARTNER``, in the accessor's order."""
    from django_datadog_partner.conf import PartnerSettings

    tree = ast.parse(textwrap.dedent(inspect.getsource(PartnerSettings)))
    (cls,) = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    found = []
    for node in cls.body:
        if not (isinstance(node, ast.FunctionDef) and node.name.isupper()):
            continue
        kind, access = _accessor_call(node)
        default_node = access.args[1] if access and len(access.args) > 1 else None
        required = default_node is None and _calls(node, "_missing")
        found.append(
            Setting(
                name=node.name,
                annotation=ast.unparse(node.returns) if node.returns else "",
                kind=kind,
                required=required,
                default=_default_source(default_node),
                default_seconds=_number(default_node) if kind == "seconds" else None,
                doc=inspect.cleandoc(ast.get_docstring(node) or ""),
                since=SETTINGS_SINCE.get(node.name),
            )
        )
    return found


def _accessor_call(prop: ast.FunctionDef) -> tuple[str, ast.Call | None]:
    """How the property reads its key (``self._get("KEY", default)`` and the like)."""
    for node in ast.walk(prop):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "self"
            and node.func.attr in ACCESSORS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == prop.name
        ):
            return ACCESSORS[node.func.attr], node
    return "value", None


def _calls(tree: ast.AST, name: str) -> bool:
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name
        for node in ast.walk(tree)
    )


def _default_source(node: ast.expr | None) -> str | None:
    if node is None:
        return None
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.attr  # ``self.SOURCE_TYPE_NAME``: another setting
    return ast.unparse(node)


def _number(node: ast.expr | None) -> float | None:
    """The value of a default such as ``17 * 3600`` (numbers and arithmetic only)."""
    if node is None or not all(
        isinstance(n, ast.Constant | ast.BinOp | ast.operator) for n in ast.walk(node)
    ):
        return None
    value = eval(compile(ast.Expression(node), "<default>", "eval"), {"__builtins__": {}})  # noqa: S307
    return float(value)


# --- System checks ----------------------------------------------------------------------


def checks() -> list[Check]:
    """Every check message the package's registered system checks can emit, by id."""
    from django.core.checks.registry import registry

    registered = [
        check
        for check in registry.get_checks(include_deployment_checks=True)
        if check.__module__.startswith(PACKAGE)
    ]
    modules: dict[str, _Module] = {}
    for check in registered:
        if check.__module__ not in modules:
            modules[check.__module__] = _parse_module(importlib.import_module(check.__module__))
    found: dict[str, Check] = {}
    for check in registered:
        parsed = modules[check.__module__]
        original: Any = getattr(check, "__wrapped__", check)  # under @database_check
        name = original.__name__
        database = "database" in getattr(check, "tags", ())
        for function in _reachable(parsed, name):
            for level, call in _check_messages(function):
                check_id = _keyword(call, "id")
                found.setdefault(
                    check_id,
                    Check(
                        id=check_id,
                        level=level,
                        message=_tidy(_text(call.args[0], parsed.module)) if call.args else "",
                        hint=_text(_keyword_node(call, "hint"), parsed.module),
                        database=database,
                        registered_as=f"{check.__module__}.{name}",
                    ),
                )
    return sorted(found.values(), key=lambda c: c.id)


def _parse_module(module: ModuleType) -> _Module:
    parsed = _Module(module, ast.parse(inspect.getsource(module)))
    for node in parsed.tree.body:
        if isinstance(node, ast.FunctionDef):
            parsed.functions[node.name] = node
    return parsed


def _reachable(parsed: _Module, start: str) -> Iterator[ast.FunctionDef]:
    """``start`` and the module's functions it names, transitively (its helpers)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in parsed.functions:
            continue
        seen.add(name)
        function = parsed.functions[name]
        yield function
        todo += [n.id for n in ast.walk(function) if isinstance(n, ast.Name)]


def _check_messages(function: ast.FunctionDef) -> Iterator[tuple[str, ast.Call]]:
    """``(level, call)`` of every ``Error(..., id=...)``, ``Warning(...)``… in ``function``."""
    for node in ast.walk(function):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"Critical", "Error", "Warning", "Info", "Debug"}
            and _keyword_node(node, "id") is not None
        ):
            yield node.func.id, node


def _keyword_node(call: ast.Call, name: str) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return None


def _keyword(call: ast.Call, name: str) -> str:
    node = _keyword_node(call, name)
    assert isinstance(node, ast.Constant), ast.dump(call)
    return str(node.value)


def _text(node: ast.expr | None, module: ModuleType) -> str:
    """A message's text; parts only known at run time are shown as ``…``."""
    if node is None:
        return ""
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(value, module) for value in node.values)
    if isinstance(node, ast.FormattedValue):
        return _text(node.value, module) if isinstance(node.value, ast.Name) else "…"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _text(node.left, module) + _text(node.right, module)
    if isinstance(node, ast.Name):
        value = getattr(module, node.id, None)
        return value if isinstance(value, str) else "…"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return _text(node.func.value, module)  # ``f"...".strip()`` and the like
    return "…"


def _tidy(text: str) -> str:
    return re.sub(r"…(\s*…)+", "…", text)


# --- Management commands ----------------------------------------------------------------


def commands() -> list[Command]:
    """Every ``manage.py`` command of the package, with its options and failures."""
    from django.core.management import BaseCommand, get_commands, load_command_class

    common = {action.dest for action in BaseCommand().create_parser("manage.py", "x")._actions}
    found = []
    for name in sorted(n for n, app in get_commands().items() if app == PACKAGE):
        command = load_command_class(PACKAGE, name)
        parser = command.create_parser("manage.py", name)
        arguments = tuple(
            _argument(action) for action in parser._actions if action.dest not in common
        )
        found.append(
            Command(
                name=name,
                help=str(command.help),
                arguments=arguments,
                failures=tuple(_command_failures(type(command))),
                runs_system_checks=bool(command.requires_system_checks),
            )
        )
    return found


def _argument(action: argparse.Action) -> Argument:
    positional = not action.option_strings
    metavar = action.metavar or ("" if positional else action.dest.upper())
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        metavar = ""
    if positional:
        metavar = str(metavar or action.dest)
        if action.nargs in ("*", "+"):
            metavar += " …"
    default = action.default
    shown = None if default in (None, False, argparse.SUPPRESS) or positional else repr(default)
    text = str(action.help or "")
    if "%(" in text:  # argparse's own placeholders, expanded as its help formatter does
        text = text % {**vars(action), "default": default}
        shown = None  # the help already says it
    return Argument(
        names=tuple(action.option_strings) or (str(action.metavar or action.dest),),
        metavar=str(metavar),
        help=text,
        default=shown,
        choices=tuple(str(c) for c in action.choices or ()),
        required=bool(action.required) if not positional else action.nargs not in ("*", "?"),
        positional=positional,
    )


def synopsis(command: Command) -> str:
    """``python manage.py NAME [ID …] [--all]`` from the parser's own arguments."""
    parts = [f"python manage.py {command.name}"]
    for argument in command.arguments:
        text = argument.names[0] if not argument.positional else argument.metavar
        if not argument.positional and argument.metavar:
            text += f" {argument.metavar}"
        parts.append(text if argument.required else f"[{text}]")
    return " ".join(parts)


def _command_failures(command_class: type) -> Iterator[str]:
    """The messages of every ``raise CommandError(...)`` in the command and its helpers."""
    module = inspect.getmodule(command_class)
    assert module is not None
    sources: list[tuple[ModuleType, ast.AST]] = [(module, ast.parse(inspect.getsource(module)))]
    for value in vars(module).values():
        helper_module = getattr(value, "__module__", "") or ""
        if (
            inspect.isfunction(value)
            and helper_module.startswith(f"{PACKAGE}.management")
            and helper_module != module.__name__
        ):
            helper = importlib.import_module(helper_module)
            sources.append((helper, ast.parse(textwrap.dedent(inspect.getsource(value)))))
    seen: set[str] = set()
    for owner, tree in sources:
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Raise)
                and isinstance(node.exc, ast.Call)
                and isinstance(node.exc.func, ast.Name)
                and node.exc.func.id == "CommandError"
                and node.exc.args
            ):
                message = _tidy(_text(node.exc.args[0], owner))
                if message not in seen and message.strip("… "):
                    seen.add(message)
                    yield message


# --- Failure reasons, signals, choices --------------------------------------------------


def failures() -> list[Failure]:
    """Every reason the connect flow can end with, and the page the user sees."""
    from django_datadog_partner.failures import PAGES

    return [
        Failure(reason, page.status, str(page.title), str(page.explanation), str(page.next_step))
        for reason, page in PAGES.items()
    ]


def signals() -> list[SignalDoc]:
    """Every signal in ``signals.py`` with its ``#:`` comment and the kwargs it lists."""
    from django.dispatch import Signal

    from django_datadog_partner import signals as module

    lines = Path(inspect.getsourcefile(module) or "").read_text().splitlines()
    found = []
    for node in ast.parse("\n".join(lines)).body:
        if not (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        if not isinstance(getattr(module, name, None), Signal):
            continue
        comment: list[str] = []
        row = node.lineno - 2
        while row >= 0 and lines[row].startswith("#:"):
            comment.insert(0, lines[row][2:].strip())
            row -= 1
        doc = " ".join(comment)
        _, _, listed = doc.partition("kwargs:")
        while re.search(r"\([^()]*\)", listed):  # asides name other things: drop them
            listed = re.sub(r"\([^()]*\)", "", listed)
        arguments = re.findall(r"``(\w+)``", listed)
        found.append(SignalDoc(name, doc, tuple(dict.fromkeys(arguments))))
    return found


def choices(dotted: str) -> list[tuple[str, str]]:
    """``(value, label)`` of a ``TextChoices`` class named by its dotted path."""
    module_name, _, class_name = dotted.rpartition(".")
    enum: Any = getattr(importlib.import_module(module_name), class_name)
    return [(str(value), str(label)) for value, label in enum.choices]
