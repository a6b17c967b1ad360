#!/usr/bin/env python3
"""Fuzz the public API of a real `dure up` with schemathesis (docs/security.md).

Starts `dure up` on free loopback ports in a fresh data directory, signs up two
users, and runs schemathesis against the gateway's merged /api/openapi.json
with every check and every phase, three times:

1. as one user, every operation but deleting that user's own account;
2. as the admin, the operations only admins may call;
3. as two peers, so that the stateful phase tries each one's objects as the
   other (object_level_authorization).

Each run is bounded in examples and time. Exits non-zero when a run reports a
failure, or when dure or schemathesis cannot be started.

    python3 fuzz/schemathesis.py --dure target/debug/dure --st .venv/bin/st
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ADMIN_PASSWORD = "fuzz-admin-password"
# A 413 is a rejection too: a body over a service's limit breaks the schema
# (the limit holds every valid body) and is refused before it is parsed.
CHECKS = """[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]

"""
USERS = {"alice": "alice-password-1", "bob": "bob-password-22"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, body=None, token=None):
    request = urllib.request.Request(base + path, method=method)
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def wait_ready(base, process, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"fuzz: dure up exited with {process.returncode}")
        try:
            status, doc = call(base, "GET", "/api/openapi.json")
            # Every service's paths are in before fuzzing starts.
            if status == 200 and "x-dure-missing-services" not in doc["info"] and any(
                p.startswith("/api/reports") for p in doc["paths"]
            ):
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    sys.exit("fuzz: dure up did not become ready")


def login_entry(name, password):
    return {
        "name": name,
        "loginEndpointAuth": {
            "endpoint": "/api/login",
            "verb": "POST",
            "contentType": "application/json",
            "payloadRaw": json.dumps({"username": name, "password": password}),
            "token": {
                "extractFrom": "body",
                "extractSelector": "/access_token",
                "sendIn": "header",
                "sendName": "Authorization",
                "sendTemplate": "Bearer {token}",
            },
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dure", required=True, help="the dure binary")
    parser.add_argument("--st", required=True, help="the schemathesis `st` command")
    parser.add_argument("--max-examples", type=int, default=25)
    parser.add_argument("--max-time", type=int, default=150, help="seconds per run")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="dure-fuzz-")
    gateway = f"127.0.0.1:{free_port()}"
    base = f"http://{gateway}"
    env = dict(
        os.environ,
        DURE_ADMIN_PASSWORD=ADMIN_PASSWORD,
        # The fuzzer is one client sending thousands of requests, many of
        # them failed logins: limits sized for it, still enforced.
        DURE_RATE_LIMIT="100000",
        DURE_RATE_LIMIT_BURST="100000",
        DURE_LOGIN_FAILURES_PER_ADDRESS="1000000",
        DURE_LOGIN_FAILURES_PER_ACCOUNT="1000000",
        DURE_SIGNUPS_PER_ADDRESS="1000000",
        RUST_LOG="warn",
    )
    log = open(os.path.join(work, "dure.log"), "w")
    dure = subprocess.Popen(
        [
            os.path.abspath(args.dure), "up",
            "--gateway-listen", gateway,
            "--registry-listen", f"127.0.0.1:{free_port()}",
            "--no-console",
        ],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    failed = []
    try:
        wait_ready(base, dure)
        for name, password in USERS.items():
            status, body = call(base, "POST", "/api/users", {
                "username": name, "email": f"{name}@example.com", "password": password})
            if status != 201:
                sys.exit(f"fuzz: signing up {name}: {status} {body}")
        auth = os.path.join(work, "auth.json")
        with open(auth, "w") as f:
            json.dump({"auth": [
                login_entry("alice", USERS["alice"]),
                login_entry("bob", USERS["bob"]),
                login_entry("admin", ADMIN_PASSWORD),
            ]}, f)
        admin_only = "^/api/(reports|admin)/|^/api/notice"
        runs = [
            ("as a user", "alice", ["--exclude-operation-id", "delete_me"], None),
            ("as the admin", "admin", ["--include-path-regex", admin_only], None),
            ("two users against each other", None,
             ["--exclude-operation-id", "delete_me", "--phases", "stateful",
              "--exclude-path-regex", admin_only], ["alice", "bob"]),
        ]
        for title, user, extra, peers in runs:
            config = os.path.join(work, f"st-{len(failed)}-{title[:5].replace(' ', '')}.toml")
            with open(config, "w") as f:
                f.write(CHECKS)
                f.write("[auth.wfc]\n")
                f.write(f"path = {json.dumps(auth)}\n")
                if user:
                    f.write(f"user = {json.dumps(user)}\n")
                if peers:
                    f.write(f"peers = {json.dumps(peers)}\n")
            command = [
                args.st, "--config-file", config, "run", f"{base}/api/openapi.json",
                "--checks", "all",
                "--max-examples", str(args.max_examples),
                "--max-time", str(args.max_time),
                "--request-timeout", "10",
                # One worker: CPython 3.11's ast.parse, which hypothesis
                # calls to describe filters, is not thread-safe.
                "--workers", "1",
                "--seed", "1",
                "--no-color",
            ]
            if "--phases" not in extra:
                command += ["--phases", "examples,coverage,fuzzing,stateful"]
            command += extra
            print(f"fuzz: schemathesis {title}", flush=True)
            if subprocess.run(command, cwd=work).returncode != 0:
                failed.append(title)
        if dure.poll() is not None:
            failed.append(f"dure up itself (exited with {dure.returncode})")
    finally:
        if dure.poll() is None:
            os.killpg(dure.pid, signal.SIGTERM)
            try:
                dure.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(dure.pid, signal.SIGKILL)
        log.close()
    if failed:
        print(f"fuzz: failures in: {', '.join(failed)}; dure's log is {work}/dure.log")
        sys.exit(1)
    print("fuzz: no failures")


if __name__ == "__main__":
    main()
