#!/usr/bin/env python3
"""When the node's Kubernetes certificates expire, for Prometheus.

    mlops-cert-exporter --root /var/lib/rancher/k3s --glob 'server/tls/*.crt' --glob 'agent/*.crt' --port 9101
    mlops-cert-exporter --root /var/lib/rancher/k3s --glob 'server/tls/*.crt' --once   # print once and exit

K3s issues its certificates for a year and renews them only when it starts within 90 days of
their end; a cluster left running longer stops trusting itself. The platform runs this on every
node (a DaemonSet with the folder mounted read-only) and alerts 30 days ahead
(K3sCertificateExpiresSoon). Each scrape reads the files anew, so a rotation shows at once:

    mlops_k3s_certificate_expiry_timestamp_seconds{node, file}  the earliest notAfter in the file
    mlops_k3s_certificate_files{node}                           files read
    mlops_k3s_certificate_read_errors{node}                     files that could not be read

Standard library only: the one date needed is read from the DER itself.
"""

from __future__ import annotations

import argparse
import base64
import calendar
import os
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)
METRIC = "mlops_k3s_certificate_expiry_timestamp_seconds"


def _tlv(data: bytes, at: int) -> tuple[int, int, int]:
    """The DER element at ``at``: (tag, start of its content, end of its content)."""
    tag, length = data[at], data[at + 1]
    at += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[at : at + count], "big")
        at += count
    if at + length > len(data):
        raise ValueError("truncated DER")
    return tag, at, at + length


def _time(tag: int, raw: bytes) -> float:
    text = raw.decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ: years 50-99 are 19xx (RFC 5280)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise ValueError(f"not a time (tag {tag:#x})")
    return float(calendar.timegm(time.strptime(text, "%Y%m%d%H%M%SZ")))


def not_after(der: bytes) -> float:
    """notAfter of one X.509 certificate, seconds since the epoch (RFC 5280, 4.1)."""
    _, body, _ = _tlv(der, 0)  # Certificate
    _, field, _ = _tlv(der, body)  # tbsCertificate
    if der[field] == 0xA0:  # [0] version
        field = _tlv(der, field)[2]
    for _ in range(3):  # serialNumber, signature, issuer
        field = _tlv(der, field)[2]
    _, validity, _ = _tlv(der, field)
    after = _tlv(der, validity)[2]  # past notBefore
    tag, start, end = _tlv(der, after)
    return _time(tag, der[start:end])


def earliest_expiry(pem: bytes) -> float:
    """The earliest notAfter of the certificates in a PEM file (a leaf with its CA: the leaf's)."""
    blocks = PEM.findall(pem)
    if not blocks:
        raise ValueError("no certificate")
    return min(not_after(base64.b64decode(b"".join(block.split()))) for block in blocks)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics(root: Path, globs: list[str], node: str) -> str:
    found = sorted({path for pattern in globs for path in root.glob(pattern) if path.is_file()})
    lines = [
        f"# HELP {METRIC} The earliest notAfter of the certificates in the file, seconds since the epoch.",
        f"# TYPE {METRIC} gauge",
    ]
    errors = []
    for path in found:
        try:
            expiry = earliest_expiry(path.read_bytes())
        except (OSError, ValueError, IndexError) as error:
            errors.append(f"{path}: {error}")
            continue
        lines.append(f'{METRIC}{{node="{_label(node)}",file="{_label(str(path))}"}} {expiry:.0f}')
    for error in errors:
        print(f"mlops-cert-exporter: {error}", file=sys.stderr)
    lines += [
        "# HELP mlops_k3s_certificate_files Certificate files read.",
        "# TYPE mlops_k3s_certificate_files gauge",
        f'mlops_k3s_certificate_files{{node="{_label(node)}"}} {len(found) - len(errors)}',
        "# HELP mlops_k3s_certificate_read_errors Certificate files that could not be read or parsed.",
        "# TYPE mlops_k3s_certificate_read_errors gauge",
        f'mlops_k3s_certificate_read_errors{{node="{_label(node)}"}} {len(errors)}',
    ]
    return "\n".join(lines) + "\n"


def serve(args: argparse.Namespace) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path not in ("/metrics", "/healthz"):
                self.send_error(404)
                return
            body = (metrics(args.root, args.glob, args.node) if self.path == "/metrics" else "ok\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *values: object) -> None:
            pass  # scrapes are not news

    ThreadingHTTPServer((args.listen, args.port), Handler).serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", type=Path, required=True, help="folder holding the certificates (mounted read-only)")
    parser.add_argument("--glob", action="append", required=True, help="pattern under --root, e.g. server/tls/*.crt")
    parser.add_argument("--node", default=os.environ.get("NODE_NAME", os.uname().nodename))
    parser.add_argument("--listen", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=9101)
    parser.add_argument("--once", action="store_true", help="print the metrics once and exit (1 when a file is unreadable)")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        parser.error(f"--root {args.root} is not a folder")
    if args.once:
        text = metrics(args.root, args.glob, args.node)
        sys.stdout.write(text)
        return 0 if re.search(r"read_errors\{[^}]*\} 0$", text, re.M) else 1
    serve(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
