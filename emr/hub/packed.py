"""How the hub keeps a resource's JSON on disk: deflated against a fixed dictionary.

A stored resource is about 800 bytes of JSON, most of it the same keys and code-system
URIs in every resource of its type. Deflate on its own little more than halves text this
short (it meets each repeat for the first time); given those repeats as a preset
dictionary, an Observation shrinks from about 850 bytes to about 200 (measured: 795 -> 456
bytes on its own, 177 with the dictionary), and what is read back is exactly the JSON
that was written.

Stored form: one format byte, then raw deflate of the UTF-8 JSON against ``DICTIONARY``.
An empty value stays empty: the version table uses it to mean "the current version's
content is on the resource row" (``emr.hub.store.CURRENT``). A value written before
packing existed is plain JSON, as text (SQLite) or, once ``emr.hub.db`` has turned the
column into bytes, as UTF-8 starting with ``{`` (PostgreSQL); it is read back as it is.

``DICTIONARY`` is part of the stored format: changing it would make every stored
resource unreadable. A better dictionary gets a new format byte and this module keeps
reading the old one.
"""

from __future__ import annotations

import zlib

from sqlalchemy import LargeBinary
from sqlalchemy.types import TypeDecorator

FORMAT_V1 = 1
_V1 = bytes((FORMAT_V1,))
_PLAIN = ord("{")

# Fragments of FHIR JSON as the hub stores it, rarest first: deflate finds a repeat
# cheapest when it is near the end of the dictionary. Only structure and code-system
# names; no value that belongs to a person.
_FRAGMENTS = (
    '"extension":[{"url":"urn:emr:extension:lab-quality-level","valueInteger":',
    '{"url":"urn:emr:extension:iso15189-accredited","valueBoolean":true},'
    '{"url":"urn:emr:extension:emr-go-live","valueDate":"20',
    '"type":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/organization-type",'
    '"code":"prov","display":"Healthcare Provider"}]}],"name":"Bệnh viện ',
    '"address":[{"state":"","country":"VN"}],"alias":["',
    '"scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope",'
    '"code":"patient-privacy","display":"Privacy Consent"}]},"policyRule":{"coding":[{"system":'
    '"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTOUT","display":"opt-out"}],'
    '"provision":{"type":"deny"},"dateTime":"20',
    '{"resourceType":"Task","status":"requested","intent":"order","for":{"reference":"Patient/',
    '"owner":{"type":"Organization","identifier":{"system":"http://fhir.ehealth.gov.vn/core/NamingSystem/provider-code",'
    '"focus":{"reference":"ServiceRequest/"',
    '{"resourceType":"Person","link":[{"target":{"reference":"Patient/"},"assurance":"level3"}],"active":true,',
    '{"resourceType":"DetectedIssue","status":"final","code":{"coding":[{"system":"urn:emr:code:reuse-decision",'
    '"code":"duplicate-test","display":"Recent result available from another facility"}]},"identifiedDateTime":"20',
    '"implicated":[{"reference":"Observation/"}],"mitigation":[{"action":{"coding":[{"system":'
    '"urn:emr:code:reuse-decision","code":"reused","display":"Result reused"}]},"date":"20',
    '"author":{"type":"Organization","identifier":{"system":"http://fhir.ehealth.gov.vn/core/NamingSystem/provider-code",',
    '{"resourceType":"DiagnosticReport","status":"final","code":{"coding":[{"system":"http://loinc.org",'
    '"code":"11502-2","display":"Laboratory report"}]},"issued":"20',
    '"result":[{"reference":"Observation/"},{"reference":"Observation/',
    '{"resourceType":"Encounter","status":"finished","class":{"system":'
    '"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB","display":"ambulatory"},'
    '"period":{"start":"20","end":"20',
    '"serviceProvider":{"type":"Organization","identifier":{"system":'
    '"http://fhir.ehealth.gov.vn/core/NamingSystem/provider-code","value":"',
    '{"resourceType":"Patient","identifier":[{"use":"usual","system":"urn:emr:facility::mrn","value":"',
    '{"use":"official","system":"http://fhir.ehealth.gov.vn/core/NamingSystem/cccd","value":"',
    '"name":[{"use":"official","family":"Nguyễn","given":["Thị","Văn"],"text":"',
    '"gender":"female","gender":"male","birthDate":"19',
    '"managingOrganization":{"type":"Organization","identifier":{"system":'
    '"http://fhir.ehealth.gov.vn/core/NamingSystem/provider-code","value":"',
    '{"resourceType":"ServiceRequest","status":"active","status":"completed","intent":"order",'
    '"authoredOn":"20","encounter":{"reference":"Encounter/',
    '"identifier":[{"system":"urn:emr:facility::referral","value":"-task"}],"category":[{"coding":[{"system":'
    '"http://snomed.info/sct","code":"3457005","display":"Patient referral"}]}],',
    '"requester":{"type":"Organization","identifier":{"system":'
    '"http://fhir.ehealth.gov.vn/core/NamingSystem/provider-code","value":"',
    '{"resourceType":"AuditEvent","type":{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type",'
    '"code":"rest","display":"RESTful Operation"},"subtype":[{"system":"http://hl7.org/fhir/restful-interaction",'
    '"code":"operation"},{"system":"urn:emr:code:operation","code":"check-reuse"}],"code":"search-type"}],'
    '"code":"read"}],"code":"create"}],"action":"E","action":"R","action":"C","recorded":"20',
    '"outcome":"0","purposeOfEvent":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason",'
    '"code":"TREAT"}]}],"agent":[{"type":{"coding":[{"system":"http://dicom.nema.org/resources/ontology/DCM",'
    '"code":"110153","display":"Source Role ID"}]},"requestor":true,"purposeOfUse":[{"coding":[{"system":'
    '"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"TREAT"}]}],"who":{"identifier":{"system":'
    '"urn:emr:client-id","value":"sim-"},"display":"sim-"},"network":{"address":"127.0.0.1","type":"2"}},'
    '{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleClass","code":"PROV",'
    '"display":"healthcare provider"}]},"who":{"reference":"Organization/"},"requestor":false}],'
    '"source":{"observer":{"display":"emr coordination hub"},"type":[{"system":'
    '"http://terminology.hl7.org/CodeSystem/security-source-type","code":"4","display":"Application Server"}]},',
    '"entity":[{"what":{"type":"Patient","identifier":{"system":"http://fhir.ehealth.gov.vn/core/NamingSystem/cccd",'
    '"value":"',
    '{"what":{"reference":"ServiceRequest//_history/1"},"type":{"system":'
    '"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"2","display":"System Object"},'
    '"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"4","display":"Domain Resource"}},',
    '{"what":{"reference":"Patient/"},"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type",'
    '"code":"1","display":"Person"},"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role",'
    '"code":"1","display":"Patient"}},',
    '{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":'
    '"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],'
    '"code":{"coding":[{"system":"http://loinc.org","code":"","display":""}],"text":""},'
    '"subject":{"reference":"Patient/"},"effectiveDateTime":"20',
    '"valueString":"positive","valueString":"negative","interpretation":[{"coding":[{"system":'
    '"http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation","code":"POS"}]}],"code":"NEG"}]}],',
    '"valueQuantity":{"value":,"unit":"","system":"http://unitsofmeasure.org","code":"mmol/L"}',
    '"performer":[{"type":"Organization","identifier":{"system":'
    '"http://fhir.ehealth.gov.vn/core/NamingSystem/provider-code","value":"',
    '"identifier":[{"system":"urn:emr:facility::result","value":"',
    '"id":"","meta":{"source":"urn:emr:facility:","versionId":"1","lastUpdated":"2025-',
    'T00:00:00.000Z"}}',
)
DICTIONARY = "".join(_FRAGMENTS).encode()

