"""The SP metadata (`/cdn-cgi/access/saml-metadata/<idp-id>`, SPEC 10) is valid SAML metadata.

Valid means: it passes the OASIS `saml-schema-metadata-2.0.xsd` (and the xmldsig / xmlenc
schemas it imports), as pysaml2 ships them and checks them with xmlschema; and an IdP built on
pysaml2 loads it and finds there the ACS and entity id SPEC 10 names.
"""

from __future__ import annotations

import httpx
import pytest
from lxml import etree
from saml2 import BINDING_HTTP_POST
from saml2.attribute_converter import ac_factory
from saml2.mdstore import MetadataStore
from saml2.xml.schema import XMLSchemaError, validate
from saml_idp import NS, SAML_IDP_ID, SP_ENTITY_ID, SamlIdP

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
METADATA_PATH = f"/cdn-cgi/access/saml-metadata/{SAML_IDP_ID}"


async def fetch_sp_metadata(client: httpx.AsyncClient) -> bytes:
    answer = await client.get(METADATA_PATH)
    assert answer.status_code == 200, answer.text
    assert "xml" in answer.headers["content-type"]
    return answer.content


async def test_the_sp_metadata_validates_against_the_saml_metadata_schema(
    saml_client: httpx.AsyncClient,
) -> None:
    document = etree.fromstring(await fetch_sp_metadata(saml_client))
    assert document.tag == f"{{{MD}}}EntityDescriptor"
    validate(document)  # raises XMLSchemaError, with what failed


async def test_the_schema_check_catches_metadata_that_breaks_the_schema(
    saml_client: httpx.AsyncClient,
) -> None:
    """The validator above can fail: the same document, made invalid in two ways, does."""
    missing_binding = etree.fromstring(await fetch_sp_metadata(saml_client))
    for service in missing_binding.iter(f"{{{MD}}}AssertionConsumerService"):
        del service.attrib["Binding"]
    stray_element = etree.fromstring(await fetch_sp_metadata(saml_client))
    descriptor = stray_element.find(f"{{{MD}}}SPSSODescriptor")
    assert descriptor is not None
    descriptor.insert(0, etree.Element(f"{{{MD}}}NotInTheSchema"))
    for broken in (missing_binding, stray_element):
        with pytest.raises(XMLSchemaError):
            validate(broken)


async def test_an_idp_loads_the_sp_metadata_and_finds_the_callback(
    saml_client: httpx.AsyncClient, saml_idp: SamlIdP
) -> None:
    """pysaml2's metadata store (what its IdP reads SPs from) takes the document as it is."""
    store = MetadataStore(ac_factory(), saml_idp.server.config)
    store.load("inline", (await fetch_sp_metadata(saml_client)).decode())
    assert list(store.keys()) == [SP_ENTITY_ID]
    services = store.assertion_consumer_service(SP_ENTITY_ID, BINDING_HTTP_POST)
    assert [service["location"] for service in services] == [SP_ENTITY_ID]
    descriptor = store[SP_ENTITY_ID]["spsso_descriptor"][0]
    assert "urn:oasis:names:tc:SAML:2.0:protocol" in descriptor["protocol_support_enumeration"]
    assert store.certs(SP_ENTITY_ID, "spsso", "signing"), "no signing certificate published"


async def test_the_test_idps_own_metadata_is_valid_too(saml_idp: SamlIdP) -> None:
    document = etree.fromstring(saml_idp.metadata_xml().encode())
    validate(document)
    certificates = document.xpath("//ds:X509Certificate/text()", namespaces=NS)
    assert saml_idp.keys.cert_base64() in [c.strip() for c in certificates]
