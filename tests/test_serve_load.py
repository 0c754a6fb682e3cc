"""The service under load, on a real uvicorn server on 127.0.0.1 (started and stopped per test).

Where the test is about the server, the model is `StubMatting` given to `Matter` as a built model
(fast, and able to hold a worker busy on a gate); one test sends a real selfie-cf request.
"""

from __future__ import annotations

import asyncio
import io
import select
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
import httpx  # noqa: E402

from p3m.serve import ServeConfig, create_app  # noqa: E402
from serve_helpers import StubMatting, png_bytes, uvicorn_server, wait_until  # noqa: E402

HEALTH_LIMIT = 1.0  # seconds: the bound on GET /api/health under load


@pytest.fixture(scope="module")
def photo() -> bytes:
    rows = np.linspace(0, 255, 96, dtype=np.float32)[:, None]
    image = np.broadcast_to(rows, (96, 80)).astype(np.uint8)
    return png_bytes(np.dstack([image, image[::-1], image]))


def _files(photo: bytes) -> dict:
    return {"image": ("photo.png", photo, "image/png")}


def _health(url: str) -> tuple[dict, float]:
    start = time.perf_counter()
    response = httpx.get(url + "/api/health", timeout=10)
    return response.json(), time.perf_counter() - start


def test_health_answers_while_the_worker_is_busy_and_a_full_queue_answers_503(photo: bytes) -> None:
    gate = threading.Event()
    stub = StubMatting(gate)
    app = create_app(ServeConfig(model=stub, workers=1, max_queue=1, timeout=30))
    with uvicorn_server(app, gate.set) as url, httpx.Client(timeout=30) as client:
        answers: dict[str, httpx.Response] = {}

        def send(name: str) -> None:
            answers[name] = httpx.post(url + "/api/matte", files=_files(photo), timeout=30)

        first = threading.Thread(target=send, args=("first",))
        first.start()
        wait_until(lambda: _health(url)[0]["running"] == 1, what="the first job to run")
        second = threading.Thread(target=send, args=("second",))
        second.start()
        wait_until(lambda: _health(url)[0]["waiting"] == 1, what="the second job to queue")
        # The worker is stuck in the model: the event loop must still answer at once.
        latencies = [_health(url)[1] for _ in range(5)]
        assert max(latencies) < HEALTH_LIMIT, latencies
        full = client.post(url + "/api/matte", files=_files(photo))
        assert full.status_code == 503
        assert int(full.headers["retry-after"]) >= 1
        assert "busy" in full.json()["detail"]
        gate.set()
        first.join(30)
        second.join(30)
        assert answers["first"].status_code == 200 and answers["second"].status_code == 200
        assert answers["first"].headers["content-type"] == "image/png"
        stats = _health(url)[0]
        assert stats["rejected_busy"] == 1 and stats["running"] == 0 and stats["waiting"] == 0


def test_a_request_over_its_time_bound_gets_504_and_its_queued_job_is_dropped(photo: bytes) -> None:
    gate = threading.Event()
    stub = StubMatting(gate)
    app = create_app(ServeConfig(model=stub, workers=1, max_queue=4, timeout=1.0))
    with uvicorn_server(app, gate.set) as url:

        async def two_requests() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as client:
                return await asyncio.gather(
                    *(client.post(url + "/api/matte", files=_files(photo)) for _ in range(2))
                )

        answers = asyncio.run(two_requests())
        assert [a.status_code for a in answers] == [504, 504]
        assert all("time bound of 1 s" in a.json()["detail"] for a in answers)
        gate.set()
        # The running job ends on its own; the queued one is never run (hybrid = 2 passes).
        wait_until(lambda: _health(url)[0]["waiting"] + _health(url)[0]["running"] == 0, what="idle")
        assert stub.calls == 2
        assert httpx.post(url + "/api/matte", files=_files(photo), timeout=30).status_code == 200


