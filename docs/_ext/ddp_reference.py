"""Sphinx directives that write the reference pages from the code (see ddp_inventory).

Each directive renders one kind of object (settings, system checks, commands, failure
reasons, signals, statuses) as cross-referenceable entries: ``:setting:`BASE_URL```,
``:check:`datadog_partner.W020```, ``:command:`datadog_partner_revoke```,
``:reason:`invalid_grant```, ``:status:`revoking```, ``:signal:`event_sent```.
Hand-written prose may follow an entry's generated fields: give it in the directive's
content under the entry's name. A name that the code does not have, or an entry the code
has but the page cannot explain, is a warning, so ``sphinx -W`` fails on any drift.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import ddp_inventory as inventory
from ddp_diagram import state_diagram
from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.parsing import nested_parse_to_nodes

logger = logging.getLogger(__name__)
PACKAGE_DIR = Path(importlib.import_module(inventory.PACKAGE).__file__ or "").parent

OBJECT_TYPES = {
    "setting": "pair: %s; setting",
    "check": "pair: %s; system check",
    "command": "pair: %s; management command",
    "reason": "pair: %s; failure reason",
    "status": "pair: %s; connection status",
    "outbox-status": "pair: %s; outbox status",
    "signal": "pair: %s; signal",
}


def rst_escape(text: str) -> str:
    """Plain text from the code, shown as written (no markup is interpreted)."""
    return re.sub(r"([\\`*_|<>\[\]])", r"\\\1", text)


def indent(text: str, by: int = 3) -> list[str]:
    return [(" " * by + line) if line.strip() else "" for line in text.splitlines()]


def humanize_seconds(seconds: float) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def list_table(widths: str, header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header, *rows]:
        lines += [f"   {'*' if n == 0 else ' '} - {cell}" for n, cell in enumerate(row)]
    return [*lines, ""]


class GeneratedDirective(SphinxDirective):
    """Renders reStructuredText built from the code; content adds prose per entry."""

    has_content = True
    what: ClassVar[str] = ""

    def prose(self, known: Iterable[str]) -> dict[str, str]:
        """The content's ``NAME`` lines, each followed by indented prose, by name.

        A name the code does not have is a warning (renamed or removed).
        """
        found: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in self.content:
            if line and not line[0].isspace():
                current = found.setdefault(line.strip(), [])
            elif current is not None:
                current.append(line[3:] if line.startswith("   ") else line.strip())
            elif line.strip():
                self.warn(f"prose before any {self.what} name: {line.strip()!r}")
        for name in sorted(set(found) - set(known)):
            self.warn(f"the code has no {self.what} {name!r} (renamed or removed?)")
        return {name: "\n".join(lines).strip() for name, lines in found.items()}

    def warn(self, message: str) -> None:
        logger.warning("%s: %s", self.name, message, location=self.get_location())

    @staticmethod
    def entry(object_type: str, name: str, fields: list[tuple[str, str]], *body: str) -> list[str]:
        """One cross-referenceable object: its fields, then prose paragraphs."""
        lines = [f".. {object_type}:: {name}", ""]
        lines += [f"   :{field}: {value}" for field, value in fields]
        for text in filter(None, body):
            lines += ["", *indent(text)]
        return [*lines, ""]

    def render(self, lines: list[str]) -> list[nodes.Node]:
        # The page is rebuilt whenever the package's code changes, not only its .rst.
        for path in sorted(PACKAGE_DIR.rglob("*.py")):
            self.env.note_dependency(str(path))
        return list(
            nested_parse_to_nodes(
                self.state, "\n".join(lines), source=f"<{self.name} in {self.env.docname}>"
            )
        )


class SettingsDirective(GeneratedDirective):
    """Every ``DATADOG_PARTNER`` key: type, default, since, the accessor's docstring."""

    what = "setting"

    def run(self) -> list[nodes.Node]:
        found = inventory.settings()
        names = {s.name for s in found}
        prose = self.prose(names)
        lines: list[str] = []
        for setting in found:
            if setting.since is None:
                self.warn(f"{setting.name} has no release in ddp_inventory.SETTINGS_SINCE")
            if not (setting.doc or prose.get(setting.name)):
                self.warn(f"{setting.name} has neither a docstring nor prose here")
            fields = [
                ("Type", self._type(setting)),
                ("Default", self._default(setting, names)),
                ("Since", setting.since or "unknown"),
            ]
            lines += self.entry(
                "setting", setting.name, fields, setting.doc, prose.get(setting.name, "")
            )
        return self.render(lines)

    @staticmethod
    def _type(setting: inventory.Setting) -> str:
        if setting.kind == "seconds":
            return "seconds: a number, or a ``datetime.timedelta``"
        if setting.kind == "hook":
            return "a callable, or the dotted path of one"
        return f"``{setting.annotation}``"

    @staticmethod
    def _default(setting: inventory.Setting, names: set[str]) -> str:
        if setting.required:
            return "**required**"
        if setting.default in names:
            return f"the value of :setting:`{setting.default}`"
        shown = f"``{setting.default}``"
        if setting.default_seconds is not None:
            human = humanize_seconds(setting.default_seconds)
            return shown + ("" if human == f"{setting.default} s" else f" ({human})")
        return shown


