"""Load on `p3m serve`: a real uvicorn server on 127.0.0.1, concurrent uploads, health under load.

For each server configuration (`--workers` values; the first is the baseline of the ratios),
in interleaved rounds, the script starts `python -m p3m.cli serve` on a free loopback port,
waits for `/api/health`, warms up, and runs two bounded phases while a prober asks
`GET /api/health` every 0.1 s:

* burst: `--burst` clients upload one photo each at the same moment (the issue's goal: every
  answer 200 or a clean 503 with Retry-After, at least half 200; with `--burst 20`, all 200);
* sustained: `--clients` clients in a closed loop, `--requests` uploads in all (a client
  answered 503 waits its Retry-After, capped at 2 s, and tries again).

Printed per configuration (medians over rounds): requests/s, p50/p95 latency of 200 answers,
counts of 200 / 503 / 504 / other, and the health latency under load (p50 and max; the goal
is max < 1 s), with idle health latency as its baseline and requests/s as a ratio to the first
configuration. Timings on a shared machine are noisy: compare ratios within one run.

With `--anonymize`, instead: health latency while one `POST /api/anonymize` runs at a time
(the service's defaults: default detectors, audit with every detector, a matte estimated by the
served model), anonymisation in worker processes (`ServeConfig.anonymize_processes`, the
default) against the baseline of the same in the inference threads (dlib's detectors hold the
GIL), servers started alternately in each round; printed: health p50 / max over all probes,
anonymise latency p50 and its ratio to the baseline (goal: health max < 1 s).

    python benchmarks/bench_serve.py [--model selfie-cf] [--workers 1,2] [--rounds 2]
                                     [--burst 50] [--clients 8] [--requests 40] [--size 512]
    python benchmarks/bench_serve.py --model p3mnet-r34 --random-weights --burst 20
    python benchmarks/bench_serve.py --anonymize [--rounds 2] [--requests 4] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import httpx
import numpy as np
from PIL import Image


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def photo_jpeg(size: int) -> bytes:
    """The astronaut (scikit-image) at size x size, as a JPEG upload."""
    from skimage.data import astronaut

    buffer = io.BytesIO()
    Image.fromarray(astronaut()).resize((size, size), Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def random_checkpoint(model: str) -> str:
    """A checkpoint of `model` with random weights, in a temporary folder removed at exit."""
    import atexit
    import shutil

    import torch

    from p3m.models import create_model

    folder = tempfile.mkdtemp(prefix="p3m-bench-serve-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = os.path.join(folder, f"{model}-random.pth")
    torch.save(create_model(model, device="cpu").state_dict(), path)
    return path


# A server whose anonymisation runs in its inference threads (the baseline of --anonymize):
# `p3m serve` has no option for it, so the app is built from ServeConfig directly.
_THREADED_SERVER = """
import sys, uvicorn
from p3m.serve import ServeConfig, create_app
model, weights, workers, queue, timeout, port = sys.argv[1:7]
config = ServeConfig(model=model, weights=weights or None, workers=int(workers), max_queue=int(queue),
                     timeout=float(timeout), anonymize_processes=False)
