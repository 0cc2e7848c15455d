"""``datadog_partner_listing``: metadata.csv, sample logs as the intake receives them, the
uninstall text and registered URLs checked against the settings, JSON output."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError
from openapi_core.contrib.requests import RequestsOpenAPIRequest

from django_datadog_partner import checks, delivery, tracking
from django_datadog_partner.metrics_metadata import COLUMNS
from tests.test_delivery_batches import spec

pytestmark = pytest.mark.django_db

ACME = {"BASE_URL": "https://app.acme.com", "SOURCE_TYPE_NAME": "acme"}
METRICS = {
    "acme.orders.paid": {
        "type": "count", "unit": "transaction", "interval": 60, "orientation": 1,
        "description": "Orders paid in the interval.", "short_name": "paid",
    },
    "acme.queue.latency": {
        "type": "gauge", "unit": "second", "description": "Oldest job's wait.",
        "orientation": -1, "curated_metric": ["cpu"],
    },
}  # fmt: skip
SAMPLE: dict[str, Any] = {
    "message": "Order A-1 paid",
    "status": "warning",
    "tags": ["env:prod", "Team:Shop"],
    "attributes": {"order": {"id": 7}, "amount": 12.5},
    "service": "Checkout",
    "hostname": "web-1",
}


@pytest.fixture
def listing(partner_settings: Any) -> Callable[..., tuple[dict[str, Any], str]]:
    """The command's JSON output and stderr, with ``partner`` over the Acme settings."""

    def run(*args: str, **partner: Any) -> tuple[dict[str, Any], str]:
        out, err = io.StringIO(), io.StringIO()
        with partner_settings(**{**ACME, **partner}):
            call_command("datadog_partner_listing", "--json", *args, stdout=out, stderr=err)
        return json.loads(out.getvalue()), err.getvalue()

    return run


def test_metadata_csv_lists_the_heartbeat_and_the_declared_metrics(tmp_path: Path, listing):
    result, err = listing("--output-dir", str(tmp_path), METRICS=METRICS)
    assert err == "" and result["warnings"] == []
    assert result["files"] == [str(tmp_path / "metadata.csv")]  # no SAMPLE_LOGS: no samples
    text = (tmp_path / "metadata.csv").read_text()
    assert text.splitlines()[0] == ",".join(COLUMNS)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["metric_name"] for row in rows] == [
        "acme.heartbeat", "acme.orders.paid", "acme.queue.latency",
    ]  # fmt: skip
    heartbeat, paid, latency = rows
    assert heartbeat["metric_type"] == "gauge" and "300 seconds" in heartbeat["description"]
    assert paid == {
        "metric_name": "acme.orders.paid", "metric_type": "count", "interval": "60",
        "unit_name": "transaction", "per_unit_name": "",
        "description": "Orders paid in the interval.", "orientation": "1",
        "integration": "acme", "short_name": "paid", "curated_metric": "",
    }  # fmt: skip
    assert latency["orientation"] == "-1" and latency["curated_metric"] == "cpu"
    assert result["metrics"] == rows


def test_a_declared_heartbeat_keeps_its_declaration_and_no_heartbeat_is_warned(listing):
    declared = {"acme.alive": {"type": "gauge", "description": "Ours."}}
    result, _ = listing(METRICS=declared, HEARTBEAT_METRIC="acme.alive")
    assert [(r["metric_name"], r["description"]) for r in result["metrics"]] == [
        ("acme.alive", "Ours.")
    ]
    result, _ = listing(METRICS=METRICS, HEARTBEAT_METRIC="")
    assert any("must name a metric check" in w for w in result["warnings"])
    result, _ = listing(HEARTBEAT_METRIC="acme heartbeat")
    assert any("'acme heartbeat'" in w and "not a metric name" in w for w in result["warnings"])


@pytest.mark.parametrize(
    ("entry", "warning"),
    [
        ({"type": "distribution", "description": "d"}, "type must be one of"),
        ({"unit": "millisecond", "per_unit": "second", "description": "d"}, "use 'fraction'"),
        ({"description": "a | b"}, "without '|'"),
        ({"description": "é"}, "must be ASCII"),
        ({"description": "x" * 401}, "exceeds 400"),
        ({}, "add a description"),
        ({"orientation": 2, "description": "d"}, "orientation is 1"),
        ({"interval": "10s", "description": "d"}, "whole number"),
        ({"units": "byte", "description": "d"}, "unknown keys ['units']"),
        ({"unit": "parsec", "description": "d"}, "check that 'parsec'"),
        ({"curated_metric": "disk", "description": "d"}, "'cpu' and 'memory' only"),
    ],
)
def test_values_datadogs_review_refuses_are_warned_by_the_command_and_check_w030(
    entry, warning, listing, partner_settings
):
    result, _ = listing(METRICS={"acme.x": entry})
    assert [w for w in result["warnings"] if warning in w], result["warnings"]
    with partner_settings(**ACME, METRICS={"acme.x": entry}):
        found = checks.check_listing_declarations()
    assert [m.id for m in found if warning in m.msg] == ["datadog_partner.W030"]


def test_names_and_prefixes_are_checked(listing):
    result, _ = listing(METRICS={"1bad": {"description": "d"}, "other.ok": {"description": "d"}})
    assert any("'1bad'" in w and "not a metric name" in w for w in result["warnings"])
    assert any("do not share one prefix (1bad, acme, other)" in w for w in result["warnings"])


