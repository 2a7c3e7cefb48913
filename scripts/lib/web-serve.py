#!/usr/bin/env python3
"""Serves the built web app (web/dist) for one local profile, as CloudFront serves it on AWS.

    scripts/lib/web-serve.py --port 4580 --gateway-url URL [--dist web/dist]
        [--stripe-publishable-key pk_… --stripe-js-url URL]

- `/config.json` is the app's configuration: `{"gateway_url": URL}`, and for paying by card the
  processor's publishable key and where Stripe.js comes from (`stripe_publishable_key`,
  `stripe_js_url`; locally localstripe's stand-in). On AWS, Terraform writes it;
- a path that is no file (the mails' `/verify-email?token=…`, `/reset-password?token=…`) gets
  index.html, as the distribution's error responses do;
- every response carries the security headers of terraform/web.tf's response headers policy, the
  Content-Security-Policy included, so that the browser tests catch what it would block on AWS.
  With a Stripe.js URL, the policy lets in that script's origin (`script-src`), and Stripe.js's
  own calls and frames to the processor (`connect-src`, `frame-src`: the same origin locally; on
  AWS https://js.stripe.com for scripts and frames, https://api.stripe.com for calls,
  https://hooks.stripe.com for the 3-D Secure frame). Nothing else is loosened.
Standard library only; started and stopped by scripts/local-stack.
"""

import argparse
import http.server
import json
import pathlib
import urllib.parse


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL, as a CSP source names it."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SystemExit(f"web-serve: not an http(s) URL: {url}")
    return f"{parts.scheme}://{parts.netloc}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gateway-url", required=True)
    parser.add_argument("--dist", default=str(pathlib.Path(__file__).resolve().parents[2] / "web" / "dist"))
    parser.add_argument("--resend-after-ms", type=int, help="how long the app waits for a reply before sending again")
    parser.add_argument("--stripe-publishable-key", help="the card processor's publishable key (pk_…), for Stripe.js")
    parser.add_argument("--stripe-js-url", help="where the app loads Stripe.js from (locally localstripe's /js.stripe.com/v3/)")
    args = parser.parse_args()
    if bool(args.stripe_publishable_key) != bool(args.stripe_js_url):
        parser.error("--stripe-publishable-key and --stripe-js-url go together")

    dist = pathlib.Path(args.dist).resolve()
    config = {"gateway_url": args.gateway_url.rstrip("/")}
    if args.resend_after_ms:
        config["resend_after_ms"] = args.resend_after_ms
    if args.stripe_js_url:
        config["stripe_publishable_key"] = args.stripe_publishable_key
        config["stripe_js_url"] = args.stripe_js_url
    config_body = json.dumps(config).encode()
    gateway_origin = origin_of(args.gateway_url)
    # Stripe.js: its script, its calls to the processor's API and its frames (3-D Secure). Locally
    # localstripe serves all three from one origin.
    stripe_origin = origin_of(args.stripe_js_url) if args.stripe_js_url else ""
    script_src = f"'self' {stripe_origin}".strip()
    connect_src = f"'self' {gateway_origin} {stripe_origin}".strip()
    frame_src = f"; frame-src {stripe_origin}" if stripe_origin else ""
    csp = (
        f"default-src 'none'; script-src {script_src}; style-src 'self'; img-src 'self' data:; font-src 'self'; "
        f"connect-src {connect_src}{frame_src}; manifest-src 'self'; base-uri 'none'; form-action 'self'; "
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
