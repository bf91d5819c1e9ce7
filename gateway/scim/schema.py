"""The schemas this service provider serves, and its discovery documents (RFC 7643, RFC 7644 4).

One definition of every attribute (type, multi-valuedness, mutability, `returned`, case
exactness) drives everything that depends on it: input validation, PATCH, filters (case-exact
or not, which operators apply), attribute projection, and the `/Schemas` documents, so what the
server says about itself is what it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gateway.scim import ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA

AttributeType = Literal[
    "string", "boolean", "decimal", "integer", "dateTime", "reference", "complex", "binary"
]
Mutability = Literal["readOnly", "readWrite", "immutable", "writeOnly"]
Returned = Literal["always", "never", "default", "request"]

MAX_RESULTS = 200  # the most resources one list answer holds (ServiceProviderConfig filter)

_SCHEMA_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"
_RESOURCE_TYPE_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
_CONFIG_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"


@dataclass(frozen=True, slots=True)
class Attribute:
    """One attribute definition (RFC 7643 2.2 and 7)."""

    name: str
    type: AttributeType = "string"
    multi_valued: bool = False
    required: bool = False
    case_exact: bool = False
    mutability: Mutability = "readWrite"
    returned: Returned = "default"
    uniqueness: Literal["none", "server", "global"] = "none"
    sub_attributes: tuple[Attribute, ...] = ()
    canonical_values: tuple[str, ...] = ()
    reference_types: tuple[str, ...] = ()
    description: str = ""

    def sub(self, name: str) -> Attribute | None:
        """The sub-attribute called `name`; attribute names are case-insensitive (RFC 7643 2.1)."""
        folded = name.casefold()
        return next((a for a in self.sub_attributes if a.name.casefold() == folded), None)

    def to_json(self) -> dict[str, Any]:
        """The RFC 7643 7 representation."""
        document: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "multiValued": self.multi_valued,
            "description": self.description or self.name,
            "required": self.required,
            "caseExact": self.case_exact,
            "mutability": self.mutability,
            "returned": self.returned,
            "uniqueness": self.uniqueness,
        }
        if self.canonical_values:
            document["canonicalValues"] = list(self.canonical_values)
        if self.reference_types:
            document["referenceTypes"] = list(self.reference_types)
        if self.sub_attributes:
            document["subAttributes"] = [a.to_json() for a in self.sub_attributes]
        return document


@dataclass(frozen=True, slots=True)
class Schema:
    id: str
    name: str
    description: str
    attributes: tuple[Attribute, ...]

    def attribute(self, name: str) -> Attribute | None:
        folded = name.casefold()
        return next((a for a in self.attributes if a.name.casefold() == folded), None)


@dataclass(frozen=True, slots=True)
class ResourceType:
    name: str  # "User", "Group": also meta.resourceType
    endpoint: str  # "/Users"
    description: str
    schema: Schema
    extensions: tuple[Schema, ...] = ()

    def extension(self, urn: str) -> Schema | None:
        folded = urn.casefold()
        return next((s for s in self.extensions if s.id.casefold() == folded), None)

    def resolve(self, uri: str, name: str) -> tuple[Schema | None, Attribute] | None:
        """The attribute `[uri:]name` names, with the extension that holds it (None: core or
        common attribute); None when there is no such attribute."""
        if uri and uri.casefold() != self.schema.id.casefold():
            extension = self.extension(uri)
            found = extension.attribute(name) if extension is not None else None
            return (extension, found) if found is not None else None
        folded = name.casefold()
        common = next((a for a in COMMON_ATTRIBUTES if a.name.casefold() == folded), None)
        attribute = common or self.schema.attribute(name)
        return (None, attribute) if attribute is not None else None

    def schema_ids(self) -> list[str]:
        return [self.schema.id, *(s.id for s in self.extensions)]


def _string(name: str, **options: Any) -> Attribute:
    return Attribute(name, "string", **options)


def _multi(name: str, types: tuple[str, ...], value: Attribute | None = None) -> Attribute:
    """A multi-valued complex attribute of the common shape (RFC 7643 2.4)."""
    return Attribute(
        name,
        "complex",
        multi_valued=True,
        sub_attributes=(
            value or _string("value"),
            _string("display"),
            _string("type", canonical_values=types),
            Attribute("primary", "boolean"),
        ),
    )


# RFC 7643 3.1: attributes of every resource.
COMMON_ATTRIBUTES = (
    _string(
        "id",
        case_exact=True,
        mutability="readOnly",
        returned="always",
        uniqueness="server",
        description="Unique identifier for the resource, assigned by the service provider.",
    ),
    _string("externalId", case_exact=True, description="Identifier from the provisioning client."),
    Attribute(
        "meta",
        "complex",
        mutability="readOnly",
        sub_attributes=(
            _string("resourceType", case_exact=True, mutability="readOnly"),
            Attribute("created", "dateTime", mutability="readOnly"),
            Attribute("lastModified", "dateTime", mutability="readOnly"),
            Attribute("location", "reference", reference_types=("uri",), mutability="readOnly"),
            _string("version", case_exact=True, mutability="readOnly"),
        ),
    ),
)

# RFC 7643 4.1 and 8.7.1.
USER = Schema(
    id=USER_SCHEMA,
    name="User",
    description="User Account",
    attributes=(
        _string("userName", required=True, uniqueness="server"),
        Attribute(
            "name",
            "complex",
            sub_attributes=tuple(
                _string(n)
                for n in (
                    "formatted",
                    "familyName",
                    "givenName",
                    "middleName",
                    "honorificPrefix",
                    "honorificSuffix",
                )
            ),
        ),
        _string("displayName"),
        _string("nickName"),
        Attribute("profileUrl", "reference", reference_types=("external",)),
        _string("title"),
        _string("userType"),
        _string("preferredLanguage"),
        _string("locale"),
        _string("timezone"),
        Attribute("active", "boolean"),
        # Accepted (Okta sends a placeholder) and never stored nor returned.
        _string("password", mutability="writeOnly", returned="never"),
        _multi("emails", ("work", "home", "other")),
        _multi("phoneNumbers", ("work", "home", "mobile", "fax", "pager", "other")),
        _multi("ims", ("aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo")),
        _multi(
            "photos",
            ("photo", "thumbnail"),
            Attribute("value", "reference", reference_types=("external",)),
        ),
        Attribute(
            "addresses",
            "complex",
            multi_valued=True,
            sub_attributes=(
                *(
                    _string(n)
                    for n in (
                        "formatted",
                        "streetAddress",
                        "locality",
                        "region",
                        "postalCode",
                        "country",
                    )
                ),
                _string("type", canonical_values=("work", "home", "other")),
                Attribute("primary", "boolean"),
            ),
        ),
        # Derived from Group membership (RFC 7643 4.1.2): read-only.
        Attribute(
            "groups",
            "complex",
            multi_valued=True,
            mutability="readOnly",
            sub_attributes=(
                _string("value", mutability="readOnly"),
                Attribute(
                    "$ref", "reference", reference_types=("User", "Group"), mutability="readOnly"
                ),
                _string("display", mutability="readOnly"),
                _string("type", canonical_values=("direct", "indirect"), mutability="readOnly"),
            ),
        ),
        _multi("entitlements", ()),
        _multi("roles", ()),
        _multi("x509Certificates", (), Attribute("value", "binary")),
    ),
)

# RFC 7643 4.3.
ENTERPRISE_USER = Schema(
    id=ENTERPRISE_USER_SCHEMA,
    name="EnterpriseUser",
    description="Enterprise User",
    attributes=(
        *(
            _string(n)
            for n in ("employeeNumber", "costCenter", "organization", "division", "department")
        ),
        Attribute(
            "manager",
            "complex",
            sub_attributes=(
                _string("value"),
                Attribute("$ref", "reference", reference_types=("User",)),
                _string("displayName", mutability="readOnly"),
            ),
        ),
    ),
)

# RFC 7643 4.2. `display` is filled in by the server from the member's resource.
GROUP = Schema(
    id=GROUP_SCHEMA,
    name="Group",
    description="Group",
    attributes=(
        _string("displayName", required=True),
        Attribute(
            "members",
            "complex",
            multi_valued=True,
            sub_attributes=(
                _string("value", mutability="immutable"),
                Attribute(
                    "$ref",
                    "reference",
                    reference_types=("User", "Group"),
                    mutability="immutable",
                ),
                _string("type", canonical_values=("User", "Group"), mutability="immutable"),
                _string("display", mutability="readOnly"),
            ),
        ),
    ),
)

USERS = ResourceType("User", "/Users", "User Account", USER, (ENTERPRISE_USER,))
GROUPS = ResourceType("Group", "/Groups", "Group", GROUP)
RESOURCE_TYPES = (USERS, GROUPS)
SCHEMAS = (USER, GROUP, ENTERPRISE_USER)


def schema_document(schema: Schema, base_url: str) -> dict[str, Any]:
    """A `/Schemas` resource (RFC 7643 7)."""
    return {
        "schemas": [_SCHEMA_SCHEMA],
        "id": schema.id,
        "name": schema.name,
        "description": schema.description,
        "attributes": [a.to_json() for a in schema.attributes],
        "meta": {"resourceType": "Schema", "location": f"{base_url}/Schemas/{schema.id}"},
    }


def resource_type_document(resource_type: ResourceType, base_url: str) -> dict[str, Any]:
    """A `/ResourceTypes` resource (RFC 7643 6)."""
    return {
        "schemas": [_RESOURCE_TYPE_SCHEMA],
        "id": resource_type.name,
        "name": resource_type.name,
        "endpoint": resource_type.endpoint,
        "description": resource_type.description,
        "schema": resource_type.schema.id,
        "schemaExtensions": [{"schema": s.id, "required": False} for s in resource_type.extensions],
        "meta": {
            "resourceType": "ResourceType",
            "location": f"{base_url}/ResourceTypes/{resource_type.name}",
        },
    }


def service_provider_config(base_url: str) -> dict[str, Any]:
    """What this service provider supports (RFC 7643 5), truthfully."""
    return {
        "schemas": [_CONFIG_SCHEMA],
        "documentationUri": "https://www.rfc-editor.org/rfc/rfc7644",
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": True},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "Authorization: Bearer <the SCIM secret of this identity provider>",
                "specUri": "https://www.rfc-editor.org/rfc/rfc6750",
                "primary": True,
            }
        ],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": f"{base_url}/ServiceProviderConfig",
        },
    }
