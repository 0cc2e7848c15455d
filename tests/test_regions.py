"""The site table and the validation of ``domain``/``site`` input (AT-01, AT-02, AT-04, AT-07)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from django_datadog_partner import regions
from django_datadog_partner.exceptions import InvalidSiteError

# (name, domain, web host, api host, logs host) straight from datadog-reference.md §4.
SITE_TABLE = [
    ("US1", "datadoghq.com", "app.datadoghq.com", "api.datadoghq.com",
     "http-intake.logs.datadoghq.com"),
    ("US3", "us3.datadoghq.com", "us3.datadoghq.com", "api.us3.datadoghq.com",
     "http-intake.logs.us3.datadoghq.com"),
    ("US5", "us5.datadoghq.com", "us5.datadoghq.com", "api.us5.datadoghq.com",
     "http-intake.logs.us5.datadoghq.com"),
    ("EU1", "datadoghq.eu", "app.datadoghq.eu", "api.datadoghq.eu",
     "http-intake.logs.datadoghq.eu"),
    ("AP1", "ap1.datadoghq.com", "ap1.datadoghq.com", "api.ap1.datadoghq.com",
     "http-intake.logs.ap1.datadoghq.com"),
    ("AP2", "ap2.datadoghq.com", "ap2.datadoghq.com", "api.ap2.datadoghq.com",
     "http-intake.logs.ap2.datadoghq.com"),
    ("UK1", "uk1.datadoghq.com", "uk1.datadoghq.com", "api.uk1.datadoghq.com",
     "http-intake.logs.uk1.datadoghq.com"),
    ("US1-FED", "ddog-gov.com", "app.ddog-gov.com", "api.ddog-gov.com",
     "http-intake.logs.ddog-gov.com"),
    ("US2-FED", "us2.ddog-gov.com", "us2.ddog-gov.com", "api.us2.ddog-gov.com",
     "http-intake.logs.us2.ddog-gov.com"),
]  # fmt: skip

SANDBOX = {
    "sandbox.test": {
        "web_url": "http://127.0.0.1:8123/sandbox",
        "api_url": "http://127.0.0.1:8123/sandbox",
        "logs_url": "http://127.0.0.1:8123/sandbox",
    }
}


def test_table_has_exactly_the_nine_sites():
    assert [s.name for s in regions.DATADOG_SITES] == [row[0] for row in SITE_TABLE]


@pytest.mark.parametrize(("name", "domain", "web", "api", "logs"), SITE_TABLE)
def test_every_site_has_its_hosts(name, domain, web, api, logs):
    site = regions.validate_domain(domain)
    assert (site.name, site.domain) == (name, domain)
    assert site.web_url == f"https://{web}"
    assert site.api_url == f"https://{api}"
    assert site.logs_url == f"https://{logs}"


@pytest.mark.parametrize("domain", [row[1] for row in SITE_TABLE])
@pytest.mark.parametrize("spelling", ["{}", " {} ", "{}\n", "{upper}"])
def test_domain_is_trimmed_and_lower_cased(domain, spelling):
    raw = spelling.format(domain, upper=domain.upper())
    assert regions.validate_domain(raw).domain == domain


@pytest.mark.parametrize(("name", "domain", "web", "api", "logs"), SITE_TABLE)
@pytest.mark.parametrize("form", ["{}", "https://{}", "https://{}/", "{}/", "HTTPS://{upper}"])
def test_every_web_host_is_accepted_in_each_form(name, domain, web, api, logs, form):
    result = regions.validate_site(form.format(web, upper=web.upper()))
    assert result.url == f"https://{web}"
    if web == "app.datadoghq.com":
        assert result.implied_domain is None  # US1's host says nothing about the region
    else:
        assert result.implied_domain == domain


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        ("acme.datadoghq.com", "https://acme.datadoghq.com"),
        ("https://acme.datadoghq.com/", "https://acme.datadoghq.com"),
        ("ACME-corp.datadoghq.eu", "https://acme-corp.datadoghq.eu"),
        ("agency1.ddog-gov.com", "https://agency1.ddog-gov.com"),
        ("a.datadoghq.com", "https://a.datadoghq.com"),
        ("x" * 63 + ".datadoghq.com", "https://" + "x" * 63 + ".datadoghq.com"),
    ],
)
def test_custom_subdomains_say_nothing_about_the_region(raw, url):
    result = regions.validate_site(raw)
    assert result.url == url
    assert result.implied_domain is None


HOSTILE_SITES = [
    # other schemes
    "http://app.datadoghq.com", "javascript:alert(1)", "data:text/html,<script>",
    "ftp://app.datadoghq.com", "//evil.example", "//app.datadoghq.com", "file:///etc/passwd",
    "https:/app.datadoghq.com", "https:app.datadoghq.com", "wss://app.datadoghq.com",
    # userinfo
    "https://app.datadoghq.com@evil.example", "https://user:pw@app.datadoghq.com",
    "evil.example@app.datadoghq.com",
    # suffix tricks and foreign hosts
    "datadoghq.com.evil.example", "evil-datadoghq.com", "evildatadoghq.com",
    "evil.example/.datadoghq.com", "app.datadoghq.com.evil.example", "evil.example",
    "datadoghq.com", "datadoghq.eu", "ddog-gov.com", "app.datadoghq.co",
    "acme.datadoghq.io", "acme.ddog-gov.eu",
    # ports, paths, queries, fragments, backslashes
    "https://app.datadoghq.com:443", "app.datadoghq.com:8443",
    "https://app.datadoghq.com/oauth2/v1/authorize", "https://app.datadoghq.com//",
    "https://app.datadoghq.com/?next=evil", "https://app.datadoghq.com#frag",
    "https://app.datadoghq.com\\@evil.example", "app.datadoghq.com\\evil",
    "https://app.datadoghq.com%2F@evil.example", "app%2edatadoghq.com",
    # IP literals
    "127.0.0.1", "https://127.0.0.1", "169.254.169.254", "[::1]", "https://[::1]/",
    "2130706433", "0x7f.0.0.1", "localhost", "10.0.0.1",
    # trailing dots, IDN, punycode
    "app.datadoghq.com.", "acme.datadoghq.com.", "аpp.datadoghq.com", "xn--pp-8cd.datadoghq.com",
    "acme.datadoghq.com\u200b", "ａpp.datadoghq.com",
    # multi-label, reserved and site-like labels
    "a.b.datadoghq.com", "evil.acme.datadoghq.com", "api.datadoghq.com",
    "http-intake.datadoghq.com", "api.datadoghq.eu", "www.datadoghq.com", "us2.datadoghq.com",
    "us3.datadoghq.eu", "eu1.datadoghq.com", "app.us3.datadoghq.com", "-acme.datadoghq.com",
    "acme-.datadoghq.com", "ac_me.datadoghq.com", "x" * 64 + ".datadoghq.com",
    # whitespace, control characters, emptiness, size
    " app.datadoghq.com", "app.datadoghq.com ", "app.datadoghq.com\r\nX-Injected: 1",
    "app.datadoghq.com\x00", "app.\tdatadoghq.com", "", "https://", "/", "a" * 10_000,
    "https://" + "a" * 250 + ".datadoghq.com",
]  # fmt: skip


def test_the_hostile_site_corpus_is_large():
    assert len(HOSTILE_SITES) >= 60
    assert len(set(HOSTILE_SITES)) == len(HOSTILE_SITES)


@pytest.mark.parametrize("raw", HOSTILE_SITES)
def test_hostile_site_is_refused_with_a_reason(raw):
    with pytest.raises(InvalidSiteError) as excinfo:
        regions.validate_site(raw)
    reason = excinfo.value.reason
    assert reason
    assert "\n" not in reason
    assert len(reason) < 200


HOSTILE_DOMAINS = [
    "evil.example", "datadoghq.com.evil.example", "evil.example#", "127.0.0.1",
    "169.254.169.254", "api.datadoghq.com", "app.datadoghq.com", "app.datadoghq.eu",
    "https://datadoghq.com", "datadoghq.com/", "datadoghq.com.", "datadoghq.co",
    "xn--datadoghq-xyz.com", "dаtadoghq.com", "datadoghq%2ecom", "datadoghq.com@evil.example",
    "datadoghq.com\\evil", "datadoghq.com\x00", "data doghq.com", "us4.datadoghq.com",
    "eu.datadoghq.com", "acme.datadoghq.com", "us2.datadoghq.com", "localhost", "", "   ",
    "a" * 300, "sandbox.test",
]  # fmt: skip


@pytest.mark.parametrize("raw", HOSTILE_DOMAINS)
def test_hostile_domain_is_refused(raw):
    with pytest.raises(InvalidSiteError) as excinfo:
        regions.validate_domain(raw)
    assert excinfo.value.reason


def test_missing_values_have_their_own_reason():
    with pytest.raises(InvalidSiteError, match="missing"):
        regions.validate_domain(None)
    with pytest.raises(InvalidSiteError, match="missing"):
        regions.validate_site(None)


@pytest.mark.parametrize(
    ("site", "domain"),
    [
        ("app.datadoghq.eu", "us5.datadoghq.com"),
        ("us3.datadoghq.com", "datadoghq.com"),
        ("app.ddog-gov.com", "us2.ddog-gov.com"),
        ("ap2.datadoghq.com", "ap1.datadoghq.com"),
    ],
)
def test_region_specific_web_host_must_agree_with_domain(site, domain):
    with pytest.raises(InvalidSiteError, match="belongs to"):
        regions.check_region_agreement(regions.validate_site(site), regions.validate_domain(domain))


@pytest.mark.parametrize("site", ["acme.datadoghq.com", "app.datadoghq.com"])
@pytest.mark.parametrize("domain", [row[1] for row in SITE_TABLE])
def test_domain_decides_for_custom_subdomains_and_us1(site, domain):
    # pup#550: an org on US3 authorises at mycompany.datadoghq.com; the token goes to US3.
    regions.check_region_agreement(regions.validate_site(site), regions.validate_domain(domain))


def test_extra_sites_are_matched_exactly_first(partner_settings):
    partner_settings(EXTRA_SITES=SANDBOX)
    result = regions.validate_site("http://127.0.0.1:8123/sandbox")
    assert result == regions.WebSite("http://127.0.0.1:8123/sandbox", "sandbox.test")
    assert regions.validate_site("http://127.0.0.1:8123/sandbox/").url == result.url
    assert regions.validate_domain("sandbox.test").api_url == "http://127.0.0.1:8123/sandbox"
    for near_miss in ["http://127.0.0.1:8123/sandbox//", "http://127.0.0.1:8123/sandbox/x",
                      "http://127.0.0.1:8123", "http://127.0.0.1:8124/sandbox"]:  # fmt: skip
        with pytest.raises(InvalidSiteError):
            regions.validate_site(near_miss)


def test_transport_allowlist_holds_only_table_origins(partner_settings):
    partner_settings(EXTRA_SITES=SANDBOX)
    origins = regions.allowed_origins()
    assert "https://api.datadoghq.eu" in origins
    assert "https://http-intake.logs.us5.datadoghq.com" in origins
    assert "http://127.0.0.1:8123" in origins
    assert "https://app.datadoghq.com" not in origins  # the web host never gets a secret


KNOWN_HOSTS = {
    host for site in regions.DATADOG_SITES for host in (site.web_host, site.domain)
}  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.from_regex(r"(https?://)?[a-z0-9.\-@:/?#%\\\[\]]{0,40}\.datadoghq\.(com|eu)/?"),
    )
)
def test_validators_never_crash_and_only_yield_datadog_hosts(raw):
    """AT-04: any string is either refused cleanly or maps onto a Datadog host."""
    try:
        result = regions.validate_site(raw)
    except InvalidSiteError:
        pass
    else:
        host = result.host
        assert host in KNOWN_HOSTS or any(
            host.endswith("." + parent) and host.count(".") == parent.count(".") + 1
            for parent in regions.CUSTOM_SUBDOMAIN_PARENTS
        )
        assert result.url == f"https://{host}"
    try:
        site = regions.validate_domain(raw)
    except InvalidSiteError:
        pass
    else:
        assert site in regions.DATADOG_SITES


@pytest.mark.parametrize(
    ("site", "domain", "belongs"),
    [
        ("app.datadoghq.com", "datadoghq.com", True),
        ("app.datadoghq.com", "datadoghq.eu", False),  # where users switch region: US1 only
        ("app.datadoghq.com", "us5.datadoghq.com", False),
        ("acme.datadoghq.com", "us3.datadoghq.com", True),  # says nothing more
        ("acme.datadoghq.com", "datadoghq.eu", False),
        ("acme.datadoghq.eu", "datadoghq.eu", True),
        ("acme.ddog-gov.com", "us2.ddog-gov.com", True),
        ("acme.ddog-gov.com", "datadoghq.com", False),
        ("app.datadoghq.eu", "datadoghq.eu", True),
        ("us3.datadoghq.com", "us5.datadoghq.com", False),
    ],
)
def test_a_site_belongs_to_its_own_region_only(site, domain, belongs):
    web_site, region = regions.validate_site(site), regions.validate_domain(domain)
    assert regions.belongs_to_region(web_site, region) is belongs
    expected = web_site.url if belongs else region.web_url
    assert regions.web_url_in_region(region, None, web_site) == expected


def test_the_first_site_in_the_region_wins():
    eu = regions.validate_domain("datadoghq.eu")
    custom, regional = (
        regions.validate_site("acme.datadoghq.eu"),
        regions.validate_site("app.datadoghq.eu"),
    )
    assert regions.web_url_in_region(eu, custom, regional) == "https://acme.datadoghq.eu"
    assert regions.web_url_in_region(eu, regions.validate_site("us3.datadoghq.com"), regional) == (
        "https://app.datadoghq.eu"
    )
    assert regions.web_url_in_region(eu) == "https://app.datadoghq.eu"
