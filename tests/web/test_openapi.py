"""web/openapi.json: a valid OpenAPI 3.1 document describing exactly the routes the app serves.

No Redis needed: creating the app registers its routes; Redis is only reached on startup.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from aiohttp import web
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from feed.settings import Settings
from web.app import create_app

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ROLES = {"operator", "moderator", "admin", "screen"}


def _document() -> dict[str, Any]:
    doc = json.loads(resources.files("web").joinpath("openapi.json").read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def _documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in METHODS
        if method in item
    }


def _registered() -> set[tuple[str, str]]:
    """(method, path template) of every route, without the HEAD aiohttp adds beside each GET,
    nor the static files under /static/ (the pages' scripts and styles, not an API)."""
    app = create_app(Settings(), "redis://127.0.0.1:1/0")
    routes: set[tuple[str, str]] = set()
    for route in app.router.routes():
        assert route.resource is not None
        if isinstance(route.resource, web.StaticResource):
            continue
        routes.add((route.method, route.resource.canonical))
    return {
        (method, path)
        for method, path in routes
        if not (method == "HEAD" and ("GET", path) in routes)
    }


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = _document()
    assert doc["openapi"].startswith("3.1.")
    validate(doc, cls=OpenAPIV31SpecValidator)


def test_the_document_and_the_app_have_the_same_routes() -> None:
    registered = _registered()
    documented = _documented(_document())
    assert registered - documented == set(), "routes the app serves but the document lacks"
    assert documented - registered == set(), "operations the document has but the app lacks"


def test_operations_with_a_token_say_which_roles_and_document_its_errors() -> None:
    doc = _document()
    schemes = doc["components"]["securitySchemes"]
    for path, item in doc["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None or not operation.get("security", doc.get("security")):
                continue
            where = f"{method.upper()} {path}"
            for requirement in operation["security"]:
                for scheme, roles in requirement.items():
                    assert scheme in schemes, where
                    assert roles, f"{where}: name the roles"
                    assert set(roles) <= ROLES, where
            assert {"401", "403", "429", "503"} <= set(operation["responses"]), where
