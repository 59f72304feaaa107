"""The API server's admission rules for a CustomResourceDefinition, in Python.

There is no API server on our machines, so this module encodes the rules
kube-apiserver (k8s.io/apiextensions-apiserver) applies when a CRD is
created, read from its sources:

  pkg/apis/apiextensions/validation/validation.go
      names and versions; per schema node: forbidden keywords (id, $ref,
      definitions, dependencies, patternProperties, additionalItems, items
      as an array, type null), uniqueItems, additionalProperties with
      properties, x-kubernetes-preserve-unknown-fields false, list/map-type
      rules, x-kubernetes-validations rule/message shape, the fields
      allowed at the root when the status subresource is on;
  pkg/apiserver/schema/validation.go (ValidateStructural)
      a type on every specified field and array item, items on every array,
      no additionalProperties at the root, nothing but value validation
      under anyOf/allOf/oneOf/not (no type, default, description, title,
      nullable, x-kubernetes-*, additionalProperties, metadata) except the
      two int-or-string patterns, which must be exactly
      anyOf: [{type: integer}, {type: string}];
      x-kubernetes-int-or-string without preserve-unknown-fields; root
      metadata may restrict name and generateName only;
  pkg/apiserver/schema/complete.go
      every property a value validation names is also specified in the
      structural part of the schema;
  pkg/apiserver/schema/defaulting/validation.go
      defaults validate against their schema and have no unknown fields.

check_crd(doc) returns a list of "field.path: message" strings, empty when
the API server would accept the CRD. Messages quote the API server's own.
"""
import re

import jsonschema

# JSONSchemaProps' JSON field names (apiextensions/v1 types.go): anything
# else is an unknown field, refused under kubectl's strict field validation.
SCHEMA_KEYS = {
    "id", "$schema", "$ref", "description", "type", "format", "title",
    "default", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
    "maxLength", "minLength", "pattern", "maxItems", "minItems",
    "uniqueItems", "multipleOf", "enum", "maxProperties", "minProperties",
    "required", "items", "allOf", "oneOf", "anyOf", "not", "properties",
    "additionalProperties", "patternProperties", "dependencies",
    "additionalItems", "definitions", "externalDocs", "example", "nullable",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string", "x-kubernetes-list-map-keys",
    "x-kubernetes-list-type", "x-kubernetes-map-type",
    "x-kubernetes-validations",
}
TYPES = {"array", "boolean", "integer", "number", "object", "string"}
JUNCTORS = ("allOf", "anyOf", "oneOf")
# Fields of the root schema when the status subresource is enabled
# (allowedFieldsAtRootSchema), as JSON names.
ROOT_WITH_STATUS = {
    "description", "type", "format", "title", "maximum", "exclusiveMaximum",
    "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern",
    "maxItems", "minItems", "uniqueItems", "multipleOf", "required", "items",
    "properties", "externalDocs", "example",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-validations",
}
# Forbidden in a nested value validation (ForbiddenGenerics and
# ForbiddenExtensions of structural.go), with the API server's message.
NESTED_FORBIDDEN = {
    "type": "must be empty to be structural",
    "default": "must be undefined to be structural",
    "title": "must be empty to be structural",
    "description": "must be empty to be structural",
    "nullable": "must be false to be structural",
    "additionalProperties": "must be undefined to be structural",
    "x-kubernetes-preserve-unknown-fields": "must be false to be structural",
    "x-kubernetes-embedded-resource": "must be false to be structural",
    "x-kubernetes-int-or-string": "must be false to be structural",
    "x-kubernetes-list-map-keys": "must be empty to be structural",
    "x-kubernetes-list-type": "must be undefined to be structural",
    "x-kubernetes-map-type": "must be undefined to be structural",
    "x-kubernetes-validations": "must be empty to be structural",
}
INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _falsy(v):
    return v in (None, False, "", [], {})


def _is_int_or_string_anyof(s):
    return s.get("anyOf") == INT_OR_STRING


def _is_int_or_string_allof(s):
    a = s.get("allOf")
    return bool(a) and isinstance(a[0], dict) and a[0].get("anyOf") == INT_OR_STRING


