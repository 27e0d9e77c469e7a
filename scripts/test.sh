#!/usr/bin/env bash
# scripts/test.sh - install what is missing, build, run every test.
#
# On a fresh Debian 12 machine (as root, or with sudo) this is all it takes:
#   ./scripts/test.sh
# Build directory: $BUILD_DIR (default build/). Extra arguments go to ctest,
# e.g. ./scripts/test.sh -R integration.threads
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/deps.sh
. scripts/deps.sh

BUILD_DIR=${BUILD_DIR:-build}
ht_install_deps
ht_build "$BUILD_DIR"

junit="$BUILD_DIR/ctest-results.xml"
rm -f "$junit"
status=0
(cd "$BUILD_DIR" && ctest --output-on-failure -j2 --timeout 300 \
	--output-junit "$(basename "$junit")" "$@") || status=$?

# One summary line from ctest's JUnit report.
if [ -f "$junit" ]; then
	python3 - "$junit" <<'PY'
import sys
import xml.etree.ElementTree as ET

cases = ET.parse(sys.argv[1]).getroot().iter("testcase")
passed = failed = skipped = 0
names = []
for c in cases:
    status = c.get("status", "")
    if c.find("failure") is not None or c.find("error") is not None or status == "fail":
        failed += 1
        names.append(c.get("name"))
    elif c.find("skipped") is not None or status in ("notrun", "disabled"):
        skipped += 1
    else:
        passed += 1
if names:
    print("failed: " + " ".join(names))
print("%d passed, %d failed" % (passed, failed) + (", %d skipped" % skipped if skipped else ""))
PY
else
	echo "0 passed, 0 failed (ctest wrote no results; exit status $status)"
fi
exit "$status"
