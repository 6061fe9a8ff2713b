#!/usr/bin/env python3
"""A backend publisher for ringcast using only Python's standard library.

The HTTP API (docs/http-api.md) over one keep-alive connection, and the event catalogue of
docs/integration.md as thin functions: workflow_started("42", "deploy", ...) publishes
workflow.started on workflow:42. Copy this file into a service; it has no dependencies.

    publisher.py --url http://127.0.0.1:8765 --api-key KEY demo [--workflow 42] [--run run-7]
    publisher.py --url http://127.0.0.1:8765 --api-key KEY publish CHANNEL EVENT 'JSON'

--token JWT may replace --api-key: a token whose "publish" claim names the service's channels
(docs/security.md). tests/clients/test_publisher_example.py runs this file against the engine.
"""

import argparse
import http.client
import json
import sys
import urllib.parse


class PublishError(Exception):
    """The engine refused a publish: status, code (RATE_LIMITED, FORBIDDEN, ...), message and,
    for 429/503, retry_after in seconds (None when the answer did not say)."""

    def __init__(self, status, code, message, retry_after=None):
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


class Publisher:
    """One keep-alive HTTP/1.1 connection to the engine's API. Not thread-safe: give each thread
    its own (a connection answers requests in order, one at a time here)."""

    def __init__(self, url, api_key=None, token=None, timeout=5.0):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http":
            raise ValueError("url must be http://HOST:PORT (the engine has no TLS yet)")
        self.host, self.port = u.hostname, u.port or 80
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["X-API-Key"] = api_key
        elif token:
            self.headers["Authorization"] = f"Bearer {token}"
        else:
            raise ValueError("an API key or a token is needed")
        self.conn = None
        self.connects = 0  # how many TCP connections were opened: 1 while keep-alive holds

    def _request(self, path, body):
        payload = json.dumps(body, separators=(",", ":")).encode()
        for attempt in (0, 1):
            fresh = self.conn is None
            if fresh:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self.connects += 1
            try:
                self.conn.request("POST", path, payload, self.headers)
                resp = self.conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The engine closed an idle keep-alive connection (or restarted) before it read
                # this request: retry once on a new one. A fresh connection failing is real.
                self.close()
                if fresh or attempt:
                    raise
                continue
            if resp.getheader("Connection", "").lower() == "close":
                self.close()
            answer = json.loads(data) if data else {}
            if resp.status != 200:
                err = answer.get("error", {})
                ra = resp.getheader("Retry-After")
                raise PublishError(resp.status, err.get("code", "?"), err.get("message", ""),
                                   int(ra) if ra and ra.isdigit() else None)
            return answer

    def publish(self, channel, event, data=None):
        """Publishes one event; returns {"channel","seq","epoch","subscribers"}. Raises PublishError."""
        return self._request("/api/publish", {"channel": channel, "event": event, "data": data})

    def broadcast(self, channels, event, data=None):
        """Publishes one event to 1-64 channels, all or none; returns {"results","subscribers"}."""
        return self._request("/api/broadcast",
                             {"channels": list(channels), "event": event, "data": data})

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# ---- the catalogue (docs/integration.md) -----------------------------------------------------

_default = None


def connect(url, api_key=None, token=None, timeout=5.0):
    """Sets the Publisher the helpers below use when they are not given pub=."""
    global _default
    if _default is not None:
        _default.close()
    _default = Publisher(url, api_key=api_key, token=token, timeout=timeout)
    return _default


def _pub(channel, event, pub, **fields):
    p = pub or _default
    if p is None:
        raise RuntimeError("call connect(url, api_key=...) first, or pass pub=")
    return p.publish(channel, event, {k: v for k, v in fields.items() if v is not None})


# Each helper's channel pattern and event, as docs/integration.md's tables list them (the test
# checks that every pair here is in the document).
CATALOGUE = {}


