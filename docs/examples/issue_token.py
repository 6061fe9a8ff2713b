#!/usr/bin/env python3
"""How a backend issues a ringcast token (HS256) with nothing but Python's standard library.

    issue_token.py SECRET_FILE SUB TTL_S [--channels 'workflow:*,global'] [--publish 'chat:*']

prints a JWT that lets user SUB subscribe to the channels patterns and publish to the publish
patterns for TTL_S seconds. The engine verifies it with the same secret (--jwt-secret-file).
docs/security.md shows it; tests/engine/test_auth.py runs it against the real binary.
"""

import argparse
import base64
import hashlib
import hmac
import json
import time


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def issue(secret: bytes, sub: str, ttl_s: int, channels=(), publish=()) -> str:
    header = {"alg": "HS256", "typ": "JWT"}
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + ttl_s,
              "channels": list(channels), "publish": list(publish)}
    signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + b64url(json.dumps(claims, separators=(",", ":")).encode()))
    sig = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("secret_file")
    ap.add_argument("sub")
    ap.add_argument("ttl_s", type=int)
    ap.add_argument("--channels", default="")
    ap.add_argument("--publish", default="")
    a = ap.parse_args()
    with open(a.secret_file, "rb") as f:
        secret = f.read().rstrip(b"\r\n")  # the engine drops a trailing newline too
    split = lambda s: [p for p in s.split(",") if p]
    print(issue(secret, a.sub, a.ttl_s, split(a.channels), split(a.publish)))


if __name__ == "__main__":
    main()
