"""`/openapi.json` and the `/docs` page, with no token and no CDN.

The page is Swagger UI, whose files come from the `swagger-ui-py` package
and are served from here, so the docs work on a machine with no internet
access and no third party learns who reads them. Only the files the page
needs are served.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, send_from_directory

from lnplugin.api import openapi
from lnplugin.api.errors import APIError

bp = Blueprint("docs", __name__)


def _swagger_ui_static() -> Path:
    """The Swagger UI files the `swagger-ui-py` package ships. Found without
    importing the package: its import loads PyYAML and its web-framework
    handlers, a tenth of the server's start, and only the files are served."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or spec.origin is None:
        raise ImportError("swagger-ui-py is not installed (it is a dependency of lnplugin)")
    return Path(spec.origin).parent / "static"


ASSETS = _swagger_ui_static()
SERVED = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "index.css",
        "favicon-32x32.png",
        "favicon-16x16.png",
    }
)
PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>lnplugin API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
"""
# A file, not inline, so a Content-Security-Policy without 'unsafe-inline' allows it.
INIT = 'window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});\n'


def document(app: Flask) -> dict[str, Any]:
    """Built once per app, on first use, when every blueprint is registered."""
    cached = app.extensions.get("lnplugin_openapi")
    if cached is None:
        cached = openapi.build(app)
        app.extensions["lnplugin_openapi"] = cached
    return cached


@bp.get("/openapi.json")
def openapi_json() -> Any:
    return document(current_app)


# The page runs requests with the operator's token once they press
# Authorize, so it gets the checkout page's guard: only its own scripts, no
# framing by another site (a click-jacked "Execute"). Swagger UI draws some
# icons from data: URIs.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@bp.get("/docs")
def docs_page() -> Any:
    response = Response(PAGE, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/docs/<path:filename>")
def asset(filename: str) -> Any:
    if filename == "init.js":
        return Response(INIT, mimetype="text/javascript")
    if filename not in SERVED:
        raise APIError(404, "Not found")
    return send_from_directory(ASSETS, filename, max_age=86400)


def register(app: Flask) -> None:
    app.register_blueprint(bp)
