"""The threaded HTTP/1.1 server: concurrency, keep-alive, framing, clean stop."""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from rlorinfra.controlplane.app import make_app
from rlorinfra.controlplane.server import serve_in_thread
from rlorinfra.controlplane.store import Store
from tests.controlplane.helpers import JOBS, KEY, POLICY_SHAPE, body


def test_sixteen_threads_creating_and_listing_lose_nothing(served):
    threads, per_thread = 16, 8
    barrier = threading.Barrier(threads)

    def worker(n: int) -> list[str]:
        created = []
        with httpx.Client(verify=False, base_url=served.url, headers=KEY, timeout=60) as c:
            barrier.wait()
            for i in range(per_thread):
                job_id = f"t{n:02d}-{i:02d}"
                response = c.post(
                    JOBS,
                    params={"trainingShape": POLICY_SHAPE, "rlorTrainerJobId": job_id},
                    json=body(displayName=job_id),
                )
                assert response.status_code == 200, response.text
                created.append(job_id)
                assert c.get(JOBS, params={"pageSize": 20}).status_code == 200
        return created

    with ThreadPoolExecutor(threads) as pool:
        created = [job for jobs in pool.map(worker, range(threads)) for job in jobs]
    with httpx.Client(verify=False, base_url=served.url, headers=KEY) as c:
        listed, token = [], ""
        while True:
            page = c.get(JOBS, params={"pageSize": 50, **({"pageToken": token} if token else {})}).json()
            listed += [j["displayName"] for j in page["rlorTrainerJobs"]]
            token = page["nextPageToken"]
            if not token:
                break
    assert sorted(listed) == sorted(created) and len(created) == threads * per_thread


def test_concurrent_creates_of_one_id_make_exactly_one_job(served):
    def attempt(_: int) -> int:
        with httpx.Client(verify=False, base_url=served.url, headers=KEY) as c:
            return c.post(
                JOBS, params={"trainingShape": POLICY_SHAPE, "rlorTrainerJobId": "same"}, json=body()
            ).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(attempt, range(16)))
    assert sorted(codes) == [200] + [409] * 15


def test_two_servers_on_one_database_share_the_world(db_path):
    first = serve_in_thread(make_app(Store(db_path, provision_seconds=0.01)))
    second = serve_in_thread(make_app(Store(db_path, provision_seconds=0.01)))
    with first, second, httpx.Client(verify=False, headers=KEY) as c:
        c.post(f"{first.url}{JOBS}", params={"rlorTrainerJobId": "shared", "trainingShape": POLICY_SHAPE}, json=body())
        assert c.get(f"{second.url}{JOBS}/shared").status_code == 200
        again = c.post(
            f"{second.url}{JOBS}", params={"rlorTrainerJobId": "shared", "trainingShape": POLICY_SHAPE}, json=body()
        )
        assert again.status_code == 409


def test_keep_alive_connections_are_reused(served):
    opened = []
    original = socket.create_connection

    def counting(*args, **kwargs):
        opened.append(args)
        return original(*args, **kwargs)

    with httpx.Client(verify=False, base_url=served.url, headers=KEY) as c:
        socket.create_connection = counting
        try:
            for _ in range(10):
                response = c.get("/v1/accounts")
                assert response.http_version == "HTTP/1.1"
                assert response.headers["content-length"] == str(len(response.content))
        finally:
            socket.create_connection = original
    assert len(opened) <= 1


def raw_exchange(url: str, payload: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "payload,status",
    [
        (b"FROB /v1/accounts HTTP/1.1\r\nHost: x\r\nX-Api-Key: local\r\nConnection: close\r\n\r\n", b"405"),
        (b"GET /v1/accounts HTTP/1.1\r\nHost: x\r\nX-Api-Key: local\r\nConnection: close\r\n\r\n", b"200"),
        (
            b"POST /v1/accounts/local/rlorTrainerJobs HTTP/1.1\r\nHost: x\r\nX-Api-Key: local\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"411",
        ),
        (
            b"POST /v1/accounts/local/rlorTrainerJobs HTTP/1.1\r\nHost: x\r\nX-Api-Key: local\r\n"
            b"Content-Length: nope\r\nConnection: close\r\n\r\n",
            b"400",
        ),
        (b"garbage request line\r\n\r\n", b"400"),
    ],
)
def test_raw_requests_get_proper_statuses(served, payload, status):
    response = raw_exchange(served.url, payload)
    assert response.split(b" ", 2)[1] == status


def test_stop_closes_the_port_and_idle_connections(real_store):
    served = serve_in_thread(make_app(real_store))
    with httpx.Client(verify=False, base_url=served.url, headers=KEY) as c:
        assert c.get("/v1/accounts").status_code == 200
        served.stop()
        served.stop()  # idempotent
        with pytest.raises(httpx.TransportError):
            c.get("/v1/accounts")


WORKER = """
import sys
from rlorinfra.controlplane.store import Store
store = Store(sys.argv[1], provision_seconds=0.01)
body = {"trainingConfig": {"baseModel": "accounts/fireworks/models/qwen3-8b"}}
for i in range(25):
    store.create_job(body, {"rlorTrainerJobId": f"p{sys.argv[2]}-{i}"})
    store.list_jobs(page_size=10)
"""


def test_several_processes_share_one_fresh_database(tmp_path):
    import subprocess
    import sys

    db = tmp_path / "multi.sqlite3"
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(db), str(n)], stderr=subprocess.PIPE) for n in range(4)
    ]
    for proc in procs:
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    jobs, more = Store(db).list_jobs(page_size=200)
    assert len(jobs) == 100 and more is None


def test_the_servers_own_411_carries_the_instance_id_too(served, real_store):
    response = raw_exchange(
        served.url,
        b"POST /v1/accounts/local/rlorTrainerJobs HTTP/1.1\r\nHost: x\r\n"
        b"X-Api-Key: local\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    assert response.split(b" ", 2)[1] == b"411"
    assert f"X-Rlorinfra-Emulator-Instance: {real_store.instance_id}".encode() in response
