"""Benchmark: latency and throughput of `vae-tf serve` under concurrent load (issue #5).

Starts the server on an exported model (after `dvc repro`: export/vae), then for each case
sends `--requests` predict requests from `--clients` concurrent keep-alive clients (aiohttp)
and prints p50 / p99 latency and requests per second. Client and server share the machine.

    python benchmarks/serving_load.py --model-base-path export/vae --clients 20 --requests 2000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np


def cases(x: np.ndarray, ll_samples: int) -> dict[str, dict]:
    return {
        "sample, batch 1": {"signature_name": "sample", "inputs": {"num_samples": 1, "seed": 1}},
        "sample, batch 64": {"signature_name": "sample", "inputs": {"num_samples": 64, "seed": 1}},
        f"log_likelihood K={ll_samples}, batch 1": {
            "signature_name": "log_likelihood", "inputs": {"x": x[:1].tolist(), "num_samples": ll_samples, "seed": 1}},
        f"log_likelihood K={ll_samples}, batch 64": {
            "signature_name": "log_likelihood", "inputs": {"x": x[:64].tolist(), "num_samples": ll_samples, "seed": 1}},
    }


async def load(url: str, body: dict, clients: int, requests: int) -> tuple[np.ndarray, float, int]:
    """`requests` POSTs of `body` from `clients` concurrent clients: latencies (s), wall time, failures."""
    latencies, failures = [], 0
    remaining = iter(range(requests))

    async def client(session):
        nonlocal failures
        for _ in remaining:
            start = time.perf_counter()
            async with session.post(url, json=body) as response:
                await response.read()
                failures += response.status != 200
            latencies.append(time.perf_counter() - start)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        async with session.post(url, json=body) as response:  # warm-up
            assert response.status == 200, await response.text()
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        return np.array(latencies), time.perf_counter() - start, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-base-path", default="export/vae")
    parser.add_argument("--data", default="data/prepared", help="prepared data: test images are the x inputs")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--ll-samples", type=int, default=100, help="importance samples of log_likelihood")
    args = parser.parse_args()

    from vae_tf.data import load_prepared

    x = load_prepared(Path(args.data)).test.astype(float)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)
    server = subprocess.Popen([str(Path(sys.executable).parent / "vae-tf"), "serve", "--model-name", "m",
                               "--model-base-path", args.model_base_path, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=log)
    try:
        url = f"http://127.0.0.1:{port}/v1/models/m:predict"

        async def wait_ready():
            async with aiohttp.ClientSession() as session:
                for _ in range(600):
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/v1/models/m") as response:
                            if response.status == 200:
                                return
                    except aiohttp.ClientConnectionError:
                        pass
                    assert server.poll() is None, Path(log.name).read_text()
                    await asyncio.sleep(0.2)
                raise TimeoutError("server did not start")

        asyncio.run(wait_ready())
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (client and server share "
              f"them); {args.clients} clients, {args.requests} requests per case")
        print(f"{'case':<34} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'failed':>7}")
        for name, body in cases(x, args.ll_samples).items():
            latencies, seconds, failures = asyncio.run(load(url, body, args.clients, args.requests))
            print(f"{name:<34} {np.percentile(latencies, 50) * 1e3:8.1f} {np.percentile(latencies, 99) * 1e3:8.1f} "
                  f"{len(latencies) / seconds:8.0f} {failures:7d}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
        os.unlink(log.name)


if __name__ == "__main__":
    main()
