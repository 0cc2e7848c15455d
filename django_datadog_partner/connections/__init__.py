"""Connection operations: the only code that changes a connection's tokens.

Views, admin, management commands and tasks all call these functions.
"""

from ..alarms import raise_alarm
from ..status import mark_broken, set_status
from .api_keys import APIKeyOutcome, create_api_key
from .authorization import (
    consume_authorization,
    purge_expired_authorization_requests,
    start_authorization,
)
from .connect import connect, reconnect
from .health import HealthReport, check_health, run_scheduled_health_checks
from .keyrotation import rotate_keys, secrets_on_retired_keys
from .results import ConnectFailed, ConnectOutcome
from .revoke import RevokeOutcome, retry_pending_revocations, revoke
from .tokens import access_token, refresh

__all__ = [
    "APIKeyOutcome",
    "ConnectFailed",
    "ConnectOutcome",
    "HealthReport",
    "RevokeOutcome",
    "access_token",
    "check_health",
    "connect",
    "consume_authorization",
    "create_api_key",
    "mark_broken",
    "purge_expired_authorization_requests",
    "raise_alarm",
    "reconnect",
    "refresh",
    "retry_pending_revocations",
    "revoke",
    "rotate_keys",
    "run_scheduled_health_checks",
    "secrets_on_retired_keys",
    "set_status",
    "start_authorization",
]
