"""A small checker of live responses against docs/openapi.yaml (status codes and schemas).

OpenAPI 3.1 schemas are JSON Schema 2020-12, so ``jsonschema`` validates them directly;
``$ref``s resolve inside the spec document.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parents[1] / "docs" / "openapi.yaml"
SPEC_URI = "urn:reelstream:openapi"


@cache
def spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text())


@cache
def _registry() -> Registry:
    return Registry().with_resource(
        SPEC_URI, Resource.from_contents(spec(), default_specification=DRAFT202012)
    )


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = spec()
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def response_schema(route: str, status: int, method: str = "get") -> dict[str, Any]:
    """The schema the spec gives for ``route`` (a path template) answering ``status``."""
    op = spec()["paths"][route][method]
    responses = op["responses"]
    if str(status) not in responses:
        raise AssertionError(f"{method.upper()} {route} documents no {status} response")
    resp = _resolve(responses[str(status)])
    return resp["content"]["application/json"]["schema"]


def check_response(route: str, status: int, body: Any, method: str = "get") -> None:
    """Raise AssertionError when the status is undocumented or the body does not match."""
    schema = response_schema(route, status, method)
    wrapped = {"$ref": SPEC_URI + "#" + _schema_pointer(route, status, method, schema)}
    validator = Draft202012Validator(wrapped, registry=_registry())
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    if errors:
        raise AssertionError(
            f"{method.upper()} {route} {status}: {errors[0].message} at {list(errors[0].path)}"
        )


def _schema_pointer(route: str, status: int, method: str, schema: dict[str, Any]) -> str:
    responses = spec()["paths"][route][method]["responses"]
    node = responses[str(status)]
    if "$ref" in node:
        base = node["$ref"][1:].split("/")[1:]
        return _pointer(*base, "content", "application/json", "schema")
    return _pointer(
        "paths", route, method, "responses", str(status), "content", "application/json", "schema"
    )