def test_a_queued_job_of_a_client_that_went_away_is_dropped(photo: bytes) -> None:
    gate = threading.Event()
    stub = StubMatting(gate)
    app = create_app(ServeConfig(model=stub, workers=1, max_queue=4, timeout=60))
    with uvicorn_server(app, gate.set) as url:
        first = threading.Thread(
            target=lambda: httpx.post(url + "/api/matte", files=_files(photo), timeout=60)
        )
        first.start()
        wait_until(lambda: _health(url)[0]["running"] == 1, what="the first job to run")
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes its connection
            httpx.post(url + "/api/matte", files=_files(photo), timeout=httpx.Timeout(30, read=0.5))
        wait_until(lambda: _health(url)[0]["waiting"] == 0, what="the abandoned job to be dropped")
        gate.set()
        first.join(30)
        wait_until(lambda: _health(url)[0]["running"] == 0, what="idle")
        assert stub.calls == 2


def test_concurrent_uploads_twenty_all_200_fifty_200_or_clean_503(photo: bytes) -> None:
    app = create_app(ServeConfig(model=StubMatting(), workers=2, max_queue=32, timeout=60))
    with uvicorn_server(app) as url:

        async def burst(count: int) -> tuple[list[httpx.Response], list[float]]:
            health_times: list[float] = []
            done = asyncio.Event()
            limits = httpx.Limits(max_connections=count + 2)
            async with httpx.AsyncClient(timeout=60, limits=limits) as client:

                async def probe() -> None:
                    while not done.is_set():
                        start = time.perf_counter()
                        await client.get(url + "/api/health")
                        health_times.append(time.perf_counter() - start)
                        await asyncio.sleep(0.02)

                prober = asyncio.create_task(probe())
                answers = await asyncio.gather(
                    *(client.post(url + "/api/matte", files=_files(photo)) for _ in range(count))
                )
                done.set()
                await prober
            return answers, health_times

        answers, health_times = asyncio.run(burst(20))
        assert [a.status_code for a in answers] == [200] * 20
        assert health_times and max(health_times) < HEALTH_LIMIT

        answers, health_times = asyncio.run(burst(50))
        statuses = [a.status_code for a in answers]
        assert set(statuses) <= {200, 503}, statuses
        assert statuses.count(200) >= 25
        assert all(int(a.headers["retry-after"]) >= 1 for a in answers if a.status_code == 503)
        assert health_times and max(health_times) < HEALTH_LIMIT


def _raw_request(port: int, headers: str) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection.sendall(headers.encode("latin-1"))
    return connection


