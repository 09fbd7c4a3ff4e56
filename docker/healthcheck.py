#!/usr/bin/env python3
"""Container health probe for the memrl image (Docker HEALTHCHECK).

Reads MEMRL_HEALTH_URL, set per service in docker/docker-compose.yml:
- Ray head:    http://127.0.0.1:8265/api/gcs_healthz        (dashboard, GCS reachable)
- Ray worker:  http://127.0.0.1:52365/api/local_raylet_healthz (dashboard agent, raylet alive)
- TensorBoard: http://127.0.0.1:6006/
Ray 2.60 exempts the *healthz paths from token auth, so the probe needs no token. A container
without the variable (the one-shot job submitter) reports healthy. Standard library only, so the
runtime image needs no curl.
Exit status: 0 healthy, 1 unhealthy (Docker's convention).
"""

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    url = os.environ.get("MEMRL_HEALTH_URL", "").strip()
    if not url:
        return 0
    try:
        with urllib.request.urlopen(url, timeout=4) as resp:  # noqa: S310 - fixed local URL
            return 0 if 200 <= resp.status < 300 else 1
    except (urllib.error.URLError, OSError) as exc:
        sys.stderr.write(f"healthcheck {url}: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
