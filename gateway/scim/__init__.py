"""SCIM 2.0 service provider (RFC 7643 schemas, RFC 7644 protocol) that Okta provisions into.

    schema.py     the User, Group and Enterprise User schemas; discovery documents
    filter.py     the RFC 7644 3.4.2.2 filter and PATCH-path parser and evaluator (pure)
    resources.py  request bodies -> stored attributes, stored -> returned (with projection)
    patch.py      RFC 7644 3.5.2 PATCH operations on one resource (pure)
    repository.py resources in the gateway store: optimistic updates, indexes, paging
    effects.py    what provisioning does to sessions and the registry (SPEC 6)
    secret.py     the bearer secret per identity provider, stored hashed
    auth_limit.py the cap on requests refused for their secret or IdP, per client network
    routes.py     the HTTP surface under /populations/<idp-id>/scim/v2

`ScimError` is the one error of the package; `routes.py` turns it (and any other
`GatewayError`) into the RFC 7644 3.12 error document. For the admin API:
`ScimRepository.provisioned` lists an IdP's users and groups as SCIM returns them, and
`ScimSecrets.regenerate` (on `Runtime.scim_secrets`) makes a new secret.
"""

from __future__ import annotations

from gateway.errors import GatewayError

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_USER_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


class ScimError(GatewayError):
    """A SCIM request failed: `status` and, where RFC 7644 3.12 defines one, `scim_type`
    (invalidFilter, invalidSyntax, invalidValue, uniqueness, mutability, noTarget, invalidPath,
    tooMany, invalidVers)."""

    error = "scim_error"
    status = 400

    def __init__(self, status: int, detail: str, scim_type: str = ""):
        super().__init__(detail, status=status)
        self.scim_type = scim_type
