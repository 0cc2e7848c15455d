"""JSON decoding with a nesting limit, for answers that come from the network.

``json.loads`` recurses once per ``[`` or ``{``, so a hostile or broken answer such as
``[[[[…`` raises ``RecursionError`` (not ``ValueError``) and takes the caller down with it.
The nesting depth is measured first with a linear scan that skips string literals (also
one left open, which ``json.loads`` then refuses), and anything deeper than ``MAX_DEPTH``
is refused. Size is bounded before this point: the client never reads more than
``MAX_RESPONSE_BYTES`` of an answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.views.decorators.debug import sensitive_variables

#: Deepest nesting accepted. Datadog's answers are a few levels deep (JSON:API documents
#: reach five or six); 32 leaves ample room and stays far from the interpreter's limit.
MAX_DEPTH = 32

#: A string literal, or one left open up to the end: every quote that starts a scan ends
#: one, so the text is read once (a pattern that can fail rescans from each later quote,
#: quadratic on an open string of escaped quotes). Possessive: nothing to backtrack.
_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


@sensitive_variables()  # the text is a token or key answer
def loads(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Decode UTF-8 JSON; ``ValueError`` when it is malformed or nested too deeply."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    depth = 0
    for bracket in _BRACKET.finditer(_STRING.sub('""', text)):
        if bracket.group() in "[{":
            depth += 1
            if depth > max_depth:
                raise ValueError(f"JSON nested deeper than {max_depth} levels.")
        else:
            depth -= 1
    return json.loads(text)