class ChecksDirective(GeneratedDirective):
    """Every system check id the package registers, with its level, message and hint."""

    what = "check"

    def run(self) -> list[nodes.Node]:
        found = inventory.checks()
        prose = self.prose(c.id for c in found)
        rows = [[f":check:`{c.id}`", c.level, rst_escape(c.message)] for c in found]
        lines = list_table("26 10 64", ["Id", "Level", "Message"], rows)
        for check in found:
            runs = "``manage.py check``"
            if check.database:
                runs = "``manage.py check --database default``"
            fields = [
                ("Level", check.level),
                ("Runs with", runs),
                ("Message", rst_escape(check.message)),
                ("Hint", rst_escape(check.hint)),
            ]
            lines += self.entry("check", check.id, fields, prose.get(check.id, ""))
        return self.render(lines)


class CommandsDirective(GeneratedDirective):
    """Every management command: synopsis, arguments and exit status, from its parser."""

    what = "command"

    def run(self) -> list[nodes.Node]:
        found = inventory.commands()
        prose = self.prose(c.name for c in found)
        lines: list[str] = []
        for command in found:
            usage = f".. code-block:: text\n\n   {inventory.synopsis(command)}"
            lines += self.entry(
                "command",
                command.name,
                [],
                rst_escape(command.help),
                usage,
                prose.get(command.name, ""),
            )
            lines += [f"   .. program:: {command.name}", ""]
            for argument in command.arguments:
                lines += [f"   .. option:: {self._signature(argument)}", ""]
                lines += [*indent(self._details(argument), 6), ""]
            lines += [*indent(self._exit_status(command)), ""]
        return self.render(lines)

    @staticmethod
    def _signature(argument: inventory.Argument) -> str:
        if argument.positional:
            return argument.metavar
        return ", ".join(f"{name} {argument.metavar}".strip() for name in argument.names)

    @staticmethod
    def _details(argument: inventory.Argument) -> str:
        details = [rst_escape(argument.help.rstrip(".")) + "." if argument.help else ""]
        if argument.required and not argument.positional:
            details.append("Required.")
        if argument.default:
            details.append(f"Default: ``{argument.default}``.")
        if argument.choices:
            details.append("One of " + ", ".join(f"``{c}``" for c in argument.choices) + ".")
        return " ".join(filter(None, details)) or "\u00a0"

    @staticmethod
    def _exit_status(command: inventory.Command) -> str:
        reasons = [rst_escape(message.splitlines()[0]) for message in command.failures]
        if command.runs_system_checks:
            reasons.append("a system check reports an error (the command runs them first)")
        lines = ["Exit status:", "", "* ``0``: done."]
        if reasons:
            lines += ["* ``1``, with the message on standard error, when:", ""]
            lines += [f"  * {reason}" for reason in reasons]
            lines.append("")
        lines.append("* ``2``: an unknown option or a malformed value.")
        return "\n".join(lines)


class FailuresDirective(GeneratedDirective):
    """Every failure reason of the connect flow and the page its user sees."""

    what = "reason"

    def run(self) -> list[nodes.Node]:
        found = inventory.failures()
        prose = self.prose(f.reason for f in found)
        rows = [[f":reason:`{f.reason}`", str(f.status), rst_escape(f.title)] for f in found]
        lines = list_table("30 10 60", ["``reason``", "HTTP", "Page title"], rows)
        for failure in found:
            fields = [
                ("HTTP status", str(failure.status)),
                ("Page title", rst_escape(failure.title)),
                ("What happened", rst_escape(failure.explanation)),
                ("Next step", rst_escape(failure.next_step)),
            ]
            lines += self.entry("reason", failure.reason, fields, prose.get(failure.reason, ""))
        return self.render(lines)


