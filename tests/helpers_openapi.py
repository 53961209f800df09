"""Check one real answer against lnplugin's own OpenAPI document, strictly.

The contract test (`test_openapi_contract.py`) calls every operation with
generated input; answers that only a particular node or state gives (a 501
from a node that cannot hold invoices, a 503 from a busy store) are checked
here, in the tests that bring them about. Strict: the document's `default`
answer is taken out, so the status must be one the operation lists, and the
body and headers must match what it lists for that status.
"""

from __future__ import annotations

import copy
from typing import Any

import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def strict(document: dict[str, Any]) -> Any:
    """The document without its `default` answers, for schemathesis."""
    document = copy.deepcopy(document)
    for item in document["paths"].values():
        for operation in item.values():
            operation["responses"].pop("default", None)
    return schemathesis.openapi.from_dict(document)


def conforms(document: dict[str, Any], method: str, path: str, reply: Any, **params: Any) -> None:
    """Raise unless `reply` (a requests or Flask test response to METHOD PATH,
    an OpenAPI path template filled by `params`) is an answer the document lists."""
    operation = strict(document).find_operation_by_path(method, path)
    operation.Case(path_parameters=params).validate_response(reply, checks=CONFORMANCE)
