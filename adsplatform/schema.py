"""OpenAPI post-processing: every operation documents the errors it can answer with.

The views raise DRF errors shaped by adsplatform.errors as {"error": {code, message, details}};
drf-spectacular documents only success bodies, so clients (and schemathesis) would meet
undocumented 400/401/403/404/429 answers.
"""

from __future__ import annotations

from typing import Any

ERROR_COMPONENT = "ErrorResponse"
_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"nullable": True},
            },
            "required": ["code", "message", "details"],
        }
    },
    "required": ["error"],
}
_DESCRIPTIONS = {
    "400": "The request is invalid; `details` names the fields.",
    "401": "Missing, expired or invalid credentials.",
    "403": "Authenticated, but not allowed to do this.",
    "404": "No such object (or not yours).",
    "413": "The body is too large.",
    "415": "Send Content-Type: application/json.",
    "429": "Too many requests; retry after the Retry-After header's seconds.",
}
_THROTTLED_PATH_PREFIXES = ("/api/v1/auth/",)
_RAW_BODY_PATH_PREFIXES = ("/api/v1/webhooks/",)


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault(ERROR_COMPONENT, _ERROR_SCHEMA)
    reference = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            codes = ["400"]  # every operation parses a body or query parameters
            security = operation.get("security") or []
            if any(requirement for requirement in security):
                codes += ["401", "403"]
            has_page = any(p.get("name") == "page" for p in operation.get("parameters", []))
            if "{" in path or has_page:  # an unknown id, or a page past the last one
                codes.append("404")
            if method in ("post", "put", "patch"):
                codes += ["413", "415"]
            if path.startswith(_THROTTLED_PATH_PREFIXES):
                codes += ["401", "429"]
            if path.startswith(_RAW_BODY_PATH_PREFIXES) and "requestBody" in operation:
                # Receivers read the raw body themselves (signatures); a missing one is a 4xx.
                operation["requestBody"]["required"] = True
            responses = operation.setdefault("responses", {})
            for code in codes:
                responses.setdefault(
                    code,
                    {"description": _DESCRIPTIONS[code], "content": {"application/json": {"schema": reference}}},
                )
    return result