def test_metrics_sent_but_not_declared_are_warned(acme, listing):
    tracking.send_metric(acme, "acme.orders.paid", 1)
    tracking.send_metric(acme, "acme.refunds", 2)
    result, _ = listing(METRICS=METRICS)
    assert (
        "Sent but not declared in METRICS (so not in metadata.csv): acme.refunds."
        in (result["warnings"])
    )


def test_sample_logs_are_what_the_logs_intake_receives(
    tmp_path: Path, fake, acme, listing, partner_settings
):
    connection = fake.connection(acme)
    with partner_settings(**ACME):
        tracking.send_log(connection, **SAMPLE)
        delivery.drain()
    (received,) = fake.logs(connection)

    result, err = listing("--output-dir", str(tmp_path), SAMPLE_LOGS=[SAMPLE])
    assert err == "" and str(tmp_path / "sample_logs.json") in result["files"]
    body = (tmp_path / "sample_logs.json").read_bytes()
    (sample,) = json.loads(body)
    assert result["sample_logs"] == [sample]
    assert set(sample) == set(received)
    varying = {"timestamp", "outbox_id"}
    assert {k: v for k, v in sample.items() if k not in varying} == {
        k: v for k, v in received.items() if k not in varying
    }
    assert sample["ddsource"] == "acme" and sample["service"] == "checkout"
    assert sample["outbox_id"] == 1 and sample["ddtags"] == "env:prod,team:shop"

    request = requests.Request(
        "POST", "https://http-intake.logs.datadoghq.com/api/v2/logs", data=body,
        headers={"Content-Type": "application/json", "DD-API-KEY": "k" * 32},
    ).prepare()  # fmt: skip
    spec("datadog-logs-intake.yaml").validate_request(RequestsOpenAPIRequest(request))


@pytest.mark.parametrize(
    ("sample", "warning"),
    [
        ({"message": "m", "attributes": {"status": "x"}}, "reserved log attribute"),
        ({"status": "info"}, "with a 'message'"),
        ({"message": "m", "level": "info"}, "unknown keys ['level']"),
        ({"message": "m", "attributes": {"ids": [1, 2]}}, "holds an array"),
    ],
)
def test_samples_send_log_would_refuse_are_warned_by_the_command_and_check_w031(
    sample, warning, listing, partner_settings
):
    result, _ = listing(SAMPLE_LOGS=[sample])
    assert [w for w in result["warnings"] if warning in w and "SAMPLE_LOGS[0]" in w]
    with partner_settings(**ACME, SAMPLE_LOGS=[sample]):
        found = checks.check_listing_declarations()
    assert [m.id for m in found] == ["datadog_partner.W031"]


def test_the_uninstall_text_is_checked_against_datadogs_wording(listing):
    result, _ = listing()
    assert result["warnings"] == [] and "OAuth Client API Key" in result["uninstall_text"]
    own = "Uninstall {product} from the tile. Help: http://localhost:8000/help"
    result, _ = listing("--product", "Shop", UNINSTALL_TEXT=own)
    assert result["uninstall_text"].startswith("Uninstall Shop from the tile.")
    joined = "\n".join(result["warnings"])
    assert "previous authorizations are revoked" in joined
    assert "disable the integration's API keys" in joined
    assert '("OAuth Client API Key")' in joined
    assert "The uninstall text links http://localhost:8000/help is not https" in joined
    assert "The uninstall text links localhost is a local or test host" in joined


def test_base_url_must_be_a_host_django_accepts(listing, settings):
    # Through the settings fixture, as the listing's partner_settings are: mixing it with
    # override_settings blocks restores them out of order.
    settings.ALLOWED_HOSTS = ["app.acme.com"]
    assert listing()[0]["warnings"] == []
    assert listing(BASE_URL="https://app.acme.com:8443")[0]["warnings"] == []
    settings.ALLOWED_HOSTS = [".other.com"]
    (warning,) = listing()[0]["warnings"]
    assert "ALLOWED_HOSTS does not accept app.acme.com" in warning


def test_json_output_names_the_registration_and_strict_fails_after_printing(
    tmp_path: Path, listing, partner_settings
):
    result, _ = listing()
    assert result["onboarding_url"] == "https://app.acme.com/datadog/connect/"
    assert result["redirect_uri"] == "https://app.acme.com/datadog/callback/"
    assert result["scopes"] == ["api_keys_write"] and result["files"] == []
    out = io.StringIO()
    with (
        partner_settings(**{**ACME, "BASE_URL": "http://localhost:8000"}),
        pytest.raises(CommandError, match=r"2 warning\(s\)"),
    ):
        call_command("datadog_partner_listing", "--json", "--strict", stdout=out)
    assert len(json.loads(out.getvalue())["warnings"]) == 2


def test_text_output_says_which_files_were_written(tmp_path: Path, partner_settings):
    out = io.StringIO()
    with partner_settings(**ACME, METRICS=METRICS, SAMPLE_LOGS=[SAMPLE]):
        call_command("datadog_partner_listing", "--output-dir", str(tmp_path), stdout=out)
    text = out.getvalue()
    assert "metadata.csv (acme.heartbeat, acme.orders.paid, acme.queue.latency)" in text
    assert f"Wrote {tmp_path / 'metadata.csv'}" in text
    assert f"Wrote {tmp_path / 'sample_logs.json'}" in text
