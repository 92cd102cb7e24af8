"""Checks HTTP responses against docs/openapi.json (standard library only).

    spec = openapi_check.load()
    openapi_check.check_response(spec, "/v1/tasks/{task_id}", "get", 200, body)

Supports the subset of JSON Schema that docs/openapi.json uses: type
(object, array, string, integer, number, boolean, null), required,
properties, additionalProperties (false or a schema), enum, items, minimum,
maximum and $ref to "#/components/...". A response status the document does
not list for the operation is itself an error. Raises AssertionError with
the JSON path of the first mismatch.
"""

import json
import os

import common

SPEC_PATH = os.path.join(common.SOURCE_DIR, "docs", "openapi.json")

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
_KNOWN = {"type", "required", "properties", "additionalProperties", "enum", "items",
          "minimum", "maximum", "$ref", "description", "format"}


def load(path=SPEC_PATH):
    with open(path) as f:
        return json.load(f)


def resolve(spec, node):
    """Follows $ref chains inside the document."""
    seen = 0
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise AssertionError(f"unsupported $ref {ref}")
        node = spec
        for part in ref[2:].split("/"):
            node = node[part]
        seen += 1
        if seen > 32:
            raise AssertionError(f"$ref loop at {ref}")
    return node


def validate(spec, schema, value, path="$"):
    """Validates value against schema; raises AssertionError on mismatch."""
    schema = resolve(spec, schema)
    unknown = set(schema) - _KNOWN
    if unknown:
        raise AssertionError(f"{path}: schema uses unsupported keywords {sorted(unknown)}")
    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        if not any(_TYPES[x](value) for x in types):
            raise AssertionError(f"{path}: expected {t}, got {type(value).__name__}: {value!r:.80}")
    if "enum" in schema and value not in schema["enum"]:
        raise AssertionError(f"{path}: {value!r} not in {schema['enum']}")
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        raise AssertionError(f"{path}: {value} < minimum {schema['minimum']}")
    if "maximum" in schema and isinstance(value, (int, float)) and value > schema["maximum"]:
        raise AssertionError(f"{path}: {value} > maximum {schema['maximum']}")
    if isinstance(value, dict):
        for k in schema.get("required", []):
            if k not in value:
                raise AssertionError(f"{path}: required property {k!r} missing")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                validate(spec, props[k], v, f"{path}.{k}")
            elif extra is False:
                raise AssertionError(f"{path}: property {k!r} not allowed")
            elif isinstance(extra, dict):
                validate(spec, extra, v, f"{path}.{k}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            validate(spec, schema["items"], v, f"{path}[{i}]")


def check_response(spec, path, method, status, body, content_type="application/json"):
    """Validates one response of the operation at paths[path][method]."""
    op = spec["paths"].get(path, {}).get(method.lower())
    if op is None:
        raise AssertionError(f"{method.upper()} {path} is not in the OpenAPI document")
    resp = op["responses"].get(str(status))
    if resp is None:
        raise AssertionError(f"{method.upper()} {path}: status {status} is not documented "
                             f"(documented: {sorted(op['responses'])})")
    resp = resolve(spec, resp)
    content = resp.get("content")
    if not content:
        return
    media = content.get(content_type)
    if media is None:
        raise AssertionError(f"{method.upper()} {path} {status}: no {content_type} content "
                             f"documented")
    if "schema" in media and content_type == "application/json":
        validate(spec, media["schema"], body, f"{method.upper()} {path} {status}")


def self_test():
    """The validator rejects what it must: run by the test before use."""
    spec = {"components": {"schemas": {"A": {"type": "object", "required": ["x"],
                                              "additionalProperties": False,
                                              "properties": {"x": {"type": "integer"},
                                                             "e": {"enum": ["a"]},
                                                             "l": {"type": "array",
                                                                   "items": {"type": "string"}}}}}}}
    ref = {"$ref": "#/components/schemas/A"}
    validate(spec, ref, {"x": 1, "e": "a", "l": ["s"]})
    for bad in ({}, {"x": "1"}, {"x": 1, "y": 2}, {"x": 1, "e": "b"}, {"x": 1, "l": [1]},
                {"x": True}, []):
        try:
            validate(spec, ref, bad)
        except AssertionError:
            continue
        raise AssertionError(f"validator accepted {bad!r}")
