#!/usr/bin/env python3
"""How long the Lambda worker takes per batch, and how much CPU and memory it uses: the figures
terraform/README.md's cost and scaling sections start from. Run by scripts/lambda-duration, which
sets up the databases, fauxqs and the load; read that script first.

It stands in for what AWS runs around the function:
- the SQS event source mapping: receives up to --batch-size messages from the request queue,
  waiting up to --window seconds to fill a batch, hands them to the function as an SQS event,
  deletes the messages the function did not report as failed;
- the Lambda Runtime API (/runtime/invocation/next and .../response), which the real `bootstrap`
  binary polls, as in an execution environment.

Each of --environments bootstrap processes takes one batch at a time. An invocation is timed
from the moment `next` hands it out to the moment its response arrives, which is what Lambda
bills. The CPU time (user + system) and peak resident memory (VmHWM) of each process come from
/proc. The load itself comes from the command after `--` (qbill-loadtest run --sqs ...).

Output: a summary on stdout, the last lines `key value`, and every invocation in --out as JSON.
"""

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat; after the command name they are 12 and 13.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


class Environment:
    """One execution environment: a bootstrap process and the Runtime API it talks to."""

    def __init__(self, index, bootstrap, memory_mb):
        self.index = index
        self.pending = queue.Queue()  # (request id, event) to hand out
        self.results = queue.Queue()  # (request id, kind, body, started, ended)
        self.started = {}
        env_self = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body=b"", headers=()):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next"):
                    return self.reply(404)
                request_id, event = env_self.pending.get()
                body = json.dumps(event).encode()
                env_self.started[request_id] = time.perf_counter()
                deadline = int(time.time() * 1000) + 30_000
                self.reply(200, body, [
                    ("Content-Type", "application/json"),
                    ("Lambda-Runtime-Aws-Request-Id", request_id),
                    ("Lambda-Runtime-Deadline-Ms", str(deadline)),
                    ("Lambda-Runtime-Invoked-Function-Arn",
                     "arn:aws:lambda:us-east-1:000000000000:function:qbill-worker"),
                ])

            def do_POST(self):
                ended = time.perf_counter()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                parts = self.path.rstrip("/").split("/")
                # /2018-06-01/runtime/invocation/{id}/response|error, or /runtime/init/error
                if len(parts) >= 2 and parts[-3] == "invocation":
                    request_id, kind = parts[-2], parts[-1]
                    started = env_self.started.pop(request_id, ended)
                    env_self.results.put((request_id, kind, body, started, ended))
                else:
                    print(f"environment {env_self.index}: init error: {body[:500]!r}",
                          file=sys.stderr)
                self.reply(202, b"{}", [("Content-Type", "application/json")])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        env = dict(os.environ)
        env.update({
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self.server.server_address[1]}",
            "AWS_LAMBDA_FUNCTION_NAME": "qbill-worker",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "QBILL_LOG": os.environ.get("QBILL_LOG", "warn"),
        })
        self.process = subprocess.Popen([bootstrap], env=env, stdout=subprocess.DEVNULL)

    def invoke(self, event):
        request_id = str(uuid.uuid4())
        self.pending.put((request_id, event))
        while True:
            got = self.results.get()
            if got[0] == request_id:
                return got

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.server.shutdown()


def lambda_event(messages, queue_arn):
    """The SQS event the event source mapping hands the function."""
    records = []
    for m in messages:
        attributes = {
            name: {"stringValue": value.get("StringValue"), "dataType": value.get("DataType")}
            for name, value in (m.get("MessageAttributes") or {}).items()
        }
        records.append({
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m.get("Attributes") or {"ApproximateReceiveCount": "1"},
            "messageAttributes": attributes,
            "md5OfBody": m.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": "us-east-1",
        })
    return {"Records": records}


def poller(environment, sqs, queue_url, queue_arn, args, stop, log):
    """The event source mapping's side of one environment: receive a batch, invoke, delete."""
    while not stop.is_set():
        got = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=min(args.batch_size, 10), WaitTimeSeconds=1,
            MessageAttributeNames=["All"], AttributeNames=["All"],
        ).get("Messages", [])
        if not got:
            continue
        window_ends = time.monotonic() + args.window
        while len(got) < args.batch_size and time.monotonic() < window_ends:
            wait = max(0, min(1, int(window_ends - time.monotonic())))
            more = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=min(args.batch_size - len(got), 10),
                WaitTimeSeconds=wait, MessageAttributeNames=["All"], AttributeNames=["All"],
            ).get("Messages", [])
            got.extend(more)
            if not more and wait == 0:
                time.sleep(0.02)
        routes = [(m.get("MessageAttributes") or {}).get("route", {}).get("StringValue", "?")
                  for m in got]
        cpu_before = cpu_seconds(environment.process.pid)
        _, kind, body, started, ended = environment.invoke(lambda_event(got, queue_arn))
        cpu_after = cpu_seconds(environment.process.pid)
        failed = set()
        if kind == "response":
            try:
                failed = {f["itemIdentifier"] for f in json.loads(body).get("batchItemFailures", [])}
            except (ValueError, AttributeError):
                failed = {m["MessageId"] for m in got}
        else:
            failed = {m["MessageId"] for m in got}
        done = [m for m in got if m["MessageId"] not in failed]
        for i in range(0, len(done), 10):
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                for n, m in enumerate(done[i:i + 10])
            ])
        log.append({
            "environment": environment.index, "messages": len(got), "failed": len(failed),
            "routes": routes, "kind": kind, "ms": (ended - started) * 1000,
            "cpu_ms": (cpu_after - cpu_before) * 1000,
        })


