"""``elman serve`` over HTTP on loopback: throughput of batch requests and latency of single
reviews under concurrent clients (bounded in requests; real IMDB test reviews).

    python benchmarks/serve.py --model runs/imdb --data ../shared/data/aclImdb.tar.gz

Starts the server on a free loopback port, warms it up, then
- throughput: 4 clients each send ``--batches`` requests of 100 reviews: reviews/s;
- latency: 1, 10 and 50 clients each send ``--singles`` one-review requests: p50 and p99 ms,
printing the error count beside each (any non-200 answer or failed connection).

The clients share the machine with the server, so what they cost is taken from it. By default
they are coroutines of one asyncio loop on raw keep-alive connections (HTTP/1.1 written and
read by hand: a few microseconds a request); ``--client threads`` runs each in a thread with
``http.client`` instead (pure Python: at 50 clients the client process itself queues requests
behind its GIL, and its latencies include that).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from elman.data.imdb import read_reviews, resolve_source

sys.path.insert(0, str(Path(__file__).resolve().parent))  # (run as a script: its neighbours)
from report import provenance  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model: str) -> tuple[subprocess.Popen, int]:
    """``elman serve --model MODEL`` on a free loopback port, once it answers GET /health."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "elman", "serve", "--model", model, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
            return server, port
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise SystemExit(f"elman serve --model {model} did not start") from None
            time.sleep(0.2)


class Client:
    """One keep-alive connection: ``post(texts)`` -> (ok, seconds)."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, texts: list[str]) -> tuple[bool, float]:
        body = json.dumps({"texts": texts})
        started = time.perf_counter()
        try:
            self.connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
            response = self.connection.getresponse()
            answer = json.loads(response.read())
            ok = response.status == 200 and len(answer["predictions"]) == len(texts)
        except (OSError, http.client.HTTPException, ValueError):
            self.connection.close()
            ok = False
        return ok, time.perf_counter() - started


def run_clients(port: int, clients: int, requests: int, texts_of) -> tuple[list[float], int, float]:
    """``clients`` threads, each sending ``requests`` requests: latencies, errors, wall time."""

    def client(index: int) -> list[tuple[bool, float]]:
        connection = Client(port)
        return [connection.post(texts_of(index, i)) for i in range(requests)]

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = [r for rs in pool.map(client, range(clients)) for r in rs]
    wall = time.perf_counter() - started
    return [s for _, s in results], sum(not ok for ok, _ in results), wall


class AsyncClient:
    """One keep-alive connection in an asyncio loop: ``post(texts)`` -> (ok, seconds)."""

    def __init__(self, port: int) -> None:
        self.port, self.streams = port, None

    async def post(self, texts: list[str]) -> tuple[bool, float]:
        body = json.dumps({"texts": texts}).encode()
        request = (
            b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        started = time.perf_counter()
        try:
            if self.streams is None:
                self.streams = await asyncio.open_connection("127.0.0.1", self.port)
            reader, writer = self.streams
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            answer = json.loads(await reader.readexactly(length))
            ok = status == 200 and len(answer["predictions"]) == len(texts)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            self.streams = None
            ok = False
        return ok, time.perf_counter() - started


def run_async_clients(
    port: int, clients: int, requests: int, texts_of
) -> tuple[list[float], int, float]:
    """``clients`` coroutines of one loop, each sending ``requests`` requests in turn."""

    async def client(index: int) -> list[tuple[bool, float]]:
        connection = AsyncClient(port)
        return [await connection.post(texts_of(index, i)) for i in range(requests)]

    async def everyone() -> list[list[tuple[bool, float]]]:
        return await asyncio.gather(*(client(index) for index in range(clients)))

    started = time.perf_counter()
    results = [r for rs in asyncio.run(everyone()) for r in rs]
    wall = time.perf_counter() - started
    return [s for _, s in results], sum(not ok for ok, _ in results), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="folder written by elman train")
    parser.add_argument("--data", help="aclImdb archive (default: $ELMAN_DATA or download)")
    parser.add_argument("--batches", type=int, default=50, help="batch requests per client")
    parser.add_argument("--singles", type=int, default=100, help="single requests per client")
    parser.add_argument(
        "--client",
        choices=("asyncio", "threads"),
        default="asyncio",
        help="the load generator (default: asyncio, see above)",
    )
    args = parser.parse_args()
    clients_of = run_async_clients if args.client == "asyncio" else run_clients
    reviews = read_reviews(resolve_source(args.data))["test"].texts
    server, port = start_server(args.model)
    try:
        run_clients(port, 4, 5, lambda c, i: reviews[:100])  # warm-up: compiled kernels
        pick = np.random.default_rng(0).integers(0, len(reviews), size=10**6)

        def batch(client: int, i: int) -> list[str]:
            start = (client * 997 + i * 100) % (len(reviews) - 100)
            return reviews[start : start + 100]

        _, errors, wall = clients_of(port, 4, args.batches, batch)
        total = 4 * args.batches * 100
        print(provenance() + "\n")
        print(
            f"elman serve --model {args.model}, loopback, {len(reviews):,} test reviews, "
            f"{args.client} clients"
        )
        print("\n| load | requests | reviews/s | p50 ms | p99 ms | errors |")
        print("|---|---:|---:|---:|---:|---:|")
        print(
            f"| 4 clients, batches of 100 | {4 * args.batches} | {total / wall:,.0f} | | "
            f"| {errors} |"
        )
        for clients in (1, 10, 50):
            latencies, errors, wall = clients_of(
                port, clients, args.singles, lambda c, i: [reviews[pick[c * 10_000 + i]]]
            )
            p50, p99 = np.percentile(latencies, [50, 99]) * 1000
            n = clients * args.singles
            print(
                f"| {clients} client(s), 1 review each | {n} | {n / wall:,.0f} | {p50:.1f} "
                f"| {p99:.1f} | {errors} |"
            )
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
