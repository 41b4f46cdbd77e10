#!/usr/bin/env bash
# The speed comparison of the README, in one run on this machine: the
# embedded pipeline (`cargo bench -p workers --bench pipeline`) and then the
# Python reference pipeline (rapidocr 3.10, scripts/reference/bench.py) on
# the same scanned page, with the CER of both against its ground truth.
# Run it on a quiet machine; it takes about five minutes on two cores.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
./setup --reference
cargo bench -p workers --bench pipeline
.pagestream/venv/bin/python -W ignore scripts/reference/bench.py samples/scan-letter.png \
    --truth workers/tests/fixtures/scan-letter.txt --batch 8
