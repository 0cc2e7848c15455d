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

import re
from collections.abc import Iterable
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


class GeneratedDirective(SphinxDirective):
    """Renders reStructuredText built from the code; content adds prose per entry."""

    has_content = True
    what: ClassVar[str] = ""

    def extras(self) -> dict[str, str]:
        """``NAME`` lines at the left margin, each followed by indented prose."""
        found: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in self.content:
            if line and not line[0].isspace():
                current = found.setdefault(line.strip(), [])
            elif current is not None:
                current.append(line[3:] if line.startswith("   ") else line.strip())
            elif line.strip():
                self.warn(f"prose before any {self.what} name: {line.strip()!r}")
        return {name: "\n".join(lines).strip() for name, lines in found.items()}

    def check_names(self, extras: dict[str, str], known: Iterable[str]) -> None:
        for name in sorted(set(extras) - set(known)):
            self.warn(f"the code has no {self.what} {name!r} (renamed or removed?)")

    def warn(self, message: str) -> None:
        logger.warning("%s: %s", self.name, message, location=self.get_location())

    def render(self, lines: list[str]) -> list[nodes.Node]:
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
        extras = self.extras()
        self.check_names(extras, names)
        lines: list[str] = []
        for setting in found:
            if setting.since is None:
                self.warn(f"{setting.name} has no release in ddp_inventory.SETTINGS_SINCE")
            prose = "\n\n".join(filter(None, [setting.doc, extras.get(setting.name, "")]))
            if not prose:
                self.warn(f"{setting.name} has neither a docstring nor prose here")
            lines += [
                f".. setting:: {setting.name}",
                "",
                f"   :Type: {self._type(setting)}",
                f"   :Default: {self._default(setting, names)}",
                f"   :Since: {setting.since or 'unknown'}",
                "",
                *indent(prose),
                "",
            ]
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
        extras = self.extras()
        self.check_names(extras, [c.id for c in found])
        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 26 10 64",
            "",
            "   * - Id",
            "     - Level",
            "     - Message",
        ]
        for check in found:
            lines += [
                f"   * - :check:`{check.id}`",
                f"     - {check.level}",
                f"     - {rst_escape(check.message)}",
            ]
        lines.append("")
        for check in found:
            runs = (
                "``manage.py check --database default``"
                if check.database
                else "``manage.py check``"
            )
            lines += [
                f".. check:: {check.id}",
                "",
                f"   :Level: {check.level}",
                f"   :Runs with: {runs}",
                f"   :Message: {rst_escape(check.message)}",
                f"   :Hint: {rst_escape(check.hint)}",
                "",
                *indent(extras.get(check.id, "")),
                "",
            ]
        return self.render(lines)


class CommandsDirective(GeneratedDirective):
    """Every management command: synopsis, arguments and exit status, from its parser."""

    what = "command"

    def run(self) -> list[nodes.Node]:
        found = inventory.commands()
        extras = self.extras()
        self.check_names(extras, [c.name for c in found])
        lines: list[str] = []
        for command in found:
            lines += [
                f".. command:: {command.name}",
                "",
                *indent(rst_escape(command.help)),
                "",
                "   .. code-block:: text",
                "",
                f"      {inventory.synopsis(command)}",
                "",
                *indent(extras.get(command.name, "")),
                "",
                f"   .. program:: {command.name}",
                "",
            ]
            for argument in command.arguments:
                signature = ", ".join(
                    f"{name} {argument.metavar}".strip() if not argument.positional else name
                    for name in argument.names
                )
                if argument.positional:
                    signature = argument.metavar
                details = [rst_escape(argument.help.rstrip(".")) + "." if argument.help else ""]
                if argument.required and not argument.positional:
                    details.append("Required.")
                if argument.default:
                    details.append(f"Default: ``{argument.default}``.")
                if argument.choices:
                    details.append(
                        "One of " + ", ".join(f"``{c}``" for c in argument.choices) + "."
                    )
                lines += [
                    f"   .. option:: {signature}",
                    "",
                    "      " + (" ".join(filter(None, details)) or "\u00a0"),
                    "",
                ]
            lines += ["   Exit status:", "", "   * ``0``: done."]
            reasons = [rst_escape(message.splitlines()[0]) for message in command.failures]
            if command.runs_system_checks:
                reasons.append("a system check reports an error (the command runs them first)")
            if reasons:
                lines.append("   * ``1``, with the message on standard error, when:")
                lines.append("")
                lines += [f"     * {reason}" for reason in reasons]
                lines.append("")
            lines += ["   * ``2``: an unknown option or a malformed value.", ""]
        return self.render(lines)


