"""Benchmark: latency and throughput of `vae-tf serve` under concurrent load (issue #5).

Starts the server on an exported model (after `dvc repro`: export/vae), then for each case
sends `--requests` predict requests from `--clients` concurrent keep-alive clients (aiohttp)
and prints p50 / p99 latency and requests per second. Client and server share the machine.
With `--budget`, for each export the largest log_likelihood its server admits instead; with
`--burst`, a 1-row request's latency behind a burst of large ones.

    python benchmarks/serving_load.py --model-base-path export/vae --clients 20 --requests 2000
    python benchmarks/serving_load.py --budget export/vae export/iwhvi export/vamp
    python benchmarks/serving_load.py --burst export/vae
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

from vae_tf.provenance import machine, write_result


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


@contextlib.contextmanager
def running_server(base_path: str):
    """`vae-tf serve` on `base_path` on a free port, until the block ends: its URL root and process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)
    server = subprocess.Popen([str(Path(sys.executable).parent / "vae-tf"), "serve", "--model-name", "m",
                               "--model-base-path", base_path, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=log)
    try:
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
        yield f"http://127.0.0.1:{port}/v1/models/m", server
    finally:
        server.terminate()
        server.wait(timeout=30)
        os.unlink(log.name)


def peak_mb(pid: int) -> float:
    """A process's peak resident memory (VmHWM), in MiB."""
    return [int(line.split()[1]) / 1024 for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("VmHWM:")][0]


def budget(base_paths: list[str], x: np.ndarray, max_seconds: float = 10.0) -> None:
    """For each export: the cost `vae-tf serve` measures at load (`vae_tf.serving.calibrate`), and
    a log_likelihood near the largest it admits under the default max_seconds (1024 rows x the
    samples that fill 80 % of the budget): predicted and measured seconds, their ratio, the
    server's peak memory."""
    import tensorflow as tf

    from vae_tf.serving import Signature, calibrate

    rows_md = []
    print(f"{'export':<16} {'us/row-sample':>13} {'fixed ms':>8} {'request':>14} {'predicted s':>11} "
          f"{'measured s':>10} {'ratio':>5} {'server peak MB':>14}")
    for base in base_paths:
        version = max((p for p in Path(base).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        loaded = tf.saved_model.load(str(version))
        cost = calibrate({name: Signature.of(fn) for name, fn in loaded.signatures.items()})
        rows = 1024
        samples = min(10000, int((0.8 * max_seconds - cost.fixed) / (rows * cost.per_unit)))  # the server's timing varies
        body = {"signature_name": "log_likelihood",
                "inputs": {"x": np.resize(x, (rows, x.shape[1])).tolist(), "num_samples": samples, "seed": 1}}
        with running_server(base) as (url, server):
            start = time.perf_counter()
            status = requests_post(f"{url}:predict", body)
            seconds = time.perf_counter() - start
            peak = peak_mb(server.pid)
        answer = "" if status == 200 else f" (status {status})"
        predicted = cost.seconds(rows * samples)
        print(f"{base:<16} {cost.per_unit * 1e6:13.3f} {cost.fixed * 1e3:8.1f} {f'{rows} x {samples}':>14} "
              f"{predicted:11.1f} {seconds:10.1f} {predicted / seconds:5.2f} {peak:14.0f}{answer}", flush=True)
        rows_md.append(f"| {base} | {cost.per_unit * 1e6:.3f} | {cost.fixed * 1e3:.1f} | {rows} x {samples} | "
                       f"{predicted:.1f} | {seconds:.1f} | {predicted / seconds:.2f} | {peak:.0f}{answer} |")
    write_result("serving_budget", f"python benchmarks/serving_load.py --budget {' '.join(base_paths)}",
                 "Client and server share the machine. The largest log_likelihood each server admits under "
                 f"--max-seconds {max_seconds:g}: 1024 rows x the samples that fill 80 % of it at the cost measured at "
                 "load (a fixed cost per call and a cost per row-sample, through two timed calls)."
                 "\n\n| export | us per row-sample (at load) | fixed ms per call | request | predicted s | measured s | "
                 "predicted / measured | server peak MB |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n"
                 + "\n".join(rows_md))


async def burst(url: str, x: np.ndarray, concurrent: int, rows: int, samples: int, probes: int) -> dict:
    """`concurrent` log_likelihood requests of `rows` x `samples` at once, and meanwhile `probes`
    1-row encodes one after another: the encodes' latencies, and the statuses of all."""
    large = {"signature_name": "log_likelihood",
             "inputs": {"x": np.resize(x, (rows, x.shape[1])).tolist(), "num_samples": samples, "seed": 1}}
    small = {"signature_name": "encode", "inputs": {"x": x[:1].tolist()}}
    statuses, latencies = [], []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=3600)) as session:
        async def post(body):
            start = time.perf_counter()
            async with session.post(url, json=body) as response:
                await response.read()
                statuses.append(response.status)
            return time.perf_counter() - start

        await post(small)  # warm-up: traced, a connection open
        await post(large)
        statuses.clear()
        flood = [asyncio.create_task(post(large)) for _ in range(concurrent)]
        await asyncio.sleep(0.5)  # the burst's bodies sent and queued
        for _ in range(probes):
            latencies.append(await post(small))
            await asyncio.sleep(0.1)
        await asyncio.gather(*flood)
    return {"latencies": np.array(latencies), "statuses": statuses}


def burst_report(base: str, x: np.ndarray, concurrent: int = 150, rows: int = 64, samples: int = 150,
                 probes: int = 20) -> None:
    with running_server(base) as (url, _):
        result = asyncio.run(burst(f"{url}:predict", x, concurrent, rows, samples, probes))
    latencies, statuses = result["latencies"], result["statuses"]
    counts = {code: statuses.count(code) for code in sorted(set(statuses))}
    line = (f"{concurrent} concurrent log_likelihood requests of {rows} x {samples} on {base}: a 1-row encode "
            f"behind them took {np.median(latencies):.3f} s median, {latencies.max():.3f} s at most ({probes} probes); "
            f"statuses {counts}, 5xx: {sum(n for code, n in counts.items() if code >= 500)}")
    print(line, flush=True)
    write_result("serving_burst", f"python benchmarks/serving_load.py --burst {base}",
                 "Client and server share the machine. " + line + ".")


def requests_post(url: str, body: dict) -> int:
    async def post():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3600)) as session:
            async with session.post(url, json=body) as response:
                await response.read()
                return response.status

    return asyncio.run(post())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-base-path", default="export/vae")
    parser.add_argument("--data", default="data/prepared", help="prepared data: test images are the x inputs")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--ll-samples", type=int, default=100, help="importance samples of log_likelihood")
    parser.add_argument("--budget", nargs="+", metavar="EXPORT",
                        help="instead: the largest log_likelihood each export's server admits, timed (see `budget`)")
    parser.add_argument("--burst", metavar="EXPORT",
                        help="instead: a 1-row encode's latency behind a burst of log_likelihood requests (`burst`)")
    args = parser.parse_args()

    from vae_tf.data import load_prepared

    x = load_prepared(Path(args.data)).test.astype(float)
    print(f"machine: {machine()} (client and server share it)")
    if args.budget:
        return budget(args.budget, x)
    if args.burst:
        return burst_report(args.burst, x)
    with running_server(args.model_base_path) as (root, _):
        print(f"{args.clients} clients, {args.requests} requests per case")
        print(f"{'case':<34} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'failed':>7}")
        for name, body in cases(x, args.ll_samples).items():
            latencies, seconds, failures = asyncio.run(load(f"{root}:predict", body, args.clients, args.requests))
            print(f"{name:<34} {np.percentile(latencies, 50) * 1e3:8.1f} {np.percentile(latencies, 99) * 1e3:8.1f} "
                  f"{len(latencies) / seconds:8.0f} {failures:7d}", flush=True)


if __name__ == "__main__":
    main()