uvicorn.run(create_app(config, preload=True), host="127.0.0.1", port=int(port), log_level="warning")
"""


class Server:
    """`p3m serve` in a subprocess on 127.0.0.1, stopped on exit (`anonymize_processes=False`:
    the same app with anonymisation in its threads)."""

    def __init__(self, args: argparse.Namespace, workers: int, anonymize_processes: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "p3m.cli", "serve", "--port", str(self.port),
            "--model", args.model, "--workers", str(workers), "--queue", str(args.queue),
            "--timeout", str(args.timeout),
        ]  # fmt: skip
        if args.weights is not None:
            command += ["--weights", args.weights]
        if not anonymize_processes:
            command = [sys.executable, "-c", _THREADED_SERVER, args.model, args.weights or "",
                       str(workers), str(args.queue), str(args.timeout), str(self.port)]  # fmt: skip
        # The server's log goes to a file: an unread pipe could fill up and stall the server.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)

    def log_tail(self, size: int = 3000) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-size:]

    def wait_ready(self, limit: float = 120.0) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"p3m serve exited: {self.log_tail()}")
            try:
                if httpx.get(self.url + "/api/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("p3m serve did not answer /api/health in time")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@dataclass
class Phase:
    statuses: list[int] = field(default_factory=list)
    latencies_ok: list[float] = field(default_factory=list)
    seconds: float = 0.0
    health: list[float] = field(default_factory=list)
    retry_after_missing: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # what the "other" answers were

    def count(self, status: int) -> int:
        return sum(s == status for s in self.statuses)

    @property
    def other(self) -> int:
        return sum(s not in (200, 503, 504) for s in self.statuses)


async def upload(client: httpx.AsyncClient, url: str, photo: bytes, phase: Phase) -> tuple[int, float]:
    start = time.perf_counter()
    try:
        response = await client.post(
            url + "/api/matte", files={"image": ("photo.jpg", photo, "image/jpeg")}, data={"output": "rgba"}
        )
        status = response.status_code
        if status == 503 and "retry-after" not in response.headers:
            phase.retry_after_missing += 1
        retry = float(response.headers.get("retry-after", 0) or 0)
        if status not in (200, 503, 504):
            kind = f"HTTP {status}: {response.text[:120]}"
            phase.failures[kind] = phase.failures.get(kind, 0) + 1
    except httpx.HTTPError as error:
        status, retry = -1, 0.0
        kind = type(error).__name__
        phase.failures[kind] = phase.failures.get(kind, 0) + 1
    elapsed = time.perf_counter() - start
    phase.statuses.append(status)
    if status == 200:
        phase.latencies_ok.append(elapsed)
    return status, retry


async def probe_health(url: str, phase: Phase, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                await client.get(url + "/api/health")
                phase.health.append(time.perf_counter() - start)
            except httpx.HTTPError:
                phase.health.append(float("inf"))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.1)


async def burst(url: str, photo: bytes, clients: int, timeout: float) -> Phase:
    phase = Phase()
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=clients + 1)
    async with httpx.AsyncClient(timeout=timeout + 30, limits=limits) as client:
        prober = asyncio.create_task(probe_health(url, phase, stop))
        start = time.perf_counter()
        await asyncio.gather(*(upload(client, url, photo, phase) for _ in range(clients)))
        phase.seconds = time.perf_counter() - start
        stop.set()
        await prober
    return phase


async def sustained(url: str, photo: bytes, clients: int, total: int, timeout: float) -> Phase:
    phase = Phase()
    stop = asyncio.Event()
    remaining = [total]

    async def client_loop(client: httpx.AsyncClient) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            status, retry = await upload(client, url, photo, phase)
            if status == 503:
                remaining[0] += 1  # turned away: the request is still to be served
                await asyncio.sleep(min(retry or 0.5, 2.0))

    async with httpx.AsyncClient(timeout=timeout + 30, limits=httpx.Limits(max_connections=clients + 1)) as client:
        prober = asyncio.create_task(probe_health(url, phase, stop))
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        phase.seconds = time.perf_counter() - start
        stop.set()
        await prober
    return phase


def idle_health(url: str, count: int = 20) -> float:
    times = []
    with httpx.Client(timeout=10) as client:
        for _ in range(count):
            start = time.perf_counter()
            client.get(url + "/api/health")
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def anonymize_one_at_a_time(url: str, photo: bytes, count: int, timeout: float) -> tuple[list[float], list[float]]:
    """`count` anonymise requests one after the other, health probed every 0.1 s meanwhile:
    (request latencies, health latencies)."""

    async def run() -> tuple[list[float], list[float]]:
        phase = Phase()
        stop = asyncio.Event()
        latencies = []
        async with httpx.AsyncClient(timeout=timeout + 30) as client:
            prober = asyncio.create_task(probe_health(url, phase, stop))
            for _ in range(count):
                start = time.perf_counter()
                response = await client.post(url + "/api/anonymize", files={"image": ("photo.jpg", photo, "image/jpeg")})
                if response.status_code != 200:
                    raise RuntimeError(f"anonymize answered {response.status_code}: {response.text[:200]}")
                latencies.append(time.perf_counter() - start)
            stop.set()
            await prober
        return latencies, phase.health

    return asyncio.run(run())


async def warm_up_anonymize(url: str, photo: bytes, workers: int, timeout: float) -> None:
    """One anonymisation per worker at once, so that every worker (process) has its models."""
    async with httpx.AsyncClient(timeout=timeout + 30) as client:
        files = {"image": ("w.jpg", photo, "image/jpeg")}
        await asyncio.gather(*(client.post(url + "/api/anonymize", files=files) for _ in range(workers)))


def anonymize_main(args: argparse.Namespace, photo: bytes) -> None:
    workers = int(args.workers.split(",")[0])
    configs = {"threads (baseline)": False, "processes": True}
    latency: dict[str, list[float]] = {name: [] for name in configs}
    health: dict[str, list[float]] = {name: [] for name in configs}
    print(f"p3m serve --model {args.model} --workers {workers}: POST /api/anonymize (defaults) of a "
          f"{args.size}x{args.size} JPEG, {args.requests} one at a time, GET /api/health every 0.1 s; "
          f"{os.cpu_count()} CPU(s), {args.rounds} round(s)")
    for round_index in range(args.rounds):
        for name, in_processes in configs.items():
            server = Server(args, workers, anonymize_processes=in_processes)
            try:
                server.wait_ready()
                asyncio.run(warm_up_anonymize(server.url, photo, workers, args.timeout))
                times, probes = anonymize_one_at_a_time(server.url, photo, args.requests, args.timeout)
                latency[name] += times
                health[name] += probes
            finally:
                server.stop()
            print(f"  round {round_index + 1}: {name} done", flush=True)
    base = statistics.median(latency["threads (baseline)"])
    print(f"{'anonymise in':>20} {'n':>3} {'anon p50 s':>10} {'ratio':>6} {'health n':>8} {'health p50 s':>12} {'health max s':>12}")
    for name in configs:
        p50 = statistics.median(latency[name])
        print(f"{name:>20} {len(latency[name]):>3} {p50:>10.2f} {p50 / base:>6.2f} {len(health[name]):>8} "
              f"{percentile(health[name], 50):>12.3f} {max(health[name]):>12.3f}")
    worst = max(health["processes"])
    print("goal (health < 1 s while anonymising):", "met" if worst < 1.0 else f"NOT met: {worst:.2f} s")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="selfie-cf")
    parser.add_argument("--workers", default="1,2", help="comma list; the first is the baseline")
    parser.add_argument("--queue", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--size", type=int, default=512, help="side of the square upload, pixels")
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="for a P3M-Net --model: serve a randomly initialised checkpoint (speed does not depend on weights)",
    )
    parser.add_argument(
        "--anonymize",
        action="store_true",
        help="health while anonymising: worker processes against threads (see the module doc)",
    )
    args = parser.parse_args()
    args.weights = None
    if args.random_weights:
        args.weights = random_checkpoint(args.model)
    os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.getcwd(), ".cache", "numba"))

    photo = photo_jpeg(args.size)
    if args.anonymize:
        anonymize_main(args, photo)
        return
    configs = [int(value) for value in args.workers.split(",")]
    results: dict[int, dict[str, list]] = {w: {"burst": [], "sustained": [], "idle": []} for w in configs}
    print(f"p3m serve --model {args.model}, upload {args.size}x{args.size} JPEG ({len(photo)} bytes), "
          f"queue {args.queue}, timeout {args.timeout:g} s, {os.cpu_count()} CPU(s), {args.rounds} round(s)")
    for round_index in range(args.rounds):
        for workers in configs:
            server = Server(args, workers)
            try:
                server.wait_ready()
                with httpx.Client(timeout=args.timeout) as client:  # warm-up: models, numba, caches
                    for _ in range(2):
                        client.post(server.url + "/api/matte", files={"image": ("w.jpg", photo)})
                results[workers]["idle"].append(idle_health(server.url))
                results[workers]["burst"].append(asyncio.run(burst(server.url, photo, args.burst, args.timeout)))
                results[workers]["sustained"].append(
                    asyncio.run(sustained(server.url, photo, args.clients, args.requests, args.timeout))
                )
                failures = {
                    kind: count
                    for name in ("burst", "sustained")
                    for kind, count in results[workers][name][-1].failures.items()
                }
                if failures:
                    print(f"  workers={workers}: answers other than 200/503/504: {failures}")
                    print("  server log (end):\n" + server.log_tail())
            finally:
                server.stop()
            print(f"  round {round_index + 1}: workers={workers} done", flush=True)

    header = (f"{'workers':>7} {'phase':>9} {'n':>4} {'200':>4} {'503':>4} {'504':>4} {'other':>5} "
              f"{'req/s':>6} {'ratio':>6} {'p50 s':>6} {'p95 s':>6} {'health p50':>10} {'health max':>10}")
    print(header)
    base_rate: dict[str, float] = {}
    for workers in configs:
        idle = statistics.median(results[workers]["idle"])
        for name in ("burst", "sustained"):
            phases: list[Phase] = results[workers][name]
            rate = statistics.median(p.count(200) / p.seconds for p in phases)
            base_rate.setdefault(name, rate)
            p50 = statistics.median(percentile(p.latencies_ok, 50) for p in phases)
            p95 = statistics.median(percentile(p.latencies_ok, 95) for p in phases)
            health50 = statistics.median(percentile(p.health, 50) for p in phases)
            health_max = max(max(p.health, default=float("nan")) for p in phases)
            # Counts are summed over the rounds; times are medians over the rounds.
            total = sum(len(p.statuses) for p in phases)
            counts = [sum(p.count(status) for p in phases) for status in (200, 503, 504)]
            other = sum(p.other for p in phases)
            print(f"{workers:>7} {name:>9} {total:>4} {counts[0]:>4} {counts[1]:>4} {counts[2]:>4} "
                  f"{other:>5} {rate:>6.2f} {rate / base_rate[name]:>6.2f} "
                  f"{p50:>6.2f} {p95:>6.2f} {health50:>10.3f} {health_max:>10.3f}")
        print(f"{workers:>7} {'idle':>9} health p50 {idle:.3f} s (baseline of the health columns)")
    for workers in configs:
        missed = []
        for index, phase in enumerate(results[workers]["burst"], 1):
            where = f"round {index} burst"
            if phase.other or phase.count(504) or phase.retry_after_missing:
                missed.append(f"{where}: {phase.count(504)} x 504, {phase.other} other, "
                              f"{phase.retry_after_missing} x 503 without Retry-After")
            if phase.count(200) * 2 < len(phase.statuses):
                missed.append(f"{where}: only {phase.count(200)} of {len(phase.statuses)} answered 200")
        for name in ("burst", "sustained"):
            for index, phase in enumerate(results[workers][name], 1):
                if max(phase.health, default=0) >= 1.0:
                    missed.append(f"round {index} {name}: health took {max(phase.health):.2f} s")
        print(f"goals for workers={workers} (burst: 200 or 503 with Retry-After, at least half 200; "
              "health < 1 s):", "met" if not missed else "NOT met: " + "; ".join(missed))


if __name__ == "__main__":
    main()