def _node(errs, s, path, level, status_root=False):
    """The rules for one structural schema node and its children.

    level: "root", "items" or "field" (the API server's rootLevel,
    itemLevel and fieldLevel)."""
    if not isinstance(s, dict):
        errs.append(f"{path}: must be a schema object")
        return
    for k in s:
        if k not in SCHEMA_KEYS:
            errs.append(f'{path}: unknown field "{k}"')
    if status_root:
        for k, v in s.items():
            if k == "type":
                if v != "object":
                    errs.append(f'{path}.type: only "object" is allowed as the type at '
                                "the root of the schema if the status subresource is enabled")
            elif not _falsy(v) and k not in ROOT_WITH_STATUS:
                errs.append(f"{path}: only {sorted(ROOT_WITH_STATUS)} fields are allowed at "
                            f"the root of the schema if the status subresource is enabled ({k})")
    _keywords(errs, s, path)
    t = s.get("type", "")
    if t and t not in TYPES:
        errs.append(f'{path}.type: Unsupported value: "{t}"')
    ios = bool(s.get("x-kubernetes-int-or-string"))
    pres = bool(s.get("x-kubernetes-preserve-unknown-fields"))
    emb = bool(s.get("x-kubernetes-embedded-resource"))
    if "x-kubernetes-preserve-unknown-fields" in s and s["x-kubernetes-preserve-unknown-fields"] is not True:
        errs.append(f"{path}.x-kubernetes-preserve-unknown-fields: must be true or undefined")
    if ios and pres:
        errs.append(f"{path}.x-kubernetes-preserve-unknown-fields: must be false if "
                    "x-kubernetes-int-or-string is true")
    if ios and emb:
        errs.append(f"{path}.x-kubernetes-embedded-resource: must be false if "
                    "x-kubernetes-int-or-string is true")
    if emb and t != "object":
        errs.append(f"{path}.type: must be object if x-kubernetes-embedded-resource is true")
    elif not t and not ios and not pres:
        where = {"root": "at the root", "items": "for specified array items",
                 "field": "for specified object fields"}[level]
        errs.append(f"{path}.type: Required value: must not be empty {where}")
    if level == "root" and t and t != "object":
        errs.append(f"{path}.type: must be object at the root")
    if t == "array" and "items" not in s:
        errs.append(f"{path}.items: Required value: must be specified")
    props = s.get("properties") or {}
    ap = s.get("additionalProperties")
    if ap is not None:
        if level == "root":
            errs.append(f"{path}.additionalProperties: must not be used at the root")
        if props and (ap is not True):
            errs.append(f"{path}.additionalProperties: additionalProperties and properties "
                        "are mutual exclusive")
    _list_and_map_types(errs, s, path)
    _validations(errs, s, path)
    # Root metadata: only name and generateName may be restricted.
    meta = props.get("metadata")
    if isinstance(meta, dict) and (level == "root" or emb):
        if meta.get("type") != "object":
            errs.append(f"{path}.properties[metadata].type: must be object")
        if level == "root":
            rest = {k: v for k, v in meta.items() if k not in ("type", "default")}
            mprops = set((rest.pop("properties", None) or {}).keys())
            if rest or not mprops <= {"name", "generateName"}:
                errs.append(f"{path}.properties[metadata]: must not specify anything other "
                            "than name and generateName, but metadata is implicitly specified")
    for key in ("kind", "apiVersion"):
        if key in props and (level == "root" or emb) and props[key].get("type") != "string":
            errs.append(f"{path}.properties[{key}].type: must be string")
    # Value validations under the junctors.
    skip_anyof = _is_int_or_string_anyof(s)
    skip_first_allof = _is_int_or_string_allof(s)
    for j in JUNCTORS:
        for i, sub in enumerate(s.get(j) or []):
            if j == "anyOf" and skip_anyof:
                continue
            _nested(errs, sub, f"{path}.{j}[{i}]", skip_anyof=(j == "allOf" and i == 0 and skip_first_allof))
    if "not" in s:
        _nested(errs, s["not"], f"{path}.not")
    _complete(errs, s, s, path, path)
    # Children.
    if isinstance(s.get("items"), dict):
        _node(errs, s["items"], f"{path}.items", "items")
    for k, v in props.items():
        _node(errs, v, f"{path}.properties[{k}]", "field")
    if isinstance(ap, dict):
        _node(errs, ap, f"{path}.additionalProperties", "field")


def _keywords(errs, s, path):
    """validation.go's specStandardValidatorV3 and uniqueItems."""
    for k, msg in (("id", "id is not supported"),
                   ("additionalItems", "additionalItems is not supported"),
                   ("patternProperties", "patternProperties is not supported"),
                   ("definitions", "definitions is not supported"),
                   ("dependencies", "dependencies is not supported"),
                   ("$ref", "$ref is not supported")):
        if k in s:
            errs.append(f"{path}.{k}: Forbidden: {msg}")
    if s.get("type") == "null":
        errs.append(f"{path}.type: Forbidden: type cannot be set to null, use nullable as an alternative")
    if isinstance(s.get("items"), list):
        errs.append(f"{path}.items: Forbidden: items must be a schema object and not an array")
    if s.get("uniqueItems") is True:
        errs.append(f"{path}.uniqueItems: Forbidden: uniqueItems cannot be set to true since the "
                    "runtime complexity becomes quadratic")


