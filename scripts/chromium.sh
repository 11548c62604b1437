#!/usr/bin/env bash
# The browser of the UI tests (tests/integration/test_ui_browser.py): Debian's chromium, installed with apt-get
# when missing. playwright drives it through executable_path; `playwright install` is never used (its CDN is
# unreachable from CI). Idempotent; fails with the reason when chromium cannot be installed.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
echo "chromium: installing Debian's chromium (apt-get) for the browser test"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
command -v chromium >/dev/null 2>&1 || { echo "chromium: still missing after apt-get install" >&2; exit 1; }
