#!/usr/bin/env python3
"""Renders gateway-config/openapi.yaml with the variables Terraform passes and validates it.

The variable names are the ones terraform/main.tf passes to templatefile() (the infra test checks
that they match the template's placeholders); the values are shaped like a real deployment's.
The result must be a valid OpenAPI 3 document that still carries every route of the contract,
in which every status an integration can answer is a declared method response, and the reply
polls' error template tells a missing reply queue (an empty list) from every other SQS error.
The partition is not "aws", so an ARN the template does not build from it shows up here.
Browsers may call it from the configured origin (CORS): every path answers a preflight, and every
answer, the gateway's own errors included, allows that origin and no other.
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
    "partition": "aws-us-gov",
    "aws_region": "us-gov-west-1",
    "account_id": "123456789012",
    "request_queue_name": "qbill-requests",
    "reply_queue_prefix": "qbill-reply-",
    "gateway_role_arn": "arn:aws-us-gov:iam::123456789012:role/qbill-gateway",
    # A web app served from CloudFront, as a deployment would allow.
    "allowed_origin": "https://d111111abcdef8.cloudfront.net",
}
# contract:begin
# Written by `qbill contract` from the routes: every POST route, and those that take no token.
ROUTES = {
    "/auth": "auth",
    "/apartments/{apartment_id}/utils": "utils",
    "/apartments/{apartment_id}/histories": "histories",
    "/apartments/{apartment_id}/payments": "payments",
    "/apartments/{apartment_id}/payments/{payment_id}": "payment",
    "/apartments/{apartment_id}/payments/external": "payments_external",
    "/payments/{payment_id}/refund": "refund",
    "/me/payment-methods": "me_payment_methods",
    "/me/payment-methods/list": "me_payment_methods_list",
    "/me/payment-methods/{payment_method_id}/delete": "me_payment_method_delete",
    "/providers/{provider_id}/settlements": "settlements",
    "/providers/{provider_id}/documents": "provider_documents",
    "/providers/{provider_id}/events": "events",
    "/me/phone/verify": "me_phone_verify",
    "/providers/{provider_id}/webhooks": "webhooks",
    "/providers/{provider_id}/webhooks/list": "webhooks_list",
    "/providers/{provider_id}/webhooks/{webhook_id}": "webhook",
    "/providers/{provider_id}/webhooks/{webhook_id}/delete": "webhook_delete",
    "/providers/{provider_id}/webhooks/{webhook_id}/rotate": "webhook_rotate",
    "/providers/{provider_id}/webhooks/{webhook_id}/deliveries": "webhook_deliveries",
    "/providers/{provider_id}/webhooks/{webhook_id}/replay": "webhook_replay",
    "/apartments/{apartment_id}/bills/{bill_id}": "bill",
    "/apartments/link": "apartments_link",
    "/providers/{provider_id}/bills": "bills_ingest",
    "/providers/{provider_id}/bills/{bill_id}/void": "bill_void",
    "/providers/{provider_id}/policy": "policy",
    "/providers": "provider",
    "/users": "user",
    "/auth/signup": "signup",
    "/auth/verify-email": "verify_email",
    "/auth/password-reset": "password_reset",
    "/auth/password-reset/confirm": "password_reset_confirm",
    "/auth/email-undo": "email_undo",
    "/auth/refresh": "refresh",
    "/auth/logout": "logout",
    "/me": "me",
    "/me/profile": "me_profile",
    "/me/password": "me_password",
    "/me/delete": "me_delete",
    "/me/notifications": "notifications",
    "/me/sessions": "me_sessions",
    "/apartments/{apartment_id}/documents": "document",
}
TOKENLESS = {"auth", "signup", "verify_email", "password_reset", "password_reset_confirm", "email_undo", "refresh", "logout"}
# contract:end
# The reply queues, polled with a GET; with the routes' POSTs, the whole contract.
POLLS = [
    "/auth/{queue_name}",
    "/apartments/{apartment_id}/utils/{queue_name}",
    "/apartments/{apartment_id}/histories/{queue_name}",
    "/replies/{queue_name}",
]
# The payments processor's webhooks: no token, no reply queue, the raw body and its signature.
WEBHOOKS = {"/webhooks/stripe": "stripe_webhook"}
CONTRACT = {
    **{path: ["post"] for path in ROUTES},
    **{path: ["get"] for path in POLLS},
    **{path: ["post"] for path in WEBHOOKS},
}
# The routes taken without a token (TOKENLESS) pass no Authorization header; every other route
# passes the header and requires it (a request without one is refused by the gateway, never
# enqueued). Every route passes the caller's address (for the throttles).
ROUTE_ATTRIBUTE = re.compile(r"&MessageAttribute\.1\.Name=route&MessageAttribute\.1\.Value\.DataType=String&MessageAttribute\.1\.Value\.StringValue=(\w+)&")


def main() -> None:
    rendered = render((ROOT / "gateway-config" / "openapi.yaml").read_text(), TERRAFORM_LIKE)
    # As Terraform hands it to API Gateway: jsonencode(yamldecode(...)).
    document = json.loads(json.dumps(yaml.safe_load(rendered)))
    assert "${" not in json.dumps(document), "a placeholder was left unfilled"
    assert "arn:aws:" not in json.dumps(document), "an ARN names the aws partition instead of ${partition}"
    validate(document)
    for path, methods in CONTRACT.items():
        for method in methods:
            operation = document["paths"].get(path, {}).get(method)
            assert operation, f"{method.upper()} {path} is missing"
            integration = operation["x-amazon-apigateway-integration"]
            assert integration["uri"].startswith("arn:aws-us-gov:apigateway:us-gov-west-1:sqs:path/123456789012/qbill-"), integration["uri"]
    schemas = document["components"]["schemas"]
    for path, item in document["paths"].items():
        operation = item.get("post")
        if not operation:
            continue
        if path in WEBHOOKS:
            check_webhook(path, operation, WEBHOOKS[path])
            continue
        # One name per operation: the operationId is the route attribute the worker dispatches on.
        route = operation["operationId"]
        template = operation["x-amazon-apigateway-integration"]["requestTemplates"]["application/json"]
        found = ROUTE_ATTRIBUTE.findall(template)
        assert found == [route], f"POST {path}: operationId {route} but route attribute {found}"
        assert ("Name=authorization&" in template) == (route not in TOKENLESS), f"POST {path}: Authorization"
        assert "Name=source_ip&" in template, f"POST {path}: source_ip"
        validator = document["x-amazon-apigateway-request-validators"][operation["x-amazon-apigateway-request-validator"]]
        assert validator["validateRequestBody"], f"POST {path}: the body is not validated"
        required_headers = {
            p["name"] for p in operation.get("parameters", []) if p["in"] == "header" and p.get("required")
        }
        if route in TOKENLESS:
            assert not required_headers, f"POST {path}: requires {required_headers}, but takes no token"
        else:
            assert required_headers == {"Authorization"}, f"POST {path}: requires {required_headers}, not Authorization"
            assert validator["validateRequestParameters"], f"POST {path}: its required Authorization header is not checked"
        schema = schemas[operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
        assert schema.get("additionalProperties") is False, f"POST {path}: additionalProperties"
        assert {"queue_name", "request_id"} <= set(schema["required"]), f"POST {path}: the envelope's fields"
    check_statuses(document)
    check_reply_poll_errors(document)
    check_cors(document, TERRAFORM_LIKE["allowed_origin"])
    operations = sum(len(m) for m in document["paths"].values())
    preflights = sum("options" in m for m in document["paths"].values())
    print(
        f"gateway-config: valid OpenAPI {document['openapi']} as Terraform renders it ({len(document['paths'])} paths, {operations} operations"
        f" of which {preflights} CORS preflights allowing {TERRAFORM_LIKE['allowed_origin']})"
    )


def check_webhook(path: str, operation: dict, route: str) -> None:
    """A webhook passes the body untouched and the signature header, takes no token, and is
    answered 200 only once enqueued."""
    assert operation["operationId"] == route, f"POST {path}: operationId"
    templates = operation["x-amazon-apigateway-integration"]["requestTemplates"]
    assert "application/json; charset=utf-8" in templates, f"POST {path}: the processor's content type"
    for template in templates.values():
        assert ROUTE_ATTRIBUTE.findall(template) == [route], f"POST {path}: route attribute"
        assert "MessageBody=$util.urlEncode($input.body)&" in template, f"POST {path}: the raw body"
        assert "Name=stripe_signature&" in template, f"POST {path}: the signature"
        assert "Name=authorization&" not in template, f"POST {path}: takes no token"
    responses = operation["x-amazon-apigateway-integration"]["responses"]
    assert responses["default"]["statusCode"] == "200", f"POST {path}: 200 once enqueued"
    assert any(r["statusCode"] == "502" for r in responses.values()), f"POST {path}: 502 when not enqueued"


OVERRIDE = re.compile(r"#set\(\$context\.responseOverride\.status = (\d{3})\)")


def check_statuses(document: dict) -> None:
    """Every status an integration response gives, or a template overrides to, is declared as a
    method response of the operation: API Gateway refuses to map to an undeclared one."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            declared = set(operation["responses"])
            integration_responses = operation["x-amazon-apigateway-integration"]["responses"]
            # API Gateway keeps one integration response per status code: a second one mapped to
            # the same status would silently replace the first.
            mapped = [r["statusCode"] for r in integration_responses.values()]
            assert len(mapped) == len(set(mapped)), f"{method.upper()} {path}: two integration responses map to one status: {mapped}"
            for pattern, response in operation["x-amazon-apigateway-integration"]["responses"].items():
                statuses = {response["statusCode"]}
                for template in response.get("responseTemplates", {}).values():
                    statuses |= set(OVERRIDE.findall(template))
                undeclared = statuses - declared
                assert not undeclared, f"{method.upper()} {path}: {pattern!r} answers {sorted(undeclared)}, not a method response ({sorted(declared)})"