# Raw deflate (no zlib header or checksum: the database already guards its pages),
# level 6, a 32 KiB window and the default memory level.
_WBITS = -15


def pack(text: str | bytes) -> bytes:
    """The stored form of the JSON ``text`` (as text or UTF-8)."""
    if not text:
        return b""
    packer = zlib.compressobj(6, zlib.DEFLATED, _WBITS, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
    data = text.encode() if isinstance(text, str) else text
    return _V1 + packer.compress(data) + packer.flush()


def unpack(stored: bytes | str) -> str:
    """The JSON text of a stored value (``pack``'s inverse; plain text passes through)."""
    if isinstance(stored, str):
        return stored
    if not stored:
        return ""
    if stored[0] == _PLAIN:
        return bytes(stored).decode()
    if stored[0] != FORMAT_V1:
        raise ValueError(f"stored content has an unknown format byte {stored[0]}")
    unpacker = zlib.decompressobj(_WBITS, DICTIONARY)
    return (unpacker.decompress(stored[1:]) + unpacker.flush()).decode()


class PackedJSON(TypeDecorator):
    """A column holding JSON text, stored packed: the application sees ``str`` both ways."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect) -> bytes | None:  # type: ignore[no-untyped-def]
        return None if value is None else pack(value)

    def process_result_value(self, value: bytes | str | None, dialect) -> str | None:  # type: ignore[no-untyped-def]
        return None if value is None else unpack(value)
