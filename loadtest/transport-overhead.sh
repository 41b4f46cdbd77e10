#!/usr/bin/env bash
# The transport's cost: the same bulk loads through the embedded transport,
# one `pagestream worker --stage all`, and one worker process per stage, one
# run after the other; prints a Markdown table from the runs' summary.json.
#
#   loadtest/transport-overhead.sh [BIN_DIR [OUT_DIR [SCENARIO...]]]
#
# BIN_DIR holds pagestream and pagestream-loadtest (default target/release;
# PAGESTREAM_BIN names another pagestream binary for the workers, e.g. an
# older build to compare with); OUT_DIR receives the reports (default
# loadtest/results); scenarios default to bulk and bulk-scanned.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

bin=${1:-target/release}
out=${2:-loadtest/results}
pagestream=${PAGESTREAM_BIN:-$bin/pagestream}
shift $(($# < 2 ? $# : 2))
scenarios=("$@")
((${#scenarios[@]})) || scenarios=(bulk bulk-scanned)

echo "| scenario | transport | pages/s | of embedded | p50 / p99 document latency | RSS after warm-up per process (MiB) | report |"
echo "|---|---|---|---|---|---|---|"
for scenario in "${scenarios[@]}"; do
    embedded=""
    for mode in embedded all per-stage; do
        case $mode in
        embedded) args=(--embedded) label="embedded" ;;
        all) args=(--spawn) label="JetStream, one worker --stage all" ;;
        per-stage) args=(--spawn --per-stage) label="JetStream, one worker per stage" ;;
        esac
        "$bin/pagestream-loadtest" "loadtest/scenarios/$scenario.toml" "${args[@]}" \
            --pagestream "$pagestream" --out "$out" >&2
        report=$(ls -td "$out/$scenario"-* | head -n 1)
        rate=$(jq -r '.figures.pages_per_second' "$report/summary.json")
        [[ $mode == embedded ]] && embedded=$rate
        jq -r --arg transport "$label" --arg embedded "$embedded" --arg report "$report" '
            def round1: . * 10 | round / 10;
            .figures as $f
            | ($f.rss_mib // {} | to_entries | map("\(.key) \(.value.warm | floor)") | join(", ")) as $rss
            | [ .scenario,
                $transport,
                ($f.pages_per_second * 100 | round / 100 | tostring),
                "\($f.pages_per_second / ($embedded | tonumber) * 100 | round) %",
                "\($f.document_latency.p50_ms / 1000 | round1) s / \($f.document_latency.p99_ms / 1000 | round1) s",
                (if $rss == "" then "(in process)" else $rss end),
                $report ]
            | "| " + join(" | ") + " |"' "$report/summary.json"
    done
done