# What SQS answers ReceiveMessage when it refuses, in the shapes API Gateway may be handed: the
# query protocol's JSON (Accept: application/json) and XML, and the JSON protocol's body.
SQS_ERRORS = {
    "missing queue, query JSON": (400, '{"Error":{"Code":"AWS.SimpleQueueService.NonExistentQueue","Message":"The specified queue does not exist for this wsdl version.","Type":"Sender"},"RequestId":"r"}'),
    "missing queue, query XML": (400, '<?xml version="1.0"?><ErrorResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/"><Error><Type>Sender</Type><Code>AWS.SimpleQueueService.NonExistentQueue</Code><Message>The specified queue does not exist for this wsdl version.</Message><Detail/></Error><RequestId>r</RequestId></ErrorResponse>'),
    "missing queue, JSON protocol": (400, '{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"The specified queue does not exist."}'),
    "access denied": (403, '{"Error":{"Code":"AccessDenied","Message":"Access to the resource https://sqs.us-gov-west-1.amazonaws.com/123456789012/qbill-reply-x is denied.","Type":"Sender"},"RequestId":"r"}'),
    "access denied, XML": (403, "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>Access to the resource is denied.</Message></Error></ErrorResponse>"),
    "throttled, query": (403, '{"Error":{"Code":"RequestThrottled","Message":"Request is throttled.","Type":"Sender"},"RequestId":"r"}'),
    "throttled, JSON protocol": (400, '{"__type":"com.amazonaws.sqs#ThrottlingException","message":"Rate exceeded"}'),
    "KMS throttled": (400, '{"Error":{"Code":"KMS.ThrottlingException","Message":"Rate exceeded","Type":"Sender"},"RequestId":"r"}'),
    "over limit": (403, '{"Error":{"Code":"OverLimit","Message":"Too many inflight messages.","Type":"Sender"},"RequestId":"r"}'),
    "SQS failing": (500, '{"Error":{"Code":"InternalError","Message":"We encountered an internal error. Please try again.","Type":"Receiver"},"RequestId":"r"}'),
    "SQS unavailable, XML": (503, "<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code><Message>Service is unavailable.</Message></Error></ErrorResponse>"),
    "queue named like an error": (403, '{"Error":{"Code":"AccessDenied","Message":"Access to the resource https://sqs.us-gov-west-1.amazonaws.com/123456789012/qbill-reply-QueueDoesNotExist is denied.","Type":"Sender"},"RequestId":"r"}'),
}
EXPECTED = {
    "missing queue, query JSON": (200, {"replies": []}),
    "missing queue, query XML": (200, {"replies": []}),
    "missing queue, JSON protocol": (200, {"replies": []}),
    "access denied": (502, None),
    "access denied, XML": (502, None),
    "throttled, query": (429, None),
    "throttled, JSON protocol": (429, None),
    "KMS throttled": (429, None),
    "over limit": (502, None),
    "SQS failing": (502, None),
    "SQS unavailable, XML": (502, None),
    "queue named like an error": (502, None),
}


