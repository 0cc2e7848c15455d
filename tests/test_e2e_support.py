"""The real-cluster helper itself: a task enqueued here runs in the child, on this test DB."""

from __future__ import annotations

import time

import pytest
from django_q.tasks import async_task, result

from tests.e2e_support import qcluster  # noqa: F401  (the fixture)


@pytest.mark.e2e
def test_a_real_cluster_runs_tasks_on_the_test_database(qcluster):  # noqa: F811
    cluster = qcluster()
    task_id = async_task("math.floor", 2.5)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and result(task_id) is None:
        time.sleep(0.1)
    assert result(task_id) == 2
    cluster.kill()
    assert cluster.process.poll() is not None
