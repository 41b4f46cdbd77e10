#!/usr/bin/env bash
# Runs the pagestream image for real, locked down as in the cluster: user
# 10001, read-only root filesystem (no writable /tmp either), all
# capabilities dropped, no new privileges; only the mounted volumes are
# writable.
#   1. pagestream analyze /samples --out /out on the repository's samples/:
#      exit code 0 and a complete result for every sample;
#   2. a nats-server -js on the host (a free loopback port, a temporary
#      store), then in the image `streams apply`, `worker --stage all`
#      (checking its /healthz and /readyz) and `submit --wait` of one sample:
#      the result must be complete, with pages; then the worker must stop
#      cleanly on SIGTERM.
# Everything it starts is stopped and its temporary files removed, also on
# failure. Needs podman, nats-server, curl and python3 on the host.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: deploy/image/run.sh [--help]

Environment:
  IMAGE           image to run [localhost/pagestream:<workers crate version>]
  SUBMIT_FILE     document submitted through NATS [samples/report.pdf]
  PODMAN_RUNTIME  OCI runtime for podman [runc]
EOF
}
case ${1:-} in
-h | --help)
    usage
    exit 0
    ;;
"") ;;
*)
    usage >&2
    exit 2
    ;;
esac

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.."

readonly RUNTIME=${PODMAN_RUNTIME:-runc}
readonly SUBMIT_FILE=${SUBMIT_FILE:-samples/report.pdf}
readonly SAMPLES=$PWD/samples
readonly UID_GID=10001:10001

say() { printf 'run.sh: %s\n' "$*"; }
die() {
    printf 'run.sh: error: %s\n' "$*" >&2
    exit 1
}

for tool in podman nats-server curl python3; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[[ -f $SUBMIT_FILE ]] || die "$SUBMIT_FILE is missing"

if [[ -n ${IMAGE:-} ]]; then
    readonly IMAGE
else
    pkgid=$(cargo pkgid -p workers) || die "cargo pkgid failed: set IMAGE"
    readonly IMAGE=localhost/pagestream:${pkgid##*[#@]}
fi
podman image exists "$IMAGE" || die "image $IMAGE is missing: run deploy/image/build.sh"

# As root, host files for user 10001 are chowned; rootless, inside podman's
# user namespace.
as_container_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    else
        podman unshare "$@"
    fi
}

