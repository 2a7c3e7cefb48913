#!/usr/bin/env python3
"""Creates what qbill needs in the local SQS and API Gateway emulator, idempotently.

For one profile: the dead-letter queue, the shared request queue redriving into it, and the REST
API imported from gateway-config/openapi.yaml (rendered with the same variables Terraform passes,
the allowed browser origin being the profile's web origin) and deployed to a stage; the verified
mail sender; the documents bucket; the event bus with a rule into a queue that shows what it
carries. Prints the result as JSON on stdout.
Runs in the LocalStack virtualenv, which has boto3 and PyYAML.
"""

import argparse
import json
import pathlib
import re
import sys

import boto3
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
ACCOUNT_ID = "000000000000"
REGION = "us-east-1"
PARTITION = "aws"  # LocalStack's; Terraform fills in data.aws_partition
REPLY_QUEUE_PREFIX = "qbill-reply-"

PROFILES = {
    # What `local-stack up` runs the engine against.
    "dev": {"queue": "qbill-requests", "api": "qbill", "visibility": 30, "bucket": "qbill-documents", "web_origin": "http://127.0.0.1:4580", "bus": "qbill-events"},
    # What the tests run against: their own queue and API, so a running dev pool never steals
    # their messages. A short visibility timeout makes crash-recovery tests quick.
    "test": {"queue": "qbill-test-requests", "api": "qbill-test", "visibility": 5, "bucket": "qbill-test-documents", "web_origin": "http://127.0.0.1:4581", "bus": "qbill-test-events"},
}
# web_origin: where the profile's web app is served from (a local static server), the one origin
# the gateway allows browsers to call it from (CORS, the template's allowed_origin).
STAGE = "local"
MAX_RECEIVES = 5


def render(template: str, variables: dict) -> str:
    """Fills `${name}` like Terraform's templatefile(); `$${` stands for a literal `${`."""

    def substitute(match: re.Match) -> str:
        escaped, name = match.groups()
        if escaped:
            return "${" + name + "}"
        if name not in variables:
            sys.exit(f"gateway-config uses the placeholder {name!r}, which has no value")
        return variables[name]

    return re.sub(r"(\$)?\$\{([A-Za-z_][A-Za-z0-9_]*)\}", substitute, template)


def ensure_queues(sqs, profile: dict) -> dict:
    dlq_url = sqs.create_queue(QueueName=profile["queue"] + "-dlq", Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attributes = {
        "VisibilityTimeout": str(profile["visibility"]),
        "MessageRetentionPeriod": "345600",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)}),
    }
    try:
        url = sqs.create_queue(QueueName=profile["queue"], Attributes=attributes)["QueueUrl"]
    except sqs.exceptions.QueueNameExists:
        url = sqs.get_queue_url(QueueName=profile["queue"])["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return {"request_queue_url": url, "dead_letter_queue_url": dlq_url}


def ensure_api(apigw, profile: dict, endpoint: str) -> dict:
    variables = {
        "partition": PARTITION,
        "aws_region": REGION,
        "account_id": ACCOUNT_ID,
        "request_queue_name": profile["queue"],
        "reply_queue_prefix": REPLY_QUEUE_PREFIX,
        "gateway_role_arn": f"arn:{PARTITION}:iam::{ACCOUNT_ID}:role/qbill-gateway",
        "allowed_origin": profile["web_origin"],
    }
    rendered = render((ROOT / "gateway-config" / "openapi.yaml").read_text(), variables)
    # JSON without YAML anchors, as Terraform passes it (jsonencode(yamldecode(...))).
    body = json.dumps(yaml.safe_load(rendered)).encode()
    existing = [a for a in apigw.get_rest_apis(limit=500)["items"] if a["name"] == profile["api"]]
    if existing:
        api_id = existing[0]["id"]
        apigw.put_rest_api(restApiId=api_id, mode="overwrite", body=body)
    else:
        api_id = apigw.import_rest_api(body=body)["id"]
        apigw.update_rest_api(restApiId=api_id, patchOperations=[{"op": "replace", "path": "/name", "value": profile["api"]}])
    apigw.create_deployment(restApiId=api_id, stageName=STAGE)
    url = f"{endpoint}/restapis/{api_id}/{STAGE}/_user_request_"
    return {"api_id": api_id, "gateway_url": url}


# The sender the workers mail from by default (QBILL_MAIL_FROM), verified in SES as Terraform
# verifies the deployment's sender: SES refuses mail from an address it has not verified.
MAIL_FROM = "billing@qbill.local"


def ensure_sender(ses) -> dict:
    ses.verify_email_identity(EmailAddress=MAIL_FROM)
    return {"mail_from": MAIL_FROM}


# The bucket documents go to (QBILL_DOCUMENTS_BUCKET), private as on AWS: files are read only
# through the presigned links the workers hand out.
def ensure_bucket(s3, profile: dict) -> dict:
    try:
        s3.create_bucket(Bucket=profile["bucket"])
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    return {"documents_bucket": profile["bucket"]}


# The event bus (QBILL_EVENT_BUS), as Terraform's events.tf makes it, and what an AWS-native
# consumer would add: a rule taking every qbill event into a queue of its own (the "tap"), which
# the tests and the walkthrough read.
def ensure_bus(events, sqs, profile: dict) -> dict:
    bus = profile["bus"]
    try:
        events.create_event_bus(Name=bus)
    except events.exceptions.ResourceAlreadyExistsException:
        pass
    tap = sqs.create_queue(QueueName=f"{bus}-tap")["QueueUrl"]
    tap_arn = sqs.get_queue_attributes(QueueUrl=tap, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=f"{bus}-tap", EventBusName=bus, EventPattern=json.dumps({"source": ["qbill"]}))
    events.put_targets(Rule=f"{bus}-tap", EventBusName=bus, Targets=[{"Id": "tap", "Arn": tap_arn}])
    return {"event_bus": bus, "event_tap_queue_url": tap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", default="http://127.0.0.1:4566")
    parser.add_argument("--profile", choices=sorted(PROFILES), required=True)
    args = parser.parse_args()
    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION)
    profile = PROFILES[args.profile]
    result = {"profile": args.profile, "request_queue": profile["queue"], "reply_queue_prefix": REPLY_QUEUE_PREFIX, "web_origin": profile["web_origin"]}
    result.update(ensure_queues(session.client("sqs", endpoint_url=args.endpoint), profile))
    result.update(ensure_api(session.client("apigateway", endpoint_url=args.endpoint), profile, args.endpoint))
    result.update(ensure_sender(session.client("ses", endpoint_url=args.endpoint)))
    result.update(ensure_bucket(session.client("s3", endpoint_url=args.endpoint), profile))
    result.update(ensure_bus(session.client("events", endpoint_url=args.endpoint), session.client("sqs", endpoint_url=args.endpoint), profile))
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