def percentile(values, p):
    values = sorted(values)
    if not values:
        return 0.0
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--environments", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--window", type=float, default=1.0, help="batching window, seconds")
    parser.add_argument("--memory-mb", type=int, default=256)
    parser.add_argument("--queue", default=os.environ.get("QBILL_REQUEST_QUEUE", "qbill-requests"))
    parser.add_argument("--out", default="target/bench/lambda-duration.json")
    parser.add_argument("load", nargs=argparse.REMAINDER, help="-- the load command")
    args = parser.parse_args()
    load = args.load[1:] if args.load[:1] == ["--"] else args.load
    if not load:
        parser.error("give the load command after --")

    sqs = boto3.client(
        "sqs",
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
    )
    queue_url = sqs.get_queue_url(QueueName=args.queue)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["QueueArn"]
    )["Attributes"].get("QueueArn", f"arn:aws:sqs:us-east-1:000000000000:{args.queue}")

    environments = [Environment(i, args.bootstrap, args.memory_mb)
                    for i in range(args.environments)]
    time.sleep(2)  # the init phase: secrets, pools, clients
    for e in environments:
        if e.process.poll() is not None:
            sys.exit(f"bootstrap {e.index} exited during init ({e.process.returncode})")
    fresh_kib = [status_kib(e.process.pid, "VmRSS") for e in environments]
    cpu_start = [cpu_seconds(e.process.pid) for e in environments]

    stop = threading.Event()
    log = []
    threads = [threading.Thread(target=poller, args=(e, sqs, queue_url, queue_arn, args, stop, log),
                                daemon=True) for e in environments]
    for t in threads:
        t.start()
    loaded = subprocess.run(load)
    time.sleep(3)  # what is left on the queue
    stop.set()
    for t in threads:
        t.join(10)
    cpu_total = sum(cpu_seconds(e.process.pid) - c for e, c in zip(environments, cpu_start))
    peak_kib = [status_kib(e.process.pid, "VmHWM") for e in environments]
    for e in environments:
        e.stop()

    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(log, f)
    invocations = [r for r in log if r["kind"] == "response"]
    messages = sum(r["messages"] for r in invocations)
    if not messages:
        sys.exit("no message was handled")
    ms = [r["ms"] for r in invocations]
    with_login = [r["ms"] for r in invocations if "auth" in r["routes"]]
    without_login = [r["ms"] for r in invocations if "auth" not in r["routes"]]
    gb_seconds = sum(ms) / 1000 * args.memory_mb / 1024
    print(f"invocations {len(invocations)} (errors {len(log) - len(invocations)}), "
          f"messages {messages}, mean batch {messages / len(invocations):.2f}, "
          f"failed items {sum(r['failed'] for r in invocations)}")
    print(f"invocation ms: mean {statistics.mean(ms):.1f} p50 {percentile(ms, 50):.1f} "
          f"p90 {percentile(ms, 90):.1f} p99 {percentile(ms, 99):.1f} max {max(ms):.1f}")
    for name, values in (("with a login", with_login), ("without a login", without_login)):
        if values:
            print(f"  batches {name}: {len(values)}, p50 {percentile(values, 50):.1f} ms, "
                  f"mean {statistics.mean(values):.1f} ms")
    print(f"fresh RSS MiB {[round(k / 1024, 1) for k in fresh_kib]}, "
          f"peak RSS MiB {[round(k / 1024, 1) for k in peak_kib]}")
    print(f"load command exit status {loaded.returncode}")
    print(f"lambda_invocation_ms_mean {statistics.mean(ms):.2f}")
    print(f"lambda_invocation_ms_p50 {percentile(ms, 50):.2f}")
    print(f"lambda_invocation_ms_p99 {percentile(ms, 99):.2f}")
    print(f"lambda_batch_mean {messages / len(invocations):.2f}")
    print(f"lambda_ms_per_message {sum(ms) / messages:.2f}")
    print(f"lambda_cpu_ms_per_message {cpu_total * 1000 / messages:.2f}")
    print(f"lambda_gb_seconds_per_million {gb_seconds / messages * 1e6:.0f}")
    print(f"lambda_peak_rss_mib {max(peak_kib) / 1024:.1f}")
    sys.exit(loaded.returncode)


if __name__ == "__main__":
    main()
