"""Validate a FHIR R4 Bundle of AuditEvents read from stdin with fhir.resources (R4B models).

An independent check of ClinicDesk's FHIR export: exits 0 and prints the count when every
entry is a valid AuditEvent, non-zero with pydantic's message otherwise.
"""

import json
import sys

from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle

text = sys.stdin.read()
bundle = Bundle.model_validate_json(text)
raw = json.loads(text)
count = 0
for entry in raw.get("entry", []):
    resource = entry["resource"]
    if resource.get("resourceType") != "AuditEvent":
        sys.exit("an entry is not an AuditEvent")
    AuditEvent.model_validate(resource)
    count += 1
if bundle.type != "collection":
    sys.exit("the Bundle is not a collection")
print(f"valid R4 Bundle of {count} AuditEvent(s)")
