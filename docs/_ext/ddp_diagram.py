"""A state diagram as inline SVG, drawn without Graphviz (nothing to install).

One node sits in the centre and the others on a ring around it; each transition is a
straight arrow labelled with its number in the table below the diagram. Colours follow
the page's text colour, so the diagram reads in furo's light and dark modes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

CHAR_WIDTH = 7.8  # px per character of the 13 px monospace node labels
NODE_HEIGHT = 30
PADDING = 14
BACKGROUND = "var(--color-background-primary, white)"  # furo's page colour


def _box(label: str) -> tuple[float, float]:
    return (len(label) * CHAR_WIDTH + 2 * PADDING) / 2, NODE_HEIGHT / 2


def _exit_point(
    centre: tuple[float, float], half: tuple[float, float], towards: tuple[float, float]
) -> tuple[float, float]:
    """Where the line from ``centre`` towards ``towards`` leaves the node's box."""
    dx, dy = towards[0] - centre[0], towards[1] - centre[1]
    scale = min(
        half[0] / abs(dx) if dx else math.inf,
        half[1] / abs(dy) if dy else math.inf,
    )
    return centre[0] + dx * scale, centre[1] + dy * scale


def state_diagram(
    centre: str,
    ring: Sequence[str],
    edges: Sequence[tuple[str, str]],
    *,
    pseudo: set[str],
    title: str,
) -> str:
    """SVG markup: ``edges`` are ``(from, to)`` pairs, numbered from 1 in order."""
    radius_x, radius_y = 330.0, 165.0
    width, height = 2 * radius_x + 260, 2 * radius_y + 90
    origin = (width / 2, height / 2)
    places = {centre: origin}
    for n, name in enumerate(ring):
        angle = -math.pi / 2 + 2 * math.pi * n / len(ring)
        places[name] = (
            origin[0] + radius_x * math.cos(angle),
            origin[1] + radius_y * math.sin(angle),
        )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'role="img" aria-label="{escape(title)}" class="ddp-state-diagram">',
        f"<title>{escape(title)}</title>",
        "<defs><marker id='ddp-arrow' viewBox='0 0 10 10' refX='10' refY='5' "
        "markerWidth='8' markerHeight='8' orient='auto-start-reverse'>"
        "<path d='M 0 0 L 10 5 L 0 10 z' fill='currentColor'/></marker></defs>",
    ]
    pairs = set(edges)
    for number, (source, target) in enumerate(edges, start=1):
        start, end = places[source], places[target]
        dx, dy = end[0] - start[0], end[1] - start[1]
        length = math.hypot(dx, dy) or 1.0
        # Two arrows between the same nodes (there and back) are drawn side by side.
        shift = 7.0 if (target, source) in pairs else 0.0
        nx, ny = -dy / length * shift, dx / length * shift
        a = _exit_point((start[0] + nx, start[1] + ny), _box(source), (end[0] + nx, end[1] + ny))
        b = _exit_point((end[0] + nx, end[1] + ny), _box(target), (start[0] + nx, start[1] + ny))
        mid = (a[0] + (b[0] - a[0]) * 0.45 + nx * 1.6, a[1] + (b[1] - a[1]) * 0.45 + ny * 1.6)
        parts += [
            f'<line x1="{a[0]:.1f}" y1="{a[1]:.1f}" x2="{b[0]:.1f}" y2="{b[1]:.1f}" '
            'stroke="currentColor" stroke-width="1.3" marker-end="url(#ddp-arrow)"/>',
            f'<circle cx="{mid[0]:.1f}" cy="{mid[1]:.1f}" r="9" fill="{BACKGROUND}" '
            'stroke="currentColor" stroke-width="1"/>',
            f'<text x="{mid[0]:.1f}" y="{mid[1] + 3.8:.1f}" text-anchor="middle" '
            f'font-size="11" font-family="sans-serif" fill="currentColor">{number}</text>',
        ]
    for name, (x, y) in places.items():
        half_w, half_h = _box(name)
        dash = ' stroke-dasharray="4 3"' if name in pseudo else ""
        parts += [
            f'<rect x="{x - half_w:.1f}" y="{y - half_h:.1f}" width="{2 * half_w:.1f}" '
            f'height="{2 * half_h:.1f}" rx="8" fill="{BACKGROUND}" '
            f'stroke="currentColor" stroke-width="1.5"{dash}/>',
            f'<text x="{x:.1f}" y="{y + 4.5:.1f}" text-anchor="middle" font-size="13" '
            f'font-family="monospace" fill="currentColor">{escape(name)}</text>',
        ]
    parts.append("</svg>")
    return "\n".join(parts)
