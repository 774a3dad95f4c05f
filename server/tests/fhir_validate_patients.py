"""Validate FHIR R4 resources, one JSON resource per line on stdin, with fhir.resources (R4B
models): an independent check of ClinicDesk's FHIR reads. A line is a Patient, or a Bundle
(`$everything`) whose entries are Patients, Coverages and Appointments; the Bundle and each
entry, as its own type, must validate. Exits 0 and prints the counts when every line is
valid, non-zero with pydantic's message otherwise.
"""

import json
import sys

from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.coverage import Coverage
from fhir.resources.R4B.patient import Patient

MODELS = {"Patient": Patient, "Coverage": Coverage, "Appointment": Appointment}

counts = {}


def check(raw):
    kind = raw.get("resourceType")
    if kind not in MODELS:
        sys.exit(f"a resource is not a Patient, Coverage or Appointment: {kind}")
    MODELS[kind].model_validate(raw)
    counts[kind] = counts.get(kind, 0) + 1


for line in sys.stdin:
    if not line.strip():
        continue
    raw = json.loads(line)
    if raw.get("resourceType") == "Bundle":
        Bundle.model_validate(raw)
        counts["Bundle"] = counts.get("Bundle", 0) + 1
        for entry in raw.get("entry", []):
            check(entry["resource"])
    elif raw.get("resourceType") == "Patient":
        check(raw)
    else:
        sys.exit("a line is neither a Patient nor a Bundle")
print("valid R4: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