def _entry(channel, event):
    def mark(fn):
        CATALOGUE[fn.__name__] = (channel, event)
        return fn
    return mark


@_entry("workflow:{id}", "workflow.started")
def workflow_started(workflow_id, name, stages=(), triggered_by=None, pub=None):
    return _pub(f"workflow:{workflow_id}", "workflow.started", pub, workflow_id=str(workflow_id),
                name=name, stages=list(stages), triggered_by=triggered_by)


@_entry("workflow:{id}", "workflow.stage_completed")
def workflow_stage_completed(workflow_id, stage, index, duration_ms=None, output=None, pub=None):
    return _pub(f"workflow:{workflow_id}", "workflow.stage_completed", pub,
                workflow_id=str(workflow_id), stage=stage, index=index, duration_ms=duration_ms,
                output=output)


@_entry("workflow:{id}", "workflow.completed")
def workflow_completed(workflow_id, duration_ms=None, result=None, pub=None):
    return _pub(f"workflow:{workflow_id}", "workflow.completed", pub, workflow_id=str(workflow_id),
                duration_ms=duration_ms, result=result)


@_entry("workflow:{id}", "workflow.failed")
def workflow_failed(workflow_id, stage, error, retryable=False, pub=None):
    return _pub(f"workflow:{workflow_id}", "workflow.failed", pub, workflow_id=str(workflow_id),
                stage=stage, error=error, retryable=retryable)


@_entry("pool:{id}", "pool.scaled")
def pool_scaled(pool_id, workers, target, pub=None):
    return _pub(f"pool:{pool_id}", "pool.scaled", pub, pool_id=str(pool_id), workers=workers,
                target=target)


@_entry("pool:{id}", "pool.task_queued")
def pool_task_queued(pool_id, task_id, workflow_id, queued, pub=None):
    return _pub(f"pool:{pool_id}", "pool.task_queued", pub, pool_id=str(pool_id), task_id=task_id,
                workflow_id=str(workflow_id), queued=queued)


@_entry("worker:{id}", "worker.task_assigned")
def worker_task_assigned(worker_id, task_id, workflow_id, stage, pub=None):
    return _pub(f"worker:{worker_id}", "worker.task_assigned", pub, worker_id=str(worker_id),
                task_id=task_id, workflow_id=str(workflow_id), stage=stage)


@_entry("test:{run_id}", "test.started")
def test_started(run_id, suite, total, commit=None, pub=None):
    return _pub(f"test:{run_id}", "test.started", pub, run_id=run_id, suite=suite, total=total,
                commit=commit)


@_entry("test:{run_id}", "test.completed")
def test_completed(run_id, passed, failed, skipped=0, duration_ms=None, pub=None):
    return _pub(f"test:{run_id}", "test.completed", pub, run_id=run_id, passed=passed,
                failed=failed, skipped=skipped, duration_ms=duration_ms)


@_entry("test:{run_id}", "test.failed")
def test_failed(run_id, test, message, file=None, line=None, pub=None):
    return _pub(f"test:{run_id}", "test.failed", pub, run_id=run_id, test=test, message=message,
                file=file, line=line)


@_entry("quality:{project}", "quality.gate_evaluated")
def quality_gate_evaluated(project, run_id, gate, passed, metrics=None, pub=None):
    return _pub(f"quality:{project}", "quality.gate_evaluated", pub, project=project,
                run_id=run_id, gate=gate, passed=passed, metrics=metrics)


@_entry("coverage", "coverage.updated")
def coverage_updated(project, run_id, lines_pct, branches_pct=None, pub=None):
    return _pub("coverage", "coverage.updated", pub, project=project, run_id=run_id,
                lines_pct=lines_pct, branches_pct=branches_pct)


@_entry("patterns:{category}", "pattern.detected")
def pattern_detected(category, pattern, confidence, examples=(), pub=None):
    return _pub(f"patterns:{category}", "pattern.detected", pub, category=category,
                pattern=pattern, confidence=confidence, examples=list(examples))


