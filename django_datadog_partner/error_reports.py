"""An exception reporter filter that keeps secrets out of error reports, ``DEBUG`` or not.

Django's ``SafeExceptionReporterFilter`` hides the variables ``sensitive_variables``
names, but only while ``DEBUG`` is off. This filter always does, and hides every local of
the HTTP, crypto and JSON libraries' frames, whose locals hold request headers, bodies,
keys and token answers. The package's views install it on their requests; a project can
make it the default with ``DEFAULT_EXCEPTION_REPORTER_FILTER`` (docs/explanation/security.rst,
"Error reports").
"""

from __future__ import annotations

from collections.abc import ItemsView
from types import FrameType
from typing import Any

from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter

#: Modules whose frames never show their locals.
LIBRARIES = (
    "requests",
    "urllib3",
    "responses",
    "oauthlib",
    "cryptography",
    "http.client",
    "ssl",
    "socket",
    "json",
)


class ReporterFilter(SafeExceptionReporterFilter):
    """``SafeExceptionReporterFilter``, active with ``DEBUG`` on too, and blind to the
    locals of ``LIBRARIES``."""

    def is_active(self, request: HttpRequest | None) -> bool:
        return True

    def get_traceback_frame_variables(
        self, request: HttpRequest | None, tb_frame: FrameType
    ) -> ItemsView[str, Any]:
        if is_library_frame(tb_frame):
            return dict.fromkeys(tb_frame.f_locals, self.cleansed_substitute).items()
        return super().get_traceback_frame_variables(request, tb_frame)


def is_library_frame(frame: FrameType) -> bool:
    module = str(frame.f_globals.get("__name__", ""))
    return any(module == name or module.startswith(name + ".") for name in LIBRARIES)


#: The instance the package's views put on ``request.exception_reporter_filter``.
REPORTER_FILTER = ReporterFilter()
