#!/usr/bin/env python3
"""Acknowledged webhooks per second of a running `hookbridge serve`: N distinct HAP messages
(built from tests/fixtures/hap-message-mention.json) posted by C concurrent clients; prints
requests/s and p50/p99 latency. With a data directory every 200 was fsynced first.

    scripts/ack-rate.py [--url http://127.0.0.1:3000] [-n 1000] [-c 16]
"""
import argparse
import concurrent.futures
import http.client
import json
import time
import urllib.parse
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="http://127.0.0.1:3000")
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("-c", type=int, default=16)
    p.add_argument("--token", default="hookbridge-demo-token")
    a = p.parse_args()
    base = json.loads((Path(__file__).parent.parent / "tests/fixtures/hap-message-mention.json").read_text())
    run = f"{time.time_ns():x}"
    url = urllib.parse.urlsplit(a.url)

    def post(i: int) -> float:
        body = dict(base, messageId=f"ack-{run}-{i}")
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
        started = time.perf_counter()
        conn.request("POST", "/hap/message", json.dumps(body), {
            "content-type": "application/json", "X-Hookbridge-Token": a.token})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise SystemExit(f"HTTP {resp.status}")
        return time.perf_counter() - started

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(a.c) as pool:
        latencies = sorted(pool.map(post, range(a.n)))
    took = time.perf_counter() - started
    ms = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    print(f"{a.n} acknowledged in {took:.2f} s: {a.n / took:.0f}/s, p50 {ms(0.5):.1f} ms, p99 {ms(0.99):.1f} ms ({a.c} clients)")


if __name__ == "__main__":
    main()
