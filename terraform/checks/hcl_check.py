"""The part of `terraform validate` that runs without the provider registry.

    python hcl_check.py DIR [--outputs TERRAFORM_OUTPUT_JSON]

Parses every *.tf of the module in DIR with python-hcl2, then reports, one
line each, and exits 1 when there is any:
- a `var.X` with no `variable "X"`, a variable nobody uses, a variable of a
  count, flavor or CIDR without a validation block;
- a `local.X` with no such local, a local nobody uses;
- a reference to a resource or data source that is not declared;
- a resource or data source whose provider is not in required_providers
  with an exact version ("= 1.2.3" or "1.2.3"), no required_version;
- a templatefile() whose file is missing, or whose template uses a
  variable the call does not pass, or is passed one it never uses; a
  cloud-config template that does not render to a YAML mapping;
- with --outputs, an output declared but not in that `terraform output
  -json` (the inventory's fixture), or the other way round.
"""

import json

import pathlib
import re
import sys

import hcl2
import yaml

EXACT_VERSION = re.compile(r'^"=?\s*\d+\.\d+\.\d+"$')
VAR_REF = re.compile(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)")
LOCAL_REF = re.compile(r"\blocal\.([A-Za-z_][A-Za-z0-9_-]*)")
DATA_REF = re.compile(r"\bdata\.([a-z][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_-]*)")
TEMPLATEFILE = re.compile(r'templatefile\("\$\{path\.module\}/([^"]+)",\s*\{(.*?)\}\)')
TEMPLATE_VAR = re.compile(r"\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}")
# Variables whose names say they hold these need a validation block.
VALIDATED = re.compile(r"(_count|_flavor|_cidr|_cidrs|_pools)$")


def unquote(s):
    return s[1:-1] if isinstance(s, str) and len(s) >= 2 and s[0] == s[-1] == '"' else s