def _read_answer(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (it does after a 413)."""
    answer = b""
    while chunk := connection.recv(65536):
        answer += chunk
    return answer


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_an_upload_over_the_limit_is_refused_from_content_length_before_its_body() -> None:
    app = create_app(ServeConfig(model=StubMatting(), max_upload_bytes=1 << 20))
    with uvicorn_server(app) as url:
        # Ten gigabytes declared, not one byte sent: the answer must not wait for the body.
        connection = _raw_request(
            _port(url),
            "POST /api/matte HTTP/1.1\r\nHost: test\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 10000000000\r\n\r\n",
        )
        with connection:
            connection.settimeout(5)
            answer = _read_answer(connection).decode("latin-1")
        assert answer.startswith("HTTP/1.1 413"), answer[:80]
        assert "upload larger than the limit of 1048576 bytes" in answer


def test_a_chunked_upload_is_cut_off_once_past_the_limit() -> None:
    limit = 1 << 20
    app = create_app(ServeConfig(model=StubMatting(), max_upload_bytes=limit))
    with uvicorn_server(app) as url:
        connection = _raw_request(
            _port(url),
            "POST /api/matte HTTP/1.1\r\nHost: test\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        head = b'--b\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n\r\n'
        chunk = b"\0" * 65536
        attempted = 64 << 20  # far more than the limit and than any socket buffer
        sent, answer = 0, b""
        with connection:
            connection.sendall(b"%x\r\n%s\r\n" % (len(head), head))
            connection.setblocking(False)
            deadline = time.monotonic() + 30
            while sent < attempted and time.monotonic() < deadline:
                readable, writable, _ = select.select([connection], [connection], [], 1.0)
                if readable:
                    answer = connection.recv(65536)
                    break
                if writable:
                    try:
                        connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                        continue
                    sent += len(chunk)
            if not answer:
                connection.setblocking(True)
                connection.settimeout(5)
                answer = connection.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
        assert sent < attempted  # the server answered (and stopped reading) long before the end


def test_one_real_selfie_cf_request_over_uvicorn() -> None:
    pytest.importorskip("mediapipe")
    from skimage.data import astronaut

    buffer = io.BytesIO()
    Image.fromarray(astronaut()[::2, ::2]).save(buffer, format="JPEG", quality=92)
    app = create_app(ServeConfig(model="selfie-cf"))
    with uvicorn_server(app) as url:
        response = httpx.post(
            url + "/api/matte",
            files={"image": ("astronaut.jpg", buffer.getvalue(), "image/jpeg")},
            data={"output": "alpha"},
            timeout=60,
        )
    assert response.status_code == 200, response.text
    assert response.headers["x-p3m-model"] == "selfie-cf"
    alpha = np.asarray(Image.open(io.BytesIO(response.content)))
    assert alpha.shape == (256, 256)
    assert alpha[128, 128] > 200 and alpha[20:40, 5:15].max() < 30


def test_the_pool_turns_away_work_that_could_not_finish_within_the_time_bound() -> None:
    from p3m.serve.pool import InferencePool, ServiceBusy

    pool: InferencePool[str] = InferencePool(lambda: "state", workers=1, max_queue=10, timeout=0.6)

    async def scenario() -> None:
        ticket = pool.admit()
        assert await pool.run(ticket, lambda state: (time.sleep(0.3), state)[1]) == "state"
        first = pool.admit()  # nothing ahead: about 0.3 s, well within the bound
        with pytest.raises(ServiceBusy, match="would not finish within its time bound") as busy:
            pool.admit()  # one job ahead at 0.3 s each: 0.6 s, too close to 0.6 s
        assert busy.value.retry_after >= 1
        pool.release(first)
        pool.release(first)  # releasing twice is harmless
        assert pool.stats()["waiting"] == 0 and pool.stats()["rejected_busy"] == 1

    try:
        asyncio.run(scenario())
    finally:
        pool.close()


def test_a_full_pool_says_how_many_run_and_how_many_wait() -> None:
    """`--queue 0 --workers 1` answered "the queue holds 1"."""
    from p3m.serve.pool import InferencePool, ServiceBusy

    pool: InferencePool[str] = InferencePool(lambda: "state", workers=1, max_queue=0, timeout=60)
    try:
        ticket = pool.admit()
        with pytest.raises(ServiceBusy, match=r"1 request\(s\) in hand: 1 being computed, a queue of 0"):
            pool.admit()
        pool.release(ticket)
    finally:
        pool.close(wait=5)


def test_the_process_runner_runs_jobs_in_another_process_and_survives_a_crash() -> None:
    """Anonymisation (dlib holds the GIL) runs in worker processes behind the pool's threads;
    a process that dies costs its request a 503, not the service."""
    import os

    from p3m.serve.pool import ProcessCrashed, ProcessRunner

    runner = ProcessRunner(workers=1)
    try:
        child = runner.call(os.getpid)
        assert child != os.getpid()
        with pytest.raises(ProcessCrashed, match="worker process died"):
            runner.call(os._exit, 3)
        assert runner.call(os.getpid) not in (child, os.getpid())  # a new process took over
        assert (runner.calls, runner.crashes) == (3, 1)
    finally:
        runner.close()