def velocity(template: str, body: str, status: int, params: dict[str, str]) -> tuple[int, str]:
    """Runs the small part of Velocity the reply polls' error template uses: #set of a variable
    to $input.body or to "$input.params('name')", #if/#elseif/#else/#end over
    `$var.contains('...')` joined by || or a lone `!$var.matches('...')`, #set of
    $context.responseOverride.status, and literal text. Anything else fails the check, so the
    template stays within what this reads."""
    tokens = re.split(r"(#set\((?:[^()]|\([^()]*\))*\)|#if\((?:[^()]|\([^()]*\))*\)|#elseif\((?:[^()]|\([^()]*\))*\)|#else|#end)", template)
    variables: dict[str, str] = {}
    out: list[str] = []
    # A stack of [this branch runs, a branch of this #if already ran].
    stack: list[list[bool]] = []

    def condition(text: str) -> bool:
        m = re.fullmatch(r"!\$(\w+)\.matches\('([^']*)'\)", text.strip())
        if m:
            # Java's String.matches: the whole string.
            return re.fullmatch(m.group(2), variables[m.group(1)]) is None
        terms = [t.strip() for t in text.split("||")]
        results = []
        for term in terms:
            m = re.fullmatch(r"\$(\w+)\.contains\('([^']*)'\)", term)
            assert m, f"the error template uses {term!r}, which this check does not read"
            results.append(m.group(2) in variables[m.group(1)])
        return any(results)

    for token in tokens:
        running = all(frame[0] for frame in stack)
        if token.startswith("#set("):
            if not running:
                continue
            m = OVERRIDE.fullmatch(token)
            if m:
                status = int(m.group(1))
                continue
            m = re.fullmatch(r"#set\(\$(\w+) = \$input\.body\)", token)
            if m:
                variables[m.group(1)] = body
                continue
            m = re.fullmatch(r"#set\(\$(\w+) = \"\$input\.params\('(\w+)'\)\"\)", token)
            assert m, f"the error template uses {token!r}, which this check does not read"
            variables[m.group(1)] = params[m.group(2)]
        elif token.startswith("#if("):
            outer = running
            taken = outer and condition(token[4:-1])
            stack.append([taken, taken or not outer])
        elif token.startswith("#elseif("):
            frame = stack[-1]
            taken = not frame[1] and condition(token[8:-1])
            frame[0], frame[1] = taken, frame[1] or taken
        elif token == "#else":
            frame = stack[-1]
            frame[0], frame[1] = not frame[1], True
        elif token == "#end":
            stack.pop()
        elif running:
            assert "$" not in token and "#" not in token, f"the error template has {token!r}, which this check does not read"
            out.append(token)
    assert not stack, "an #if without #end"
    return status, "".join(out)


