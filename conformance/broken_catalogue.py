"""A catalogue of broken requests, each derived from an official HL7 R4 example.

Each `Case` names an example file (`base`), the mutations applied to it, how it is sent, and what
the server must answer: the HTTP status(es) and, for validation errors, a substring that one of
the OperationOutcome's `issue.expression` must contain (a tuple gives alternatives: any one of
them will do). Expressions are FHIRPath as the server writes them: `Patient.name[0].given[1]`,
with an index on every element that repeats.

How a case is sent (see test_broken.py):
  method "PUT"   -> PUT   [base]/<path>, `path` defaulting to "{type}/{id}" with a fresh id,
                    the body's id set to that fresh id (`body_id`)
  method "POST"  -> POST  [base]/{type}, the body's id removed
  method "PATCH" -> the base example is first stored at {type}/{id}; then PATCH with `patch`
  `{type}` is the body's resourceType (or `url_type`), `{id}` the fresh id.

Mutations are JSON-pointer edits on the parsed example (numbers keep their text), or edits on
the serialised text, or a whole replacement body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from support import FHIR_JSON, Lit, Pairs

# ---------------------------------------------------------------------------------------------
# Mutations
# ---------------------------------------------------------------------------------------------


def _walk(doc: Any, pointer: str):
    """(parent, last token) of a JSON pointer."""
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
    node = doc
    for tok in tokens[:-1]:
        node = node[int(tok)] if isinstance(node, list) else node[tok]
    return node, tokens[-1]


@dataclass(frozen=True)
class Set:
    """Set (or add) the value at a JSON pointer; `-` appends to an array."""

    pointer: str
    value: Any

    def apply(self, doc: Any) -> Any:
        parent, tok = _walk(doc, self.pointer)
        if isinstance(parent, list):
            if tok == "-":
                parent.append(self.value)
            else:
                parent[int(tok)] = self.value
        else:
            parent[tok] = self.value
        return doc

    def __str__(self) -> str:
        return f"set {self.pointer} = {self.value!r}"


@dataclass(frozen=True)
class Remove:
    pointer: str

    def apply(self, doc: Any) -> Any:
        parent, tok = _walk(doc, self.pointer)
        if isinstance(parent, list):
            del parent[int(tok)]
        else:
            del parent[tok]
        return doc

    def __str__(self) -> str:
        return f"remove {self.pointer}"


@dataclass(frozen=True)
class DupKey:
    """Repeat `key` (with another value) in the object at `pointer` ("" for the root)."""

    pointer: str
    key: str
    value: Any

    def apply(self, doc: Any) -> Any:
        if self.pointer == "":
            obj = doc
        else:
            parent, tok = _walk(doc, self.pointer)
            obj = parent[int(tok)] if isinstance(parent, list) else parent[tok]
        pairs = []
        for k, v in obj.items():
            pairs.append((k, v))
            if k == self.key:
                pairs.append((k, self.value))
        dup = Pairs(pairs)
        if self.pointer == "":
            return dup
        parent, tok = _walk(doc, self.pointer)
        if isinstance(parent, list):
            parent[int(tok)] = dup
        else:
            parent[tok] = dup
        return doc

    def __str__(self) -> str:
        return f"repeat key {self.key!r} in {self.pointer or '/'} with {self.value!r}"


@dataclass(frozen=True)
class Text:
    """An edit of the serialised JSON text."""

    what: str
    edit: Callable[[str], str]

    def __str__(self) -> str:
        return self.what


@dataclass(frozen=True)
class Body:
    """Replace the whole request body."""

    body: bytes

    def __str__(self) -> str:
        shown = self.body if len(self.body) < 60 else self.body[:57] + b"..."
        return f"body {shown!r}"


@dataclass(frozen=True)
class Pad:
    """Grow a string element with valid base64 until the body is `size` bytes long."""

    pointer: str
    size: int

    def __str__(self) -> str:
        return f"pad {self.pointer} so that the body is {self.size} bytes"


def nested_extension(depth: int) -> dict:
    node: dict = {"url": "http://example.org/deep", "valueString": "bottom"}
    for _ in range(depth - 1):
        node = {"url": "http://example.org/deep", "extension": [node]}
    return node


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------

MIB = 1 << 20


@dataclass(frozen=True)
class Case:
    name: str
    base: str  # example file, e.g. "Patient-example.json"
    ops: tuple = ()
    status: int | tuple[int, ...] = 400
    expression: str | tuple[str, ...] | None = None
    method: str = "PUT"
    path: str | None = None  # default: "{type}/{id}" (PUT, PATCH, ...) or "{type}" (POST)
    url_type: str | None = None  # the type in the URL when not the body's
    body_id: str | None = "{id}"  # PUT: the id written in the body; None removes it
    content_type: str | None = None  # None: application/fhir+json (json-patch+json for PATCH)
    accept: str = FHIR_JSON
    send_body: bool = True
    content_encoding: str | None = None  # "gzip": the body is sent gzip-compressed
    chunked: bool = False  # send the body with Transfer-Encoding: chunked (no Content-Length)
    patch: Any = None  # PATCH: the patch document (JSON) or raw bytes
    control_patch: Any = None  # PATCH: a valid patch, to prove the case is about its defect
    control: bool = True  # send the unbroken request afterwards: it must succeed
    note: str = ""

    @property
    def statuses(self) -> tuple[int, ...]:
        return self.status if isinstance(self.status, tuple) else (self.status,)

    @property
    def expressions(self) -> tuple[str, ...]:
        if self.expression is None:
            return ()
        return self.expression if isinstance(self.expression, tuple) else (self.expression,)

    def describe(self) -> str:
        parts = [str(op) if len(str(op)) < 160 else str(op)[:157] + "..." for op in self.ops]
        if self.url_type:
            parts.append(f"URL type {self.url_type}")
        if self.path:
            parts.append(f"URL {self.path}")
        if self.body_id != "{id}" and self.method in ("PUT",):
            parts.append("no id in the body" if self.body_id is None else f"body id {self.body_id}")
        if self.patch is not None:
            parts.append(f"patch {self.patch!r}")
        if self.content_type is not None:
            parts.append(f"Content-Type: {self.content_type}")
        if self.accept != FHIR_JSON:
            parts.append(f"Accept: {self.accept}")
        if self.content_encoding:
            parts.append(f"Content-Encoding: {self.content_encoding}")
        if self.chunked:
            parts.append("Transfer-Encoding: chunked")
        return f"{self.base}: " + ("; ".join(parts) or "unchanged") + (
            f" ({self.note})" if self.note else ""
        )


PAT = "Patient-example.json"
OBS = "Observation-example.json"
OBS_F001 = "Observation-f001.json"
DOC = "DocumentReference-example.json"
BIN = "Binary-example.json"
BP = "Observation-blood-pressure.json"
ALG = "AllergyIntolerance-example.json"
APT = "Appointment-example.json"
IMM = "Immunization-example.json"

VALUE_QTY_VALUE = ("Observation.valueQuantity.value", "Observation.value.ofType(Quantity).value")
EFFECTIVE = ("Observation.effectiveDateTime", "Observation.effective")

CASES: list[Case] = [
    # --- unknown content ---------------------------------------------------------------------
    Case("unknown-element", PAT, (Set("/foo", "bar"),), expression="Patient.foo"),
    Case("unknown-nested-element", PAT, (Set("/name/0/nickname", "Jim"),),
         expression="Patient.name[0].nickname"),
    Case("unknown-underscore-element", PAT, (Set("/_foo", {"id": "x"}),),
         expression=("Patient._foo", "Patient.foo")),
    Case("underscore-on-complex-element", PAT, (Set("/_maritalStatus", {"id": "x"}),),
         expression=("Patient._maritalStatus", "Patient.maritalStatus"),
         note="_x is only for primitives"),
    Case("unknown-element-in-contained", DOC, (Set("/contained/0/foo", 1),),
         expression="DocumentReference.contained[0]"),
    Case("unknown-choice-type", OBS, (Remove("/valueQuantity"), Set("/valueUri", "urn:x")),
         expression="Observation.valueUri", note="uri is not one of Observation.value[x]'s types"),
    # --- wrong JSON types --------------------------------------------------------------------
    Case("string-for-boolean", PAT, (Set("/active", "true"),), expression="Patient.active"),
    Case("number-for-boolean", PAT, (Set("/deceasedBoolean", 0),),
         expression=("Patient.deceasedBoolean", "Patient.deceased")),
    Case("number-for-string", PAT, (Set("/name/0/family", 42),), expression="Patient.name[0].family"),
    Case("object-for-code", PAT, (Set("/gender", {"code": "male"}),), expression="Patient.gender"),
    Case("object-where-array", PAT, (Set("/name", {"family": "Chalmers"}),), expression="Patient.name"),
    Case("array-where-single-primitive", PAT, (Set("/gender", ["male"]),), expression="Patient.gender"),
    Case("array-where-single-complex", PAT,
         (Set("/maritalStatus", [{"text": "married"}]),), expression="Patient.maritalStatus"),
    Case("string-for-reference", OBS, (Set("/subject", "Patient/example"),),
         expression="Observation.subject"),
    Case("nested-array", PAT, (Set("/name", [[{"family": "Chalmers"}]]),), expression="Patient.name"),
    Case("number-for-narrative-div", PAT, (Set("/text/div", 42),), expression="Patient.text.div"),
    Case("string-for-boolean-uppercase", PAT, (Set("/active", "TRUE"),), expression="Patient.active"),
    Case("number-for-id", PAT, (Set("/meta", {"versionId": 1}),), expression="Patient.meta.versionId"),
    Case("underscore-null", PAT, (Set("/_gender", None),), expression=("Patient._gender", "Patient.gender")),
    Case("underscore-array-misaligned", PAT, (Set("/name/0/_given", [None]),),
         expression=("Patient.name[0]._given", "Patient.name[0].given"),
         note="given has 2 entries, _given 1"),
    # --- dates and times ---------------------------------------------------------------------
    Case("date-feb-30", PAT, (Set("/birthDate", "1974-02-30"),), expression="Patient.birthDate"),
    Case("date-month-13", PAT, (Set("/birthDate", "1974-13-01"),), expression="Patient.birthDate"),
    Case("date-with-time", PAT, (Set("/birthDate", "1974-12-25T14:35:45Z"),),
         expression="Patient.birthDate", note="a date holds no time"),
    Case("date-not-iso", PAT, (Set("/birthDate", "25/12/1974"),), expression="Patient.birthDate"),
    Case("date-unpadded-in-period", PAT, (Set("/identifier/0/period/start", "2001-5-6"),),
         expression="Patient.identifier[0].period.start"),
    Case("datetime-feb-29-non-leap", OBS, (Set("/effectiveDateTime", "2015-02-29"),),
         expression=EFFECTIVE),
    Case("datetime-hour-25", OBS, (Set("/effectiveDateTime", "2016-03-28T25:00:00Z"),),
         expression=EFFECTIVE),
    Case("datetime-time-without-timezone", OBS, (Set("/effectiveDateTime", "2016-03-28T10:00:00"),),
         expression=EFFECTIVE, note="a dateTime with a time SHALL have a time zone"),
    Case("instant-without-timezone", OBS_F001, (Set("/issued", "2013-04-03T15:30:10"),),
         expression="Observation.issued"),
    Case("instant-date-only", OBS_F001, (Set("/issued", "2013-04-03"),), expression="Observation.issued"),
    Case("instant-in-documentreference", DOC, (Set("/date", "2005-12-24"),),
         expression="DocumentReference.date", note="DocumentReference.date is an instant"),
    Case("date-year-0000", PAT, (Set("/birthDate", "0000"),), expression="Patient.birthDate"),
    Case("datetime-offset-beyond-14h", PAT,
         (Set("/identifier/0/period/start", "2001-05-06T10:00:00+15:00"),),
         expression="Patient.identifier[0].period.start"),
    Case("time-hour-25", OBS, (Remove("/valueQuantity"), Set("/valueTime", "25:00:00")),
         expression=("Observation.valueTime", "Observation.value")),
    Case("meta-lastupdated-not-instant", PAT, (Set("/meta", {"lastUpdated": "2020-01-01"}),),
         expression="Patient.meta.lastUpdated"),
    Case("meta-lastupdated-month-13", PAT, (Set("/meta", {"lastUpdated": "2020-13-01T00:00:00Z"}),),
         expression="Patient.meta.lastUpdated"),
    # --- numbers -----------------------------------------------------------------------------
    Case("decimal-as-string", OBS, (Set("/valueQuantity/value", "185"),), expression=VALUE_QTY_VALUE),
    Case("decimal-leading-zero", OBS, (Set("/valueQuantity/value", Lit("01.5")),),
         note="01.5 is not a JSON number"),
    Case("decimal-nan", OBS, (Set("/valueQuantity/value", Lit("NaN")),), note="NaN is not JSON"),
    Case("decimal-as-string-in-range", OBS_F001, (Set("/referenceRange/0/low/value", "3.1"),),
         expression=("Observation.referenceRange[0].low.value",)),
    Case("positiveint-out-of-range", PAT, (Set("/telecom/1/rank", 2147483648),),
         expression="Patient.telecom[1].rank", note="integers are 32-bit"),
    Case("positiveint-zero", PAT, (Set("/telecom/1/rank", 0),), expression="Patient.telecom[1].rank"),
    Case("integer-with-fraction", PAT, (Set("/telecom/1/rank", Lit("1.5")),),
         expression="Patient.telecom[1].rank"),
    Case("integer-with-exponent", PAT, (Set("/telecom/1/rank", Lit("1e2")),),
         expression="Patient.telecom[1].rank"),
    Case("integer-as-string", PAT, (Set("/telecom/1/rank", "1"),), expression="Patient.telecom[1].rank"),
    Case("unsignedint-negative", DOC, (Set("/content/0/attachment/size", -1),),
         expression="DocumentReference.content[0].attachment.size"),
    Case("unsignedint-negative-appointment", APT, (Set("/priority", -5),), expression="Appointment.priority"),
    # --- ids, codes, uris, base64 ------------------------------------------------------------
    Case("bad-id-characters", PAT, (), path="{type}/{id}_bad", body_id="{id}_bad",
         note="ids are [A-Za-z0-9-.]{1,64}; the same bad id in the URL and the body"),
    Case("id-too-long", PAT, (), path="{type}/{id}" + "x" * 64, body_id="{id}" + "x" * 64,
         note="80 characters, in the URL and the body"),
    Case("bad-contained-id", DOC, (Set("/contained/0/id", "a 2"),),
         expression="DocumentReference.contained[0].id"),
    Case("code-leading-space", PAT, (Set("/gender", " male"),), expression="Patient.gender"),
    Case("code-trailing-space", PAT, (Set("/gender", "male "),), expression="Patient.gender"),
    Case("code-double-inner-space", OBS, (Set("/code/coding/0/code", "29463  7"),),
         expression="Observation.code.coding[0].code"),
    Case("uri-with-space", PAT, (Set("/identifier/0/system", "urn:oid: 1.2.36"),),
         expression="Patient.identifier[0].system"),
    Case("base64-bad-characters", BIN, (Set("/data", "not base64!!"),), expression="Binary.data"),
    Case("base64-bad-length", BIN, (Set("/data", "abcde"),), expression="Binary.data"),
    Case("base64-as-number", BIN, (Set("/data", 12345678),), expression="Binary.data"),
    Case("base64-in-attachment", DOC, (Set("/content/0/attachment/data", "%%%"),),
         expression="DocumentReference.content[0].attachment.data"),
    # --- required bindings -------------------------------------------------------------------
    Case("gender-outside-value-set", PAT, (Set("/gender", "male2"),), expression="Patient.gender"),
    Case("observation-status-done", OBS, (Set("/status", "done"),), expression="Observation.status"),
    Case("contactpoint-system-outside", PAT, (Set("/telecom/1/system", "fax2"),),
         expression="Patient.telecom[1].system"),
    Case("name-use-outside", PAT, (Set("/name/0/use", "alias"),), expression="Patient.name[0].use"),
    Case("narrative-status-outside", PAT, (Set("/text/status", "made-up"),), expression="Patient.text.status"),
    Case("documentreference-status-draft", DOC, (Set("/status", "draft"),),
         expression="DocumentReference.status"),
    Case("allergy-criticality-outside", ALG, (Set("/criticality", "very-high"),),
         expression="AllergyIntolerance.criticality"),
    Case("allergy-category-outside", ALG, (Set("/category/0", "drink"),),
         expression="AllergyIntolerance.category[0]"),
    Case("appointment-status-outside", APT, (Set("/status", "maybe"),), expression="Appointment.status"),
    Case("immunization-status-outside", IMM, (Set("/status", "given"),), expression="Immunization.status"),
    Case("quantity-comparator-outside", OBS, (Set("/valueQuantity/comparator", "<<"),),
         expression=("Observation.valueQuantity.comparator", "Observation.value.ofType(Quantity).comparator")),
    # --- choices and cardinality -------------------------------------------------------------
    Case("two-value-choices", OBS, (Set("/valueString", "185 lbs"),), expression="Observation.value"),
    Case("two-deceased-choices", PAT, (Set("/deceasedDateTime", "2015-02-14T13:42:00+10:00"),),
         expression="Patient.deceased"),
    Case("missing-observation-code", OBS, (Remove("/code"),), expression="Observation.code"),
    Case("missing-observation-status", OBS, (Remove("/status"),), expression="Observation.status"),
    Case("missing-documentreference-content", DOC, (Remove("/content"),),
         expression="DocumentReference.content"),
    Case("missing-component-code", BP, (Remove("/component/0/code"),),
         expression="Observation.component[0].code"),
    Case("missing-binary-contenttype", BIN, (Remove("/contentType"),), expression="Binary.contentType"),
    Case("extension-without-url", PAT, (Set("/extension", [{"valueString": "x"}]),),
         expression="Patient.extension[0]"),
    # --- strings ---------------------------------------------------------------------------
    Case("string-control-character", PAT, (Set("/name/0/family", "Chal\u0001mers"),),
         expression="Patient.name[0].family",
         note="strings SHALL NOT contain characters below U+0020 other than tab, CR, LF"),
    Case("string-nul-character", PAT, (Set("/address/0/city", "Pleasant\u0000Ville"),),
         expression="Patient.address[0].city"),
    # --- narrative and contained resources (R4 invariants txt-1, dom-2, dom-4) ----------------
    Case("narrative-script", PAT,
         (Set("/text/div", '<div xmlns="http://www.w3.org/1999/xhtml"><p>Peter</p><script>alert(1)</script></div>'),),
         expression="Patient.text.div", note="txt-1: no <script> in a narrative (stored XSS)"),
    Case("narrative-event-handler", PAT,
         (Set("/text/div", '<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="alert(1)">Peter</p></div>'),),
         expression="Patient.text.div", note="txt-1: no event-handler attributes"),
    Case("narrative-not-well-formed", PAT,
         (Set("/text/div", '<div xmlns="http://www.w3.org/1999/xhtml"><p>Peter</div>'),),
         expression="Patient.text.div", note="xhtml must be well-formed XML"),
    Case("contained-nested", DOC,
         (Set("/contained/0/contained", [{"resourceType": "Organization", "id": "o2", "name": "x"}]),),
         expression="DocumentReference.contained[0]", note="dom-2: no contained inside contained"),
    Case("contained-with-versionid", DOC, (Set("/contained/0/meta", {"versionId": "1"}),),
         expression="DocumentReference.contained[0]", note="dom-4: a contained resource has no meta.versionId"),
    # --- empty and null ----------------------------------------------------------------------
    Case("empty-string", PAT, (Set("/name/0/family", ""),), expression="Patient.name[0].family"),
    Case("empty-object", PAT, (Set("/maritalStatus", {}),), expression="Patient.maritalStatus"),
    Case("empty-array", PAT, (Set("/name", []),), expression="Patient.name"),
    Case("empty-array-of-primitives", PAT, (Set("/name/0/given", []),), expression="Patient.name[0].given"),
    Case("null-value", PAT, (Set("/active", None),), expression="Patient.active"),
    Case("null-in-array", PAT, (Set("/name/0/given/1", None),), expression="Patient.name[0].given",
         note="null in an array only pairs with a _given entry"),
    Case("null-complex", PAT, (Set("/name", None),), expression="Patient.name"),
    # --- JSON syntax and shape ---------------------------------------------------------------
    Case("malformed-truncated", PAT, (Text("cut the last 10 characters", lambda t: t[:-10]),)),
    Case("malformed-trailing-comma", PAT, (Text("add a trailing comma", lambda t: t[:-1] + ",}"),)),
    Case("malformed-trailing-garbage", PAT, (Text("append ' x'", lambda t: t + " x"),)),
    Case("malformed-invalid-utf8", PAT,
         (Text("invalid UTF-8 in a string", lambda t: t.replace('"Chalmers"', '"Chalm\udcffers"', 1)),)),
    Case("duplicate-key", PAT, (DupKey("", "gender", "female"),)),
    Case("duplicate-key-nested", PAT, (DupKey("/name/0", "family", "Windsor"),)),
    Case("duplicate-resourcetype", PAT, (DupKey("", "resourceType", "Observation"),)),
    Case("nesting-depth-200", PAT, (Set("/extension", [nested_extension(200)]),),
         note="extensions nested 200 deep: refuse it, do not overflow the stack"),
    Case("body-array", PAT, (Body(b"[]"),)),
    Case("body-string", PAT, (Body(b'"Patient"'),)),
    Case("body-null", PAT, (Body(b"null"),)),
    Case("body-empty", PAT, (Body(b""),)),
    # --- resourceType ------------------------------------------------------------------------
    Case("resourcetype-missing", PAT, (Remove("/resourceType"),)),
    Case("resourcetype-not-url-type", OBS, (), url_type="Patient",
         note="an Observation PUT at Patient/<id>"),
    Case("resourcetype-unknown-in-body", PAT, (Set("/resourceType", "Foo"),)),
    Case("resourcetype-wrong-case", PAT, (Set("/resourceType", "patient"),)),
    Case("post-resourcetype-not-url-type", OBS, (), method="POST", url_type="Patient"),
    Case("contained-unknown-type", DOC, (Set("/contained/0/resourceType", "Foo"),),
         expression="DocumentReference.contained[0]"),
    # --- unknown type (404) ------------------------------------------------------------------
    Case("unknown-type-post", PAT, (Set("/resourceType", "Foo"),), method="POST", url_type="Foo",
         status=404, control=False),
    Case("unknown-type-put", PAT, (Set("/resourceType", "Foo"),), url_type="Foo", status=404, control=False),
    Case("unknown-type-lowercase-url", PAT, (), method="POST", url_type="patient", status=404,
         control=False),
    Case("refused-type-put", "OperationOutcome-101.json", (), status=404, control=False,
         note="OperationOutcome is an R4 type that this server refuses to store (docs/resource-types.md)"),
    # --- wrong method (405) ------------------------------------------------------------------
    Case("post-on-instance", PAT, (), method="POST", path="{type}/{id}", status=405, control=False),
    Case("put-on-version", PAT, (), method="PUT", path="{type}/{id}/_history/1", status=405, control=False),
    Case("delete-on-type-history", PAT, (), method="DELETE", path="{type}/_history", send_body=False,
         status=405, control=False),
    # --- id mismatch -------------------------------------------------------------------------
    Case("id-mismatch", PAT, (), body_id="{id}-other", status=(400, 409)),
    Case("put-without-id", PAT, (), body_id=None, status=400,
         note="an update SHALL carry the id of the URL"),
    # --- content negotiation -----------------------------------------------------------------
    Case("content-type-text-plain", PAT, (), content_type="text/plain", status=415),
    Case("content-type-xml", PAT, (), content_type="application/fhir+xml", status=415),
    Case("content-type-old-fhir-version", PAT, (), content_type="application/fhir+json; fhirVersion=3.0",
         status=415),
    Case("accept-xml", PAT, (), accept="application/fhir+xml", status=406),
    Case("accept-old-fhir-version", PAT, (), accept="application/fhir+json; fhirVersion=3.0", status=406),
    # --- size --------------------------------------------------------------------------------
    Case("body-40-mib", BIN, (Pad("/data", 40 * MIB),), method="POST", status=413,
         note="the default body limit is about 32 MiB"),
    Case("body-40-mib-chunked", BIN, (Pad("/data", 40 * MIB),), method="POST", status=413, chunked=True,
         note="no Content-Length: the limit must hold while reading"),
    Case("body-40-mib-gzip-bomb", BIN, (Pad("/data", 40 * MIB),), method="POST", status=413,
         content_encoding="gzip", note="about 40 KiB on the wire, 40 MiB once decompressed"),
    # --- PATCH (JSON Patch) on an existing resource ------------------------------------------
    Case("patch-to-invalid-code", PAT, (), method="PATCH", status=(400, 422),
         patch=[{"op": "replace", "path": "/gender", "value": "male2"}],
         control_patch=[{"op": "replace", "path": "/gender", "value": "female"}],
         expression="Patient.gender"),
    Case("patch-removing-required", OBS, (), method="PATCH", status=(400, 422),
         patch=[{"op": "remove", "path": "/status"}],
         control_patch=[{"op": "replace", "path": "/status", "value": "amended"}],
         expression="Observation.status"),
    Case("patch-unknown-element", PAT, (), method="PATCH", status=(400, 422),
         patch=[{"op": "add", "path": "/foo", "value": 1}],
         control_patch=[{"op": "add", "path": "/active", "value": False}],
         expression="Patient.foo"),
    Case("patch-missing-path", PAT, (), method="PATCH", status=(400, 422),
         patch=[{"op": "replace", "path": "/multipleBirthBoolean", "value": True}],
         control_patch=[{"op": "add", "path": "/multipleBirthBoolean", "value": True}],
         note="RFC 6902: replace needs an existing target"),
    Case("patch-not-an-array", PAT, (), method="PATCH", status=400,
         patch={"op": "replace", "path": "/gender", "value": "female"},
         control_patch=[{"op": "replace", "path": "/gender", "value": "female"}]),
    Case("patch-malformed-json", PAT, (), method="PATCH", status=400,
         patch=b'[{"op": "replace", "path": "/gender", "value": "female"}',
         control_patch=[{"op": "replace", "path": "/gender", "value": "female"}]),
    Case("patch-changing-id", PAT, (), method="PATCH", status=(400, 409, 422),
         patch=[{"op": "replace", "path": "/id", "value": "another"}],
         control_patch=[{"op": "replace", "path": "/gender", "value": "female"}]),
    Case("patch-wrong-content-type", PAT, (), method="PATCH", status=415, content_type="text/plain",
         patch=[{"op": "replace", "path": "/gender", "value": "female"}],
         control_patch=[{"op": "replace", "path": "/gender", "value": "female"}]),
]

def _check_catalogue() -> None:
    names = [c.name for c in CASES]
    dups = {n for n in names if names.count(n) > 1}
    assert not dups, f"duplicate case names: {dups}"
    assert len(CASES) >= 40, len(CASES)


_check_catalogue()
