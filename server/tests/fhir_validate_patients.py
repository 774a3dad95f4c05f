"""Validate FHIR R4 Patients, one JSON resource per line on stdin, with fhir.resources (R4B
models): an independent check of ClinicDesk's FHIR Patient reads. Exits 0 and prints the
count when every line is a valid Patient, non-zero with pydantic's message otherwise.
"""

import json
import sys

from fhir.resources.R4B.patient import Patient

count = 0
for line in sys.stdin:
    if not line.strip():
        continue
    raw = json.loads(line)
    if raw.get("resourceType") != "Patient":
        sys.exit("a line is not a Patient")
    Patient.model_validate(raw)
    count += 1
print(f"valid R4 Patient(s): {count}")