# Queue names a poll must refuse (400) without reading any queue: reply queues are named by
# lower-case UUIDs only.
INVALID_QUEUE_NAMES = [
    "6F1C0A8E-0000-4000-8000-000000000001",
    "..%2Fqbill-requests",
    "%2e%2e",
    "6f1c0a8e-0000-4000-8000-00000000000",
    "6f1c0a8e-0000-4000-8000-0000000000011",
    "a" * 200,
]
VALID_QUEUE_NAME = "6f1c0a8e-0000-4000-8000-000000000001"
QUEUE_CHECK = re.compile(r"#if\(!\$q\.matches\('(\^[^']*\$)'\)\)#set\(\$context\.requestOverride\.path\.queue_name = '([a-z-]+)'\)#end")


def check_reply_poll_errors(document: dict) -> None:
    """A reply poll answers an empty list only when the reply queue does not exist; a throttled
    read is a 429, any other refusal a 502; a queue name that is not a lower-case UUID is a 400,
    and the read goes to a queue no reply queue can be instead of the one it names."""
    polls = [(path, item["get"]) for path, item in document["paths"].items() if "get" in item]
    assert polls, "no reply polls"
    for path, operation in polls:
        responses = operation["x-amazon-apigateway-integration"]["responses"]
        assert set(responses) == {"[45]\\d{2}", "default"}, f"GET {path}: {sorted(responses)}"
        assert responses["default"]["statusCode"] == "200", f"GET {path}: the replies"
        response = responses["[45]\\d{2}"]
        template = response["responseTemplates"]["application/json"]
        request = operation["x-amazon-apigateway-integration"]["requestTemplates"]["application/json"]
        swap = QUEUE_CHECK.search(request)
        assert swap, f"GET {path}: the request template does not swap an invalid queue name"
        assert not re.fullmatch(swap.group(1), swap.group(2)), f"GET {path}: the swapped name {swap.group(2)} could be a reply queue"
        assert re.fullmatch(swap.group(1), VALID_QUEUE_NAME), f"GET {path}: a lower-case UUID is refused"
        for name in INVALID_QUEUE_NAMES:
            assert not re.fullmatch(swap.group(1), name), f"GET {path}: {name!r} is let through"
            for case, (sqs_status, body) in SQS_ERRORS.items():
                status, text = velocity(template, body, int(response["statusCode"]), {"queue_name": name})
                assert status == 400 and json.loads(text).get("message"), f"GET {path}, {name!r}, {case}: {status} {text}"
        for case, (sqs_status, body) in SQS_ERRORS.items():
            assert re.fullmatch("[45]\\d{2}", str(sqs_status))
            status, text = velocity(template, body, int(response["statusCode"]), {"queue_name": VALID_QUEUE_NAME})
            want_status, want_body = EXPECTED[case]
            assert status == want_status, f"GET {path}, {case}: {status}, not {want_status}"
            answer = json.loads(text)
            if want_body is not None:
                assert answer == want_body, f"GET {path}, {case}: {answer}"
            else:
                assert "replies" not in answer and answer.get("message"), f"GET {path}, {case}: {answer}"