def strings(node):
    """Every string in a parsed value, comments left out."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            if not k.startswith("__"):
                yield k
                yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)


def blocks(doc, kind):
    """(name, body) of the labelled blocks of one kind: variable, output..."""
    for entry in doc.get(kind, []):
        for name, body in entry.items():
            if not name.startswith("__"):
                yield unquote(name), body


def typed_blocks(doc, kind):
    """(type, name, body) of resource or data blocks."""
    for entry in doc.get(kind, []):
        for rtype, named in entry.items():
            if rtype.startswith("__"):
                continue
            for name, body in named.items():
                if not name.startswith("__"):
                    yield unquote(rtype), unquote(name), body


def check(module):
    errors = []
    docs = {}
    for path in sorted(module.glob("*.tf")):
        try:
            with path.open() as f:
                docs[path.name] = hcl2.load(f)
        except Exception as e:  # the parser's errors have no common base
            errors.append(f"{path.name}: does not parse: {type(e).__name__}: {str(e).splitlines()[0]}")
    if not docs:
        errors.append(f"{module}: no .tf file")
    if errors:
        return errors

    variables, locals_, outputs = {}, set(), set()
    resources, datas, providers = set(), set(), {}
    required_version = False
    for doc in docs.values():
        for name, body in blocks(doc, "variable"):
            variables[name] = body
        for entry in doc.get("locals", []):
            locals_.update(k for k in entry if not k.startswith("__"))
        for name, _ in blocks(doc, "output"):
            outputs.add(name)
        for rtype, name, _ in typed_blocks(doc, "resource"):
            resources.add((rtype, name))
        for rtype, name, _ in typed_blocks(doc, "data"):
            datas.add((rtype, name))
        for tf in doc.get("terraform", []):
            required_version |= "required_version" in tf
            for req in tf.get("required_providers", []):
                for pname, spec in req.items():
                    if not pname.startswith("__"):
                        providers[pname] = spec

    if not required_version:
        errors.append("terraform: no required_version")
    for pname, spec in sorted(providers.items()):
        version = spec.get("version") if isinstance(spec, dict) else None
        if not version or not EXACT_VERSION.match(version):
            errors.append(f"provider {pname}: version not pinned to an exact release: {version or 'none'}")
    for rtype, name in sorted(resources | datas):
        prefix = rtype.split("_")[0]
        if prefix not in providers:
            errors.append(f"{rtype}.{name}: provider {prefix} is not in required_providers")

    # References, in every file (the module is one namespace).
    used_vars, used_locals = set(), set()
    resource_ref = re.compile(
        r"(?<![.\w])((?:%s)_[a-z0-9_]+)\.([A-Za-z_][A-Za-z0-9_-]*)" % "|".join(map(re.escape, providers) or ["$^"])
    )
    for fname, doc in docs.items():
        # A variable's own validation refers to it: that is not a use.
        for s in strings({k: v for k, v in doc.items() if k != "variable"}):
            used_vars.update(VAR_REF.findall(s))
        for s in strings(doc):
            used_locals.update(LOCAL_REF.findall(s))
            for rtype, name in DATA_REF.findall(s):
                if (rtype, name) not in datas:
                    errors.append(f"{fname}: data.{rtype}.{name}: no such data source")
            for rtype, name in resource_ref.findall(s):
                start = s.find(f"{rtype}.{name}")
                if s[max(0, start - 5) : start] == "data.":
                    continue
                if (rtype, name) not in resources:
                    errors.append(f"{fname}: {rtype}.{name}: no such resource")
            for tpath, args in TEMPLATEFILE.findall(s):
                errors.extend(check_template(module, fname, tpath, args))
    for name in sorted(used_vars - variables.keys()):
        errors.append(f"var.{name}: not declared")
    for name in sorted(variables.keys() - used_vars):
        errors.append(f"variable {name}: declared but never used")
    for name, body in sorted(variables.items()):
        if VALIDATED.search(name) and not body.get("validation"):
            errors.append(f"variable {name}: no validation block")
        if "description" not in body or "type" not in body:
            errors.append(f"variable {name}: needs a description and a type")
    for name in sorted(used_locals - locals_):
        errors.append(f"local.{name}: not declared")
    for name in sorted(locals_ - used_locals):
        errors.append(f"local {name}: declared but never used")
    return sorted(set(errors), key=errors.index)


def check_template(module, fname, tpath, args):
    errors = []
    path = module / tpath
    if not path.is_file():
        return [f"{fname}: templatefile {tpath}: no such file"]
    passed = set(re.findall(r"(?:^|,)\s*([A-Za-z_][A-Za-z0-9_]*)\s*=", args))
    text = path.read_text()
    used = set(TEMPLATE_VAR.findall(text))
    for name in sorted(used - passed):
        errors.append(f"{fname}: templatefile {tpath}: uses ${{{name}}}, not passed")
    for name in sorted(passed - used):
        errors.append(f"{fname}: templatefile {tpath}: passed {name}, never used")
    if "%{" in text:
        errors.append(f"{fname}: templatefile {tpath}: template directives are not checked here; keep to ${{name}}")
    if text.startswith("#cloud-config"):
        rendered = TEMPLATE_VAR.sub(lambda m: f"sample-{m.group(1)}", text)
        try:
            doc = yaml.safe_load(rendered)
        except yaml.YAMLError as e:
            return errors + [f"{tpath}: rendered cloud-config is not YAML: {e}"]
        if not isinstance(doc, dict):
            errors.append(f"{tpath}: rendered cloud-config is not a mapping")
    return errors


def check_outputs(module, fixture):
    declared = set()
    for path in sorted(module.glob("*.tf")):
        with path.open() as f:
            declared.update(name for name, _ in blocks(hcl2.load(f), "output"))
    given = set(json.loads(pathlib.Path(fixture).read_text()))
    return [f"output {name}: declared, not in {fixture}" for name in sorted(declared - given)] + [
        f"output {name}: in {fixture}, not declared" for name in sorted(given - declared)
    ]


def main():
    args = sys.argv[1:]
    if len(args) not in (1, 3) or (len(args) == 3 and args[1] != "--outputs"):
        sys.exit("usage: hcl_check.py DIR [--outputs TERRAFORM_OUTPUT_JSON]")
    module = pathlib.Path(args[0])
    errors = check(module)
    if not errors and len(args) == 3:
        errors = check_outputs(module, args[2])
    for e in errors:
        print(e)
    if errors:
        sys.exit(1)
    print(f"{module}: parsed; references, pins and templates consistent")


if __name__ == "__main__":
    main()