@_entry("anomalies", "anomaly.detected")
def anomaly_detected(metric, value, expected, severity="warning", pub=None):
    return _pub("anomalies", "anomaly.detected", pub, metric=metric, value=value,
                expected=expected, severity=severity)


@_entry("insights", "insight.generated")
def insight_generated(title, body, links=(), pub=None):
    return _pub("insights", "insight.generated", pub, title=title, body=body, links=list(links))


@_entry("metrics", "metrics.snapshot")
def metrics_snapshot(window_s, values, pub=None):
    return _pub("metrics", "metrics.snapshot", pub, window_s=window_s, values=values)


@_entry("knowledge:{id}", "knowledge.added")
def knowledge_added(session_id, item_id, kind, summary, pub=None):
    return _pub(f"knowledge:{session_id}", "knowledge.added", pub, session_id=session_id,
                item_id=item_id, kind=kind, summary=summary)


@_entry("checkpoint:{id}", "checkpoint.created")
def checkpoint_created(session_id, checkpoint_id, label=None, pub=None):
    return _pub(f"checkpoint:{session_id}", "checkpoint.created", pub, session_id=session_id,
                checkpoint_id=checkpoint_id, label=label)


@_entry("checkpoint:{id}", "checkpoint.restored")
def checkpoint_restored(session_id, checkpoint_id, by, pub=None):
    return _pub(f"checkpoint:{session_id}", "checkpoint.restored", pub, session_id=session_id,
                checkpoint_id=checkpoint_id, by=by)


@_entry("diagram:{id}", "diagram.updated")
def diagram_updated(diagram_id, version, ops, by, pub=None):
    return _pub(f"diagram:{diagram_id}", "diagram.updated", pub, diagram_id=diagram_id,
                version=version, ops=list(ops), by=by)


@_entry("global", "system.announcement")
def system_announcement(message, level="info", until=None, pub=None):
    return _pub("global", "system.announcement", pub, message=message, level=level, until=until)


@_entry("global", "system.maintenance")
def system_maintenance(starts_at, duration_s, message, pub=None):
    return _pub("global", "system.maintenance", pub, starts_at=starts_at, duration_s=duration_s,
                message=message)


# ---- command line ----------------------------------------------------------------------------

def demo(workflow, run):
    """A workflow that runs its tests, one of which fails: what a dashboard would show."""
    yield workflow_started(workflow, "deploy", stages=["build", "test"], triggered_by="demo")
    yield workflow_stage_completed(workflow, "build", 1, duration_ms=5310)
    yield test_started(run, "unit", total=3, commit="a1b2c3d")
    yield test_failed(run, "test_login", "expected 200, got 500", file="tests/test_auth.py",
                      line=42)
    yield test_completed(run, passed=2, failed=1, duration_ms=1840)
    yield workflow_failed(workflow, "test", f"test run {run}: 1 failed", retryable=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8765", help="the engine's HTTP address")
    cred = ap.add_mutually_exclusive_group(required=True)
    cred.add_argument("--api-key")
    cred.add_argument("--token", help="a JWT whose publish claim names the channels")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="publish a workflow and its test run")
    d.add_argument("--workflow", default="42")
    d.add_argument("--run", default="run-7")
    p = sub.add_parser("publish", help="publish one event")
    p.add_argument("channel")
    p.add_argument("event")
    p.add_argument("data", nargs="?", default="null", help="JSON payload")
    a = ap.parse_args(argv)
    pub = connect(a.url, api_key=a.api_key, token=a.token)
    try:
        answers = (demo(a.workflow, a.run) if a.cmd == "demo"
                   else [pub.publish(a.channel, a.event, json.loads(a.data))])
        for answer in answers:
            print(json.dumps(answer, separators=(",", ":")), flush=True)
    except PublishError as e:
        print(f"publisher.py: {e}", file=sys.stderr)
        return 1
    finally:
        pub.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
