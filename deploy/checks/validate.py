"""Helpers of deploy/checks/run, run with the Python of its venv:

    validate.py core RENDERED OUT      writes the documents of built-in kinds
                                       to OUT, for kubernetes-validate
    validate.py custom RENDERED DIR    checks every document's structure and
                                       each custom kind against its JSON
                                       schema in DIR (GROUP/<kind>_VERSION.json)
    validate.py silence-alert RULE OUT ALERT
                                       writes RULE's PrometheusRule to OUT with
                                       the expression of ALERT made never true

RENDERED is the output of `kubectl kustomize` (several YAML documents).
Exits 1 when a check fails.
"""

import re
import sys
from collections import defaultdict
from pathlib import Path

import jsonschema
import yaml

# The API groups that kube-apiserver itself serves (Kubernetes 1.32); "" is
# the core group (apiVersion v1). Every other group is a custom kind.
BUILT_IN_GROUPS = {
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "storagemigration.k8s.io",
}

API_VERSION = re.compile(r"^(?:([a-z0-9]([-a-z0-9.]*[a-z0-9])?)/)?v[0-9]+(?:(?:alpha|beta)[0-9]+)?$")
KIND = re.compile(r"^[A-Z][A-Za-z0-9]*$")
NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def group_of(doc):
    api_version = doc.get("apiVersion")
    if not isinstance(api_version, str):
        return None
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def label(doc):
    kind = doc.get("kind", "?") if isinstance(doc, dict) else "?"
    metadata = doc.get("metadata") if isinstance(doc, dict) else None
    metadata = metadata if isinstance(metadata, dict) else {}
    name = metadata.get("name") or "<no name>"
    namespace = metadata.get("namespace")
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def structure_errors(doc):
    """What every object needs whatever its kind: apiVersion, kind, a name."""
    if not isinstance(doc, dict):
        return [f"a document is a {type(doc).__name__}, not a mapping"]
    errors = []
    api_version, kind, metadata = doc.get("apiVersion"), doc.get("kind"), doc.get("metadata")
    if not isinstance(api_version, str) or not API_VERSION.match(api_version):
        errors.append(f"apiVersion: {api_version!r} is not GROUP/VERSION or VERSION")
    if not isinstance(kind, str) or not KIND.match(kind):
        errors.append(f"kind: {kind!r} is not a CamelCase kind")
    if not isinstance(metadata, dict):
        errors.append("metadata: missing or not a mapping")
        return errors
    name = metadata.get("name")
    if not isinstance(name, str) or not NAME.match(name) or len(name) > 253:
        errors.append(f"metadata.name: {name!r} is not a DNS subdomain name")
    namespace = metadata.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not NAME.match(namespace)):
        errors.append(f"metadata.namespace: {namespace!r} is not a valid namespace")
    for key in ("labels", "annotations"):
        value = metadata.get(key)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            errors.append(f"metadata.{key}: must map names to strings")
    return errors


def core(rendered, out):
    documents = load(rendered)
    if not documents:
        sys.exit(f"{rendered}: no documents")
    built_in = [d for d in documents if isinstance(d, dict) and group_of(d) in BUILT_IN_GROUPS]
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump_all(built_in, f, sort_keys=False)
    print(f"{len(built_in)} objects of built-in kinds, {len(documents) - len(built_in)} others")


def closed(schema):
    """Whether the schema rejects unknown fields in spec (or at the top)."""
    spec = schema.get("properties", {}).get("spec", {})
    return spec.get("additionalProperties") is False or schema.get("additionalProperties") is False


def path_of(error):
    return ".".join(str(p) for p in error.absolute_path) or "(document)"


def custom(rendered, schema_dir):
    documents = load(rendered)
    if not documents:
        sys.exit(f"{rendered}: no documents")
    schema_dir = Path(schema_dir)
    validators, used, errors = {}, defaultdict(int), []
    for doc in documents:
        problems = structure_errors(doc)
        if problems:
            errors += [f"{label(doc)}: {p}" for p in problems]
            continue
        group = group_of(doc)
        if group in BUILT_IN_GROUPS:
            continue  # kubernetes-validate's part
        version = doc["apiVersion"].rsplit("/", 1)[-1]
        schema_file = schema_dir / group / f"{doc['kind'].lower()}_{version}.json"
        key = (doc["kind"], doc["apiVersion"])
        used[key] += 1
        if not schema_file.is_file():
            validators.setdefault(key, (None, None))
            continue
        if key not in validators:
            schema = yaml.safe_load(schema_file.read_text(encoding="utf-8"))
            cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
            # The metaschema without its format checks: some CRDs carry Go
            # regular expressions, e.g. `^(?i)(abort|warn)?$`, that Python's
            # `re` does not compile.
            meta = cls.META_SCHEMA
            jsonschema.validators.validator_for(meta)(meta).validate(schema)
            validators[key] = (cls(schema), schema_file.relative_to(schema_dir))
        validator = validators[key][0]
        try:
            found = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
        except re.error as e:
            errors.append(
                f"{label(doc)}: its schema has a pattern Python cannot use ({e}) on a field set here"
            )
            continue
        errors += [f"{label(doc)}: {path_of(error)}: {error.message}" for error in found]
    for (kind, api_version), count in sorted(used.items()):
        validator, schema_file = validators[(kind, api_version)]
        if validator is None:
            how = "no schema: apiVersion, kind and metadata checked only"
        elif closed(validator.schema):
            how = f"{schema_file} (unknown fields rejected)"
        else:
            how = f"{schema_file} (its objects are open: unknown fields not caught)"
        print(f"  {kind} {api_version} x{count}: {how}")
    for error in errors:
        print(f"  ERROR {error}")
    print(f"{len(documents)} documents, {sum(used.values())} of custom kinds, {len(errors)} errors")
    if errors:
        sys.exit(1)


def silence_alert(rule_file, out, alert):
    documents = load(rule_file)
    found = 0
    for doc in documents:
        if isinstance(doc, dict) and doc.get("kind") == "PrometheusRule":
            for group in doc["spec"]["groups"]:
                for rule in group["rules"]:
                    if rule.get("alert") == alert:
                        rule["expr"] = "vector(1) < 0"
                        found += 1
    if not found:
        sys.exit(f"{rule_file}: no alert {alert}")
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump_all(documents, f, sort_keys=False, width=1000)


def main(argv):
    commands = {"core": (core, 2), "custom": (custom, 2), "silence-alert": (silence_alert, 3)}
    if len(argv) < 2 or argv[1] not in commands or len(argv) - 2 != commands[argv[1]][1]:
        sys.exit(__doc__)
    function, _ = commands[argv[1]]
    function(*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