# See build.sh: podman cannot raise rlimits without CAP_SYS_RESOURCE.
ULIMITS=()
cap_eff=$(awk '/^CapEff:/ { print $2 }' /proc/self/status)
if ((((16#${cap_eff:-0} >> 24) & 1) == 0)); then
    nofile=$(ulimit -Hn)
    [[ $nofile == unlimited ]] || ULIMITS+=(--ulimit "nofile=$nofile:$nofile")
    ULIMITS+=(--ulimit nproc=4096:4096)
fi

TMP=$(mktemp -d /var/tmp/pagestream-run.XXXXXX)
WORKER=pagestream-run-worker-$$
NATS_PID=
cleanup() {
    local status=$?
    if podman container exists "$WORKER" 2>/dev/null; then
        local log line
        log=$(podman logs --tail 30 "$WORKER" 2>&1 || true)
        if ((status != 0)) && [[ -n $log ]]; then
            say "worker log (last 30 lines):"
            while IFS= read -r line; do printf '  %s\n' "$line"; done <<<"$log" >&2
        fi
        podman rm -f -t 5 "$WORKER" >/dev/null 2>&1 || true
    fi
    if [[ -n $NATS_PID ]]; then
        kill "$NATS_PID" 2>/dev/null || true
        wait "$NATS_PID" 2>/dev/null || true
    fi
    as_container_root rm -rf "$TMP" || rm -rf "$TMP" || true
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The locked-down `podman run` of the image.
pagestream() {
    podman run --runtime "$RUNTIME" --rm --network=host \
        --read-only --read-only-tmpfs=false \
        --user "$UID_GID" --security-opt no-new-privileges --cap-drop ALL \
        "${ULIMITS[@]}" "$@"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
size_text=$(awk -v s="$size" 'BEGIN { printf "%d bytes (%.1f MiB)", s, s / 1048576 }')
say "image $IMAGE: $size_text"

# 1. analyze
mkdir -p "$TMP/out"
as_container_root chown "$UID_GID" "$TMP/out"
say "pagestream analyze /samples --out /out"
started=$(date +%s.%N)
analyze_rc=0
pagestream -v "$SAMPLES:/samples:ro" -v "$TMP/out:/out" "$IMAGE" analyze /samples --out /out ||
    analyze_rc=$?
analyze_s=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
((analyze_rc == 0)) || die "analyze exited with $analyze_rc"
analyze_summary=$(python3 - "$SAMPLES" "$TMP/out" <<'EOF'
import json, pathlib, sys

samples, out = map(pathlib.Path, sys.argv[1:])
expected = sorted(p.name for p in samples.iterdir()
                  if p.suffix.lower() in {".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff"})
results = {}
for path in sorted(out.glob("*.json")):
    result = json.loads(path.read_text())
    results[pathlib.PurePath(result.get("file_name") or path.stem).name] = result
problems = [f"{name}: no result" for name in expected if name not in results]
problems += [f"{name}: {r['status']}, {len(r['pages'])}/{r['page_count']} pages"
             for name, r in results.items() if r["status"] != "complete" or not r["pages"]]
if problems:
    sys.exit("analyze: " + "; ".join(problems))
pages = sum(len(r["pages"]) for r in results.values())
print(f"{len(results)} documents complete ({pages} pages): "
      + ", ".join(f"{n} {len(r['pages'])}p" for n, r in sorted(results.items())))
EOF
)
say "analyze: exit 0 in $analyze_s s, $analyze_summary"

# 2. NATS JetStream: streams apply, worker --stage all, submit --wait
nats_port=$(free_port)
metrics_port=$(free_port)
nats_url=nats://127.0.0.1:$nats_port
mkdir -p "$TMP/jetstream" "$TMP/store"
as_container_root chown "$UID_GID" "$TMP/store"
say "nats-server -js on $nats_url"
nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$TMP/jetstream" >"$TMP/nats.log" 2>&1 &
NATS_PID=$!
for _ in $(seq 50); do
    grep -q 'Server is ready' "$TMP/nats.log" && break
    kill -0 "$NATS_PID" 2>/dev/null || die "nats-server exited: $(tail -5 "$TMP/nats.log")"
    sleep 0.2
done
grep -q 'Server is ready' "$TMP/nats.log" || die "nats-server not ready after 10 s"

say "pagestream streams apply"
pagestream "$IMAGE" --nats-url "$nats_url" streams apply | sed 's/^/  /'

say "pagestream worker --stage all (metrics on 127.0.0.1:$metrics_port)"
podman run --runtime "$RUNTIME" -d --name "$WORKER" --network=host \
    --read-only --read-only-tmpfs=false \
    --user "$UID_GID" --security-opt no-new-privileges --cap-drop ALL \
    "${ULIMITS[@]}" -v "$TMP/store:/var/lib/pagestream/store" \
    "$IMAGE" --nats-url "$nats_url" worker --stage all --metrics-addr "127.0.0.1:$metrics_port" >/dev/null
ready=
for _ in $(seq 120); do
    [[ $(podman inspect --format '{{.State.Running}}' "$WORKER") == true ]] || die "the worker exited"
    if curl -fsS "http://127.0.0.1:$metrics_port/readyz" >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 1
done
[[ -n $ready ]] || die "the worker is not ready after 120 s"
healthz=$(curl -fsS "http://127.0.0.1:$metrics_port/healthz")
say "worker ready: /healthz $healthz, /readyz 200"

submit_dir=$(dirname "$(readlink -f "$SUBMIT_FILE")")
submit_name=$(basename "$SUBMIT_FILE")
say "pagestream submit /submit/$submit_name --wait"
started=$(date +%s.%N)
submit_rc=0
pagestream -v "$submit_dir:/submit:ro" -v "$TMP/store:/var/lib/pagestream/store" \
    "$IMAGE" --nats-url "$nats_url" submit "/submit/$submit_name" --wait --timeout 5m \
    >"$TMP/result.json" || submit_rc=$?
submit_s=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
((submit_rc == 0)) || die "submit --wait exited with $submit_rc"
submit_summary=$(python3 - "$TMP/result.json" <<'EOF'
import json, sys

result = json.load(open(sys.argv[1]))
pages = result["pages"]
summary = (f"doc_id {result['doc_id']}, status {result['status']}, "
           f"{len(pages)}/{result['page_count']} pages")
if result["status"] != "complete" or not pages or len(pages) != result["page_count"]:
    sys.exit(f"submit: not complete: {summary}")
print(summary)
EOF
)
say "submit: $submit_summary, in $submit_s s"

say "stopping the worker (SIGTERM)"
podman stop -t 40 "$WORKER" >/dev/null
worker_rc=$(podman inspect --format '{{.State.ExitCode}}' "$WORKER")
((worker_rc == 0)) || die "the worker exited with $worker_rc on SIGTERM"

cat <<EOF

summary
  image    $IMAGE, $size_text
  analyze  exit 0 in $analyze_s s: $analyze_summary
  submit   $SUBMIT_FILE: $submit_summary (worker --stage all, ${submit_s} s)
  worker   /healthz and /readyz answered; exit 0 on SIGTERM
EOF
