#!/usr/bin/env python3
"""Container health check: GET a path (default /healthz) on this container's own REST port.

    python /opt/imos/healthcheck.py [/healthz|/readyz]

Exit 0 on HTTP 200, else 1 with the reason on stderr. Reads IMOS_HTTP_PORT (default 8000) and speaks
HTTPS when IMOS_TLS_CERT_FILE is set (loopback to itself, so the certificate is not verified). Standard
library only: it must start fast and work in the slim images, which have no curl.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request


def check(path: str = "/healthz", environ: dict[str, str] | None = None) -> tuple[bool, str]:
    env = os.environ if environ is None else environ
    port = env.get("IMOS_HTTP_PORT", "8000")
    tls = bool(env.get("IMOS_TLS_CERT_FILE"))
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}{path}"
    context = ssl._create_unverified_context() if tls else None
    timeout = float(env.get("HEALTHCHECK_TIMEOUT_S", "4"))
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.status == 200, f"{url}: HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return False, f"{url}: {exc}"


def main(argv: list[str]) -> int:
    ok, reason = check(argv[1] if len(argv) > 1 else "/healthz")
    if not ok:
        print(f"unhealthy: {reason}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
