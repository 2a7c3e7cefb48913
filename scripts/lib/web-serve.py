#!/usr/bin/env python3
"""Serves the built web app (web/dist) for one local profile, as CloudFront serves it on AWS.

    scripts/lib/web-serve.py --port 4580 --gateway-url URL [--dist web/dist]

- `/config.json` is the app's configuration: `{"gateway_url": URL}` (on AWS, Terraform writes it);
- a path that is no file (the mails' `/verify-email?token=…`, `/reset-password?token=…`) gets
  index.html, as the distribution's error responses do;
- every response carries the security headers of terraform/web.tf's response headers policy, the
  Content-Security-Policy included, so that the browser tests catch what it would block on AWS.
Standard library only; started and stopped by scripts/local-stack.
"""

import argparse
import http.server
import json
import pathlib
import urllib.parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gateway-url", required=True)
    parser.add_argument("--dist", default=str(pathlib.Path(__file__).resolve().parents[2] / "web" / "dist"))
    parser.add_argument("--resend-after-ms", type=int, help="how long the app waits for a reply before sending again")
    args = parser.parse_args()

    dist = pathlib.Path(args.dist).resolve()
    config = {"gateway_url": args.gateway_url.rstrip("/")}
    if args.resend_after_ms:
        config["resend_after_ms"] = args.resend_after_ms
    config_body = json.dumps(config).encode()
    gateway = urllib.parse.urlsplit(args.gateway_url)
    gateway_origin = f"{gateway.scheme}://{gateway.netloc}"
    csp = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
        f"connect-src 'self' {gateway_origin}; manifest-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(dist), **kw)

        def end_headers(self) -> None:
            self.send_header("Content-Security-Policy", csp)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("X-Frame-Options", "DENY")
            self.send_header("Referrer-Policy", "strict-origin-when-cross-origin")
            self.send_header("Cache-Control", "no-cache")
            super().end_headers()

        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            path = urllib.parse.urlsplit(self.path).path
            if path == "/config.json":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(config_body)))
                self.end_headers()
                self.wfile.write(config_body)
                return
            target = (dist / path.lstrip("/")).resolve()
            if path != "/" and (not target.is_file() or dist not in target.parents):
                self.path = "/index.html"
            super().do_GET()

        def log_message(self, format: str, *args) -> None:  # noqa: A002
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
