#!/usr/bin/env python3
"""Writes JSON schemas of custom kinds from npm packages of kubernetes-models.

    from-kubernetes-models.py PACKAGE_DIR GROUP/VERSION/KIND [...]

PACKAGE_DIR is an unpacked package of the releases that still carry each
kind's schema as a plain object literal (`const schema = {...};` in
GROUP/VERSION/KIND.js; later releases ship compiled validators only):

    npm pack @kubernetes-models/cert-manager@4.3.1 && tar xzf ...
    from-kubernetes-models.py package cert-manager.io/v1/Certificate

The schema is written next to this script as GROUP/<kind>_VERSION.json, the
layout of the CRDs catalog, with two changes that keep it a plain JSON
schema: the reference to the package's ObjectMeta becomes {"type":
"object"} (as in the catalog's schemas), and OpenAPI's `nullable: true`
becomes a "null" in `type`. Nothing else is changed: in particular no
`additionalProperties: false` is added, so these schemas accept unknown
fields wherever the upstream CRD does not list its properties closed.
"""

import json
import re
import sys
from pathlib import Path

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta#"


def plain(node):
    if isinstance(node, list):
        return [plain(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("$ref") == OBJECT_META:
        return {"type": "object"}
    if "$ref" in node:
        sys.exit(f"unexpected reference {node['$ref']}: not a self-contained schema")
    out = {key: plain(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = types + ["null"] if "null" not in types else types
    return out


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    package = Path(argv[1])
    here = Path(__file__).resolve().parent
    for name in argv[2:]:
        group, version, kind = name.split("/")
        source = package / group / version / f"{kind}.js"
        match = re.search(
            r"^const schema = (\{.*?^\});$", source.read_text(encoding="utf-8"), re.DOTALL | re.MULTILINE
        )
        if not match:
            sys.exit(f"{source}: no `const schema = {{...}};` object literal")
        schema = plain(json.loads(match.group(1)))
        target = here / group / f"{kind.lower()}_{version}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
        print(f"{source} -> {target.relative_to(here)}")


if __name__ == "__main__":
    main(sys.argv)
