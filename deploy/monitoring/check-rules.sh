#!/usr/bin/env bash
# Checks the pipeline's Prometheus rules and runs their unit tests:
#
#   deploy/monitoring/check-rules.sh [PROMETHEUSRULE_YAML]
#
# Extracts `.spec` of the PrometheusRule (default: prometheusrule.yaml next
# to this script) into pagestream.rules.yaml in a temporary directory, next
# to a copy of tests/*.test.yaml (which name that file in rule_files), then
# runs `promtool check rules` and `promtool test rules`, and last checks
# that the stream limits and policies written in the rules are the
# topology's. Exits non-zero on any failure.
#
# Environment: PROMTOOL (default `promtool`), PYTHON (default `python3`,
# with PyYAML), TOPOLOGY (default topology/pipeline.toml of this
# repository).
set -euo pipefail

here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
rule_file=${1:-$here/prometheusrule.yaml}
promtool=${PROMTOOL:-promtool}
python=${PYTHON:-python3}
topology=${TOPOLOGY:-$here/../../topology/pipeline.toml}

if [[ ! -f $rule_file ]]; then
    echo "check-rules: no such file: $rule_file" >&2
    exit 2
fi
if ! command -v "$promtool" >/dev/null; then
    echo "check-rules: promtool not found (set PROMTOOL)" >&2
    exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$python" - "$rule_file" "$work/pagestream.rules.yaml" <<'PY'
import sys
import yaml

source, target = sys.argv[1], sys.argv[2]
with open(source, encoding="utf-8") as f:
    documents = [d for d in yaml.safe_load_all(f) if d is not None]
rules = [d for d in documents if d.get("kind") == "PrometheusRule"]
if len(rules) != 1:
    sys.exit(f"check-rules: {source}: expected one PrometheusRule, found {len(rules)}")
spec = rules[0].get("spec")
if not isinstance(spec, dict) or not spec.get("groups"):
    sys.exit(f"check-rules: {source}: the PrometheusRule has no spec.groups")
with open(target, "w", encoding="utf-8") as f:
    yaml.safe_dump(spec, f, sort_keys=False, width=1000)
PY

cp "$here"/tests/*.test.yaml "$work/"

(
    cd "$work"
    echo "==> promtool check rules ($rule_file)"
    "$promtool" check rules pagestream.rules.yaml
    echo "==> promtool test rules"
    "$promtool" test rules ./*.test.yaml
)

# The rules fall back on each stream's max_bytes where the NATS exporter
# does not report it, and alert only on the streams that refuse new
# messages when full: both must follow the topology.
echo "==> stream limits and discard policies ($topology)"
"$python" - "$work/pagestream.rules.yaml" "$topology" <<'PY'
import re
import sys
import yaml

rules_file, topology_file = sys.argv[1], sys.argv[2]
with open(topology_file, encoding="utf-8") as f:
    text = f.read()
try:
    import tomllib

    streams = tomllib.loads(text).get("streams", {})
except ModuleNotFoundError:  # Python before 3.11: the few keys needed
    streams, current = {}, None
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        section = re.fullmatch(r"\[streams\.(\w+)\]", line)
        if section:
            current = streams.setdefault(section.group(1), {})
        elif line.startswith("["):
            current = None
        elif current is not None and "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            current[key] = int(value) if value.isdigit() else value.strip('"')


def stream_name(key):
    return "PAGESTREAM_" + key.upper()


exprs = {}
with open(rules_file, encoding="utf-8") as f:
    for group in yaml.safe_load(f)["groups"]:
        for rule in group["rules"]:
            exprs[rule.get("record") or rule.get("alert")] = rule["expr"]

errors = []
if not streams:
    errors.append(f"no [streams.*] tables in {topology_file}")

limits_expr = exprs.get("namespace_stream_name:jetstream_stream_limit_bytes:max", "")
fallback = {
    name: int(value)
    for name, value in re.findall(
        r'jetstream_stream_total_bytes\{stream_name="(\w+)"\}\)\s*\*\s*0\s*\+\s*(\d+)', limits_expr
    )
}
expected = {stream_name(k): v.get("max_bytes") for k, v in streams.items()}
if fallback != expected:
    errors.append(f"fallback max_bytes in the rules {fallback} != topology's {expected}")

alert_expr = exprs.get("PagestreamStreamNearlyFull", "")
match = re.search(r'stream_name=~"PAGESTREAM_\(([\w|]+)\)"', alert_expr)
watched = {"PAGESTREAM_" + s for s in match.group(1).split("|")} if match else set()
discard_new = {stream_name(k) for k, v in streams.items() if v.get("discard") == "new"}
if watched != discard_new:
    errors.append(
        f"PagestreamStreamNearlyFull watches {sorted(watched)}, "
        f'the streams with discard = "new" are {sorted(discard_new)}'
    )

for error in errors:
    print(f"check-rules: {error}", file=sys.stderr)
if errors:
    sys.exit(1)
print(f"  SUCCESS: {len(fallback)} stream limits, {len(watched)} streams alerted on")
PY
