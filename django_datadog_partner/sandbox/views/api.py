"""The machine endpoints (token, revoke, marketplace key, intake): thin wrappers of the engine."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from .. import SANDBOX_DOMAIN, engine
from ..protocol import Answer, api_errors
from ..sites import this_site


@csrf_exempt  # Machines post here with API keys and client secrets, never with cookies.
def machine_endpoint(request: HttpRequest, endpoint: str, **params: str) -> HttpResponse:
    """``endpoint`` is the route (``{name}`` placeholders filled from the URL)."""
    site = this_site(request)
    try:
        body = request.body
    except RequestDataTooBig:
        return to_response(api_errors(413, "Payload too large"))
    answer = engine.handle(
        request.method or "GET",
        endpoint.format(**params),
        dict(request.headers),
        body,
        request.GET.dict(),
        domain=site.domain if site else SANDBOX_DOMAIN,
    )
    return to_response(answer)


def to_response(answer: Answer) -> HttpResponse:
    response = HttpResponse(answer.body, status=answer.status)
    for name, value in answer.headers.items():
        response[name] = value
    return response