ALLOW_ORIGIN = "Access-Control-Allow-Origin"
PREFLIGHT_HEADERS = {"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age"}


def check_cors(document: dict, origin: str) -> None:
    """Every path answers a preflight for its methods, and every response a browser can get (each
    method response, each integration response, the gateway's own 4xx and 5xx) allows the
    configured origin: a response without the header is one the web app cannot read."""
    allowed = f"'{origin}'"
    assert origin != "*" and origin.startswith(("https://", "http://")) and not origin.endswith("/"), origin

    # Nowhere "*": a static '*' (or one built around it) lets every site read the answers.
    def no_wildcard(node, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key.endswith(ALLOW_ORIGIN) and isinstance(value, str):
                    assert "*" not in value, f"{where}/{key}: {value}"
                no_wildcard(value, f"{where}/{key}")
        elif isinstance(node, list):
            for n, value in enumerate(node):
                no_wildcard(value, f"{where}/{n}")

    no_wildcard(document, "")

    for path, item in document["paths"].items():
        if path in WEBHOOKS:
            # Server to server: no browser may call it, so no preflight and no CORS header.
            assert "options" not in item, f"{path}: a webhook has no CORS preflight"
            assert ALLOW_ORIGIN not in json.dumps(item), f"{path}: a webhook allows no origin"
            continue
        methods = sorted(m.upper() for m in item if m != "options")
        assert "options" in item, f"{path} has no OPTIONS (CORS preflight)"
        for method, operation in item.items():
            name = f"{method.upper()} {path}"
            for status, response in operation["responses"].items():
                assert ALLOW_ORIGIN in response.get("headers", {}), f"{name}: method response {status} does not declare {ALLOW_ORIGIN}"
            for pattern, response in operation["x-amazon-apigateway-integration"]["responses"].items():
                parameters = response.get("responseParameters", {})
                mapped = parameters.get(f"method.response.header.{ALLOW_ORIGIN}")
                assert mapped == allowed, f"{name}: integration response {pattern!r} maps {ALLOW_ORIGIN} to {mapped!r}, not {allowed}"
                # API Gateway refuses to map a header the method response does not declare.
                declared = operation["responses"][response["statusCode"]].get("headers", {})
                for key in parameters:
                    header = key.removeprefix("method.response.header.")
                    assert header in declared, f"{name}: {pattern!r} maps {header}, undeclared in method response {response['statusCode']}"
        preflight = item["options"]
        integration = preflight["x-amazon-apigateway-integration"]
        assert integration["type"] == "mock", f"OPTIONS {path}: {integration['type']}, not a MOCK"
        assert json.loads(integration["requestTemplates"]["application/json"]) == {"statusCode": 200}, f"OPTIONS {path}: request template"
        assert set(preflight["responses"]) == {"200"}, f"OPTIONS {path}: {sorted(preflight['responses'])}"
        assert PREFLIGHT_HEADERS <= set(preflight["responses"]["200"]["headers"]), f"OPTIONS {path}: {preflight['responses']['200']['headers']}"
        responses = integration["responses"]
        assert [r["statusCode"] for r in responses.values()] == ["200"], f"OPTIONS {path}: {responses}"
        parameters = next(iter(responses.values()))["responseParameters"]
        values = {}
        for header in PREFLIGHT_HEADERS:
            value = parameters.get(f"method.response.header.{header}", "")
            assert len(value) > 2 and value[0] == value[-1] == "'", f"OPTIONS {path}: {header} is {value!r}, not a static value"
            values[header] = value[1:-1]
        listed = [m.strip().upper() for m in values["Access-Control-Allow-Methods"].split(",")]
        for method in methods + ["OPTIONS"]:
            assert method in listed, f"OPTIONS {path}: Access-Control-Allow-Methods {listed} lacks {method}"
        assert set(listed) <= set(methods) | {"OPTIONS"}, f"OPTIONS {path}: Access-Control-Allow-Methods {listed}, but the path has {methods}"
        headers = {h.strip().lower() for h in values["Access-Control-Allow-Headers"].split(",")}
        assert {"authorization", "content-type"} <= headers, f"OPTIONS {path}: Access-Control-Allow-Headers {headers}"
        assert values["Access-Control-Max-Age"].isdigit(), f"OPTIONS {path}: Access-Control-Max-Age {values['Access-Control-Max-Age']}"

    # The gateway's own answers: an invalid body's 400, a missing route, throttling, its failures.
    gateway_responses = document.get("x-amazon-apigateway-gateway-responses", {})
    for kind in ("DEFAULT_4XX", "DEFAULT_5XX"):
        response = gateway_responses.get(kind)
        assert response, f"no {kind} gateway response"
        mapped = response.get("responseParameters", {}).get(f"gatewayresponse.header.{ALLOW_ORIGIN}")
        assert mapped == allowed, f"gateway response {kind} maps {ALLOW_ORIGIN} to {mapped!r}, not {allowed}"
        # The body stays API Gateway's default, {"message": "..."}, and the status the type's own.
        assert "statusCode" not in response, f"gateway response {kind} sets status {response['statusCode']}"
        template = response.get("responseTemplates", {}).get("application/json")
        assert template == '{"message":$context.error.messageString}', f"gateway response {kind}: {template!r}"
    # Any other gateway response customised must carry it too (it replaces the default's headers).
    for kind, response in gateway_responses.items():
        mapped = response.get("responseParameters", {}).get(f"gatewayresponse.header.{ALLOW_ORIGIN}")
        assert mapped == allowed, f"gateway response {kind} maps {ALLOW_ORIGIN} to {mapped!r}, not {allowed}"


if __name__ == "__main__":
    main()
