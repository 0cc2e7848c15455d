"""Connection operations: the only code that changes a connection's tokens or status.

Views, admin, management commands and tasks all call these functions.
"""

from .status import mark_broken, raise_alarm, set_status

__all__ = ["mark_broken", "raise_alarm", "set_status"]