class SignalsDirective(GeneratedDirective):
    """Every signal of ``signals.py``, its keyword arguments and when it is sent."""

    what = "signal"

    def run(self) -> list[nodes.Node]:
        found = inventory.signals()
        prose = self.prose(s.name for s in found)
        lines: list[str] = []
        for signal in found:
            if not signal.arguments:
                self.warn(f"{signal.name}'s comment lists no ``kwargs:``")
            arguments = ", ".join(f"``{a}``" for a in signal.arguments)
            fields = [
                ("Import", f"``from django_datadog_partner.signals import {signal.name}``"),
                ("Arguments", f"{arguments} (and ``sender``, as with every Django signal)"),
            ]
            lines += self.entry(
                "signal", signal.name, fields, signal.doc, prose.get(signal.name, "")
            )
        return self.render(lines)


class ChoicesDirective(GeneratedDirective):
    """The values of a ``TextChoices`` with their labels; the content explains each one."""

    required_arguments = 1
    option_spec: ClassVar[dict[str, Any]] = {"object": directives.unchanged_required}
    what = "value"

    def run(self) -> list[nodes.Node]:
        found = inventory.choices(self.arguments[0])
        prose = self.prose(value for value, _ in found)
        lines: list[str] = []
        for value, label in found:
            if not prose.get(value):
                self.warn(f"{value!r} of {self.arguments[0]} is not explained here")
            object_type = self.options.get("object", "status")
            lines += self.entry(
                object_type, value, [("Label", rst_escape(label))], prose.get(value, "")
            )
        return self.render(lines)


class TransitionsDirective(GeneratedDirective):
    """``FROM -> TO: when`` lines checked against the enum, drawn and listed.

    Names in parentheses, such as ``(new)`` or ``(any)``, are not statuses: they stand
    for "no connection yet" and "whatever the status".
    """

    required_arguments = 1
    option_spec: ClassVar[dict[str, Any]] = {
        "center": directives.unchanged_required,
        "ring": directives.unchanged_required,
        "title": directives.unchanged,
    }
    what = "transition"

    def run(self) -> list[nodes.Node]:
        values = [value for value, _ in inventory.choices(self.arguments[0])]
        centre = self.options["center"]
        ring = self.options["ring"].split()
        edges: list[tuple[str, str, str]] = []
        for line in self.content:
            if not line.strip():
                continue
            match = re.fullmatch(r"\s*(\S+)\s*->\s*(\S+)\s*:\s*(.+)", line)
            if not match:
                self.warn(f"not a 'FROM -> TO: when' line: {line!r}")
                continue
            edges.append((match[1], match[2], match[3]))
        pseudo = {name for name in [centre, *ring] if name.startswith("(")}
        placed = {centre, *ring}
        for name in sorted(placed - pseudo - set(values)):
            self.warn(f"{name!r} is not a value of {self.arguments[0]}")
        for value in values:
            if value not in placed:
                self.warn(f"{value!r} is missing from the diagram's :center: and :ring:")
            if not any(value in (source, target) for source, target, _ in edges):
                self.warn(f"no transition leads to or from {value!r}")
        unplaced = {name for edge in edges for name in edge[:2]} - placed
        if unplaced:
            self.warn(f"transitions name {sorted(unplaced)}, which the diagram does not place")
            return []

        svg = state_diagram(
            centre,
            ring,
            [(s, t) for s, t, _ in edges],
            pseudo=pseudo,
            title=self.options.get("title", "State diagram"),
        )
        figure = nodes.container(classes=["ddp-diagram"])
        figure += nodes.raw("", svg, format="html")

        def ref(name: str) -> str:
            return f"*{rst_escape(name)}*" if name in pseudo else f":status:`{name}`"

        rows = [
            [str(number), ref(source), ref(target), when]
            for number, (source, target, when) in enumerate(edges, start=1)
        ]
        return [figure, *self.render(list_table("4 22 22 52", ["#", "From", "To", "When"], rows))]


def setup(app: Sphinx) -> dict[str, Any]:
    for name, index in OBJECT_TYPES.items():
        app.add_object_type(name, name, indextemplate=index)
    app.add_directive("ddp-settings", SettingsDirective)
    app.add_directive("ddp-checks", ChecksDirective)
    app.add_directive("ddp-commands", CommandsDirective)
    app.add_directive("ddp-failures", FailuresDirective)
    app.add_directive("ddp-signals", SignalsDirective)
    app.add_directive("ddp-choices", ChoicesDirective)
    app.add_directive("ddp-transitions", TransitionsDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
