#!/usr/bin/env python3
"""Renders gateway-config/openapi.yaml with the variables Terraform passes and validates it.

The variable names are the ones terraform/main.tf passes to templatefile() (the infra test checks
that they match the template's placeholders); the values are shaped like a real deployment's.
The result must be a valid OpenAPI 3 document that still carries every route of the contract.
"""

import json
import pathlib
import re
import sys

import yaml
from openapi_spec_validator import validate

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from provision import render  # noqa: E402  (the same renderer the local stack uses)

ROOT = pathlib.Path(__file__).resolve().parent.parent
TERRAFORM_LIKE = {
    "aws_region": "eu-west-1",
    "account_id": "123456789012",
    "request_queue_name": "qbill-requests",
    "reply_queue_prefix": "qbill-reply-",
    "gateway_role_arn": "arn:aws:iam::123456789012:role/qbill-gateway",
}
CONTRACT = {
    "/auth": ["post"],
    "/apartments/{apartment_id}/utils": ["post"],
    "/apartments/{apartment_id}/histories": ["post"],
    "/apartments/{apartment_id}/payments": ["post"],
    "/auth/{queue_name}": ["get"],
    "/apartments/{apartment_id}/utils/{queue_name}": ["get"],
    "/apartments/{apartment_id}/histories/{queue_name}": ["get"],
    "/apartments/{apartment_id}/payments/{queue_name}": ["get"],
    "/replies/{queue_name}": ["get"],
    "/apartments/{apartment_id}/bills/{bill_id}": ["post"],
    "/apartments/link": ["post"],
    "/providers/{provider_id}/bills": ["post"],
    "/providers/{provider_id}/bills/{bill_id}/void": ["post"],
    "/providers/{provider_id}/policy": ["post"],
    "/providers": ["post"],
    "/users": ["post"],
    "/auth/signup": ["post"],
    "/auth/verify-email": ["post"],
    "/auth/password-reset": ["post"],
    "/auth/password-reset/confirm": ["post"],
    "/auth/refresh": ["post"],
    "/auth/logout": ["post"],
    "/me": ["post"],
    "/me/profile": ["post"],
    "/me/password": ["post"],
    "/me/delete": ["post"],
    "/me/notifications": ["post"],
}
# The routes taken without a token: they pass the caller's address (for their throttles) and no
# Authorization header; every other route passes the header.
TOKENLESS = {"auth", "signup", "verify_email", "password_reset", "password_reset_confirm", "refresh", "logout"}
ROUTE_ATTRIBUTE = re.compile(r"&MessageAttribute\.1\.Name=route&MessageAttribute\.1\.Value\.DataType=String&MessageAttribute\.1\.Value\.StringValue=(\w+)&")


def main() -> None:
    rendered = render((ROOT / "gateway-config" / "openapi.yaml").read_text(), TERRAFORM_LIKE)
    # As Terraform hands it to API Gateway: jsonencode(yamldecode(...)).
    document = json.loads(json.dumps(yaml.safe_load(rendered)))
    assert "${" not in json.dumps(document), "a placeholder was left unfilled"
    validate(document)
    for path, methods in CONTRACT.items():
        for method in methods:
            operation = document["paths"].get(path, {}).get(method)
            assert operation, f"{method.upper()} {path} is missing"
            integration = operation["x-amazon-apigateway-integration"]
            assert integration["uri"].startswith("arn:aws:apigateway:eu-west-1:sqs:path/123456789012/qbill-"), integration["uri"]
    schemas = document["components"]["schemas"]
    for path, item in document["paths"].items():
        operation = item.get("post")
        if not operation:
            continue
        # One name per operation: the operationId is the route attribute the worker dispatches on.
        route = operation["operationId"]
        template = operation["x-amazon-apigateway-integration"]["requestTemplates"]["application/json"]
        found = ROUTE_ATTRIBUTE.findall(template)
        assert found == [route], f"POST {path}: operationId {route} but route attribute {found}"
        assert ("Name=authorization&" in template) == (route not in TOKENLESS), f"POST {path}: Authorization"
        assert ("Name=source_ip&" in template) == (route in TOKENLESS), f"POST {path}: source_ip"
        schema = schemas[operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
        assert schema.get("additionalProperties") is False, f"POST {path}: additionalProperties"
        assert {"queue_name", "request_id"} <= set(schema["required"]), f"POST {path}: the envelope's fields"
    operations = sum(len(m) for m in document["paths"].values())
    print(f"gateway-config: valid OpenAPI {document['openapi']} as Terraform renders it ({len(document['paths'])} paths, {operations} operations)")


if __name__ == "__main__":
    main()