class FailuresDirective(GeneratedDirective):
    """Every failure reason of the connect flow and the page its user sees."""

    what = "reason"

    def run(self) -> list[nodes.Node]:
        found = inventory.failures()
        extras = self.extras()
        self.check_names(extras, [f.reason for f in found])
        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 30 10 60",
            "",
            "   * - ``reason``",
            "     - HTTP",
            "     - Page title",
        ]
        for failure in found:
            lines += [
                f"   * - :reason:`{failure.reason}`",
                f"     - {failure.status}",
                f"     - {rst_escape(failure.title)}",
            ]
        lines.append("")
        for failure in found:
            lines += [
                f".. reason:: {failure.reason}",
                "",
                f"   :HTTP status: {failure.status}",
                f"   :Page title: {rst_escape(failure.title)}",
                f"   :What happened: {rst_escape(failure.explanation)}",
                f"   :Next step: {rst_escape(failure.next_step)}",
                "",
                *indent(extras.get(failure.reason, "")),
                "",
            ]
        return self.render(lines)


class SignalsDirective(GeneratedDirective):
    """Every signal of ``signals.py``, its keyword arguments and when it is sent."""

    what = "signal"

    def run(self) -> list[nodes.Node]:
        found = inventory.signals()
        extras = self.extras()
        self.check_names(extras, [s.name for s in found])
        lines: list[str] = []
        for signal in found:
            if not signal.arguments:
                self.warn(f"{signal.name}'s comment lists no ``kwargs:``")
            arguments = ", ".join(f"``{a}``" for a in signal.arguments)
            lines += [
                f".. signal:: {signal.name}",
                "",
                f"   :Import: ``from django_datadog_partner.signals import {signal.name}``",
                f"   :Arguments: {arguments} (and ``sender``, as with every Django signal)",
                "",
                *indent(signal.doc),
                "",
                *indent(extras.get(signal.name, "")),
                "",
            ]
        return self.render(lines)


class ChoicesDirective(GeneratedDirective):
    """The values of a ``TextChoices`` with their labels; the content explains each one."""

    required_arguments = 1
    option_spec: ClassVar[dict[str, Any]] = {"object": directives.unchanged_required}
    what = "value"

    def run(self) -> list[nodes.Node]:
        found = inventory.choices(self.arguments[0])
        object_type = self.options.get("object", "status")
        extras = self.extras()
        self.check_names(extras, [value for value, _ in found])
        lines: list[str] = []
        for value, label in found:
            if not extras.get(value):
                self.warn(f"{value!r} of {self.arguments[0]} is not explained here")
            lines += [
                f".. {object_type}:: {value}",
                "",
                f"   :Label: {rst_escape(label)}",
                "",
                *indent(extras.get(value, "")),
                "",
            ]
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
        for source, target, _ in edges:
            for name in (source, target):
                if name not in placed:
                    self.warn(f"transition names {name!r}, which is not placed in the diagram")
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

        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 4 22 22 52",
            "",
            "   * - #",
            "     - From",
            "     - To",
            "     - When",
        ]
        for number, (source, target, when) in enumerate(edges, start=1):
            lines += [
                f"   * - {number}",
                f"     - {ref(source)}",
                f"     - {ref(target)}",
                f"     - {when}",
            ]
        return [figure, *self.render(lines)]


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
