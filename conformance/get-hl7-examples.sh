#!/usr/bin/env bash
# Fetch the official FHIR R4 examples (npm package hl7.fhir.r4.examples@4.0.1, CC0) into
# conformance/.cache/hl7.fhir.r4.examples/package, where the conformance suite looks by default.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="$here/.cache/hl7.fhir.r4.examples"
if [ -f "$dest/package/Patient-example.json" ]; then
  echo "HL7 examples already in $dest/package"
  exit 0
fi
mkdir -p "$dest"
cd "$dest"
tgz="$(npm pack --silent hl7.fhir.r4.examples@4.0.1 | tail -n 1)"
tar xzf "$tgz"
rm -f "$tgz"
echo "HL7 examples unpacked in $dest/package ($(ls package | wc -l) files)"