def _list_and_map_types(errs, s, path):
    lt = s.get("x-kubernetes-list-type")
    if "x-kubernetes-map-type" in s and s.get("type") != "object":
        errs.append(f"{path}.type: must be object if x-kubernetes-map-type is specified")
    if lt is not None:
        if lt not in ("atomic", "set", "map"):
            errs.append(f'{path}.x-kubernetes-list-type: Unsupported value: "{lt}"')
        if s.get("type") != "array":
            errs.append(f"{path}.type: must be array if x-kubernetes-list-type is specified")
    keys = s.get("x-kubernetes-list-map-keys") or []
    if keys and lt != "map":
        errs.append(f"{path}.x-kubernetes-list-type: must be map if x-kubernetes-list-map-keys is non-empty")
    if lt == "map":
        items = s.get("items")
        if not keys:
            errs.append(f"{path}.x-kubernetes-list-map-keys: must not be empty if x-kubernetes-list-type is map")
        if not isinstance(items, dict):
            errs.append(f"{path}.items: must have a schema if x-kubernetes-list-type is map")
        elif items.get("type") != "object":
            errs.append(f"{path}.items.type: must be object if parent array's x-kubernetes-list-type is map")
        else:
            ip = items.get("properties") or {}
            if not set(keys) <= set(ip):
                errs.append(f"{path}.x-kubernetes-list-map-keys: entries must all be names of item properties")
            for k in keys:
                if k in ip and k not in (items.get("required") or []) and "default" not in ip[k]:
                    errs.append(f"{path}.items.properties[{k}].default: this property is in "
                                "x-kubernetes-list-map-keys, so it must have a default or be a required property")
        if len(set(keys)) != len(keys):
            errs.append(f"{path}.x-kubernetes-list-map-keys: must not contain duplicate entries")


def _validations(errs, s, path):
    for i, r in enumerate(s.get("x-kubernetes-validations") or []):
        p = f"{path}.x-kubernetes-validations[{i}]"
        rule = r.get("rule", "")
        if not isinstance(rule, str) or not rule.strip():
            errs.append(f"{p}.rule: Required value: rule is not specified")
        if "message" in r:
            if not r["message"].strip():
                errs.append(f"{p}.message: must be non-empty if specified")
            elif "\n" in r["message"]:
                errs.append(f"{p}.message: must not contain line breaks")
        elif isinstance(rule, str) and "\n" in rule:
            errs.append(f"{p}.message: Required value: message must be specified if rule contains line breaks")


def _nested(errs, v, path, skip_anyof=False):
    """validateNestedValueValidation: only value validation below a junctor."""
    if not isinstance(v, dict):
        errs.append(f"{path}: must be a schema object")
        return
    for k, msg in NESTED_FORBIDDEN.items():
        if k in v and not _falsy(v[k]):
            errs.append(f"{path}.{k}: Forbidden: {msg}")
    props = v.get("properties") or {}
    if "metadata" in props:
        errs.append(f"{path}.properties[metadata]: Forbidden: must not be specified in a nested context")
    for j in JUNCTORS:
        for i, sub in enumerate(v.get(j) or []):
            if j == "anyOf" and skip_anyof:
                continue
            _nested(errs, sub, f"{path}.{j}[{i}]")
    if "not" in v:
        _nested(errs, v["not"], f"{path}.not")
    if isinstance(v.get("items"), dict):
        _nested(errs, v["items"], f"{path}.items")
    for k, sub in props.items():
        _nested(errs, sub, f"{path}.properties[{k}]")


def _complete(errs, v, s, spath, vpath):
    """complete.go: what a value validation names exists structurally."""
    for j in JUNCTORS:
        for i, sub in enumerate(v.get(j) or []):
            _complete_nested(errs, sub, s, spath, f"{vpath}.{j}[{i}]")
    if isinstance(v.get("not"), dict):
        _complete_nested(errs, v["not"], s, spath, f"{vpath}.not")


