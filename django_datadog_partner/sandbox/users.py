"""``GET /api/v2/users/{user_id}/orgs``: a user and its organisation, as Datadog answers it.

Datadog API v2, operation ``ListUserOrganizations``: any valid OAuth token (no scope,
permission ``OPEN``); the answer is a ``UserResponse`` whose ``data.relationships.org``
is the user's organisation, described in ``included``. A user of another organisation
than the token's is not found.
"""

from __future__ import annotations

from .oauth_server import bearer_token
from .protocol import Answer, Context, Request, answer, api_errors


def user_orgs(request: Request, ctx: Context) -> Answer:
    token = bearer_token(request, ctx)
    user = ctx.store.find_user(request.params.get("user_id", ""))
    if user is None or user.org_id != token.org.id:
        return api_errors(404, "Not found")
    org = ctx.store.get_org(user.org_id)
    reference = {"type": "orgs", "id": org.public_id}
    data = {
        "type": "users",
        "id": user.public_id,
        "attributes": {"name": user.name, "disabled": False, "status": "Active"},
        "relationships": {"org": {"data": reference}, "other_orgs": {"data": []}},
    }
    included = {
        **reference,
        "attributes": {"name": org.name, "public_id": org.public_id.replace("-", "")[:12]},
    }
    return answer(200, {"data": data, "included": [included]})
