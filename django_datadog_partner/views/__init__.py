"""Pages of the connect flow and of a user's connections (``flow``, ``connection_pages``),
and what they share (``pages``). Thin: operations live in ``connections``; these views
check input and permissions and translate outcomes to pages. Every page is sent with
``Cache-Control: no-store``, a strict ``Referrer-Policy`` and ``X-Frame-Options: DENY``,
its 404 included; failures get a page that says what happened and what to do, never a
stack trace.
"""

from .connection_pages import (
    connection_detail,
    connection_list,
    create_api_key,
    disconnect,
    reconnect,
)
from .flow import callback, connected, error, failure_redirect, onboarding, site_picker
from .pages import (
    FAILURE_KEY,
    MAX_LENGTHS,
    MAX_QUERY_STRING,
    NOTICE_KEY,
    RESULT_KEY,
    BadParameter,
    failure_page,
    misconfigured,
    not_found,
    query,
    single,
)

__all__ = [
    "FAILURE_KEY",
    "MAX_LENGTHS",
    "MAX_QUERY_STRING",
    "NOTICE_KEY",
    "RESULT_KEY",
    "BadParameter",
    "callback",
    "connected",
    "connection_detail",
    "connection_list",
    "create_api_key",
    "disconnect",
    "error",
    "failure_page",
    "failure_redirect",
    "misconfigured",
    "not_found",
    "onboarding",
    "query",
    "reconnect",
    "single",
    "site_picker",
]