def _complete_nested(errs, v, s, spath, vpath):
    if not isinstance(v, dict):
        return
    if s is None:
        errs.append(f"{spath}: Required value: because it is defined in {vpath}")
        return
    _complete(errs, v, s, spath, vpath)
    if isinstance(v.get("items"), dict):
        _complete_nested(errs, v["items"], s.get("items"), f"{spath}.items", f"{vpath}.items")
    sprops = s.get("properties") or {}
    for k, sub in (v.get("properties") or {}).items():
        if k not in sprops:
            errs.append(f"{spath}.properties[{k}]: Required value: because it is defined in "
                        f"{vpath}.properties[{k}]")
        else:
            _complete_nested(errs, sub, sprops[k], f"{spath}.properties[{k}]", f"{vpath}.properties[{k}]")


def prune_schema(s):
    """The schema as JSON Schema with pruning made strict: an unknown field
    (one the API server would prune) is an error. x-kubernetes-* dropped."""
    out = {k: v for k, v in s.items() if not k.startswith("x-kubernetes-") and k != "default"}
    if "properties" in out:
        out["properties"] = {k: prune_schema(v) for k, v in out["properties"].items()}
        if "additionalProperties" not in out and not s.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    elif s.get("type") == "object" and "additionalProperties" not in s \
            and not s.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), dict):
            out[key] = prune_schema(out[key])
    for j in JUNCTORS:
        if j in out:
            out[j] = [prune_schema(x) for x in out[j]]
    return out


def _defaults(errs, s, path, nested_ok=True):
    """defaulting/validation.go: a default validates against its schema and
    has no field that pruning would drop."""
    if not isinstance(s, dict):
        return
    if "default" in s:
        if path.endswith(".properties[metadata]") and path.count(".properties[") == 1:
            pass  # root metadata defaults are checked as metadata by the API server
        else:
            try:
                jsonschema.validate(s["default"], prune_schema(s))
            except jsonschema.ValidationError as e:
                why = "must not have unknown fields" if e.validator == "additionalProperties" else e.message
                errs.append(f"{path}.default: Invalid value: {why}")
    if isinstance(s.get("items"), dict):
        _defaults(errs, s["items"], f"{path}.items")
    for k, v in (s.get("properties") or {}).items():
        _defaults(errs, v, f"{path}.properties[{k}]")
    if isinstance(s.get("additionalProperties"), dict):
        _defaults(errs, s["additionalProperties"], f"{path}.additionalProperties")


def check_schema(schema, path="spec.versions[0].schema.openAPIV3Schema", status=False):
    """Every rule above for one version's openAPIV3Schema."""
    errs = []
    _node(errs, schema, path, "root", status_root=status)
    _defaults(errs, schema, path)
    return errs


def check_crd(doc):
    """The API server's verdict on one CustomResourceDefinition."""
    errs = []
    if doc.get("apiVersion") != "apiextensions.k8s.io/v1" or doc.get("kind") != "CustomResourceDefinition":
        return ["apiVersion/kind: not an apiextensions.k8s.io/v1 CustomResourceDefinition"]
    spec = doc.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group", "")
    plural = names.get("plural", "")
    if doc.get("metadata", {}).get("name") != f"{plural}.{group}":
        errs.append(f'metadata.name: must be spec.names.plural+"."+spec.group')
    if "." not in group:
        errs.append("spec.group: should be a domain with at least one dot")
    for key in ("plural", "singular"):
        if key in names and not DNS_LABEL.match(names[key]):
            errs.append(f"spec.names.{key}: must be a DNS-1035-like lowercase label")
    if not names.get("kind") or not names.get("listKind"):
        errs.append("spec.names.kind/listKind: Required value")
    elif names["kind"] == names["listKind"]:
        errs.append("spec.names.listKind: kind and listKind may not be the same")
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        errs.append("spec.scope: Unsupported value")
    if spec.get("preserveUnknownFields"):
        errs.append("spec.preserveUnknownFields: cannot set to true, set "
                    "x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead")
    versions = spec.get("versions") or []
    if not versions:
        errs.append("spec.versions: Required value")
    if sum(1 for v in versions if v.get("storage")) != 1:
        errs.append("spec.versions: Invalid value: must have exactly one version marked as storage version")
    if not any(v.get("served") for v in versions):
        errs.append("spec.versions: must have at least one version served")
    for i, v in enumerate(versions):
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if schema is None:
            errs.append(f"spec.versions[{i}].schema.openAPIV3Schema: Required value")
            continue
        status = "status" in (v.get("subresources") or {})
        errs += check_schema(schema, f"spec.versions[{i}].schema.openAPIV3Schema", status)
    return errs
