"""The test webhook receiver does what the webhook tests rely on."""

import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.webhook_receiver import receiver


def test_it_answers_204_and_keeps_what_it_was_sent():
    with receiver() as hook, httpx.Client() as client:
        assert hook.url.startswith("http://127.0.0.1:")
        assert hook.url.endswith("/hook")
        response = client.post(hook.url, json={"n": 1}, headers={"Webhook-Id": "msg_1"})
        assert response.status_code == 204
        [got] = hook.wait_for(1)
        assert got.json() == {"n": 1}
        assert got.body == b'{"n":1}'
        assert got.headers["webhook-id"] == "msg_1"
        assert got.headers["content-type"] == "application/json"
        assert (got.method, got.path, got.status) == ("POST", "/hook", 204)
        assert hook.attempts == hook.received == [got]


def test_fail_first_and_fail_next_answer_status_and_are_attempts_only():
    with receiver(fail_first=2, status=503) as hook, httpx.Client() as client:
        codes = [client.post(hook.url, content=f"{i}".encode()).status_code for i in range(3)]
        assert codes == [503, 503, 204]
        assert [r.body for r in hook.received] == [b"2"]
        assert [(r.body, r.status) for r in hook.attempts] == [
            (b"0", 503),
            (b"1", 503),
            (b"2", 204),
        ]

        hook.fail_next, hook.status = 1, 410
        assert client.post(hook.url, content=b"3").status_code == 410
        assert client.post(hook.url, content=b"4").status_code == 204
        assert [r.body for r in hook.wait_for(2)] == [b"2", b"4"]
        assert len(hook.attempts) == 5
        assert hook.attempts[0].at <= hook.attempts[-1].at


def test_wait_for_waits_for_a_request_from_another_thread_and_times_out_when_none_comes():
    with receiver() as hook:
        sender = threading.Timer(0.1, httpx.post, args=(hook.url,), kwargs={"content": b"late"})
        sender.start()
        [got] = hook.wait_for(1, timeout=10)
        sender.join()
        assert got.body == b"late"
        with pytest.raises(TimeoutError, match="2 received; have 1 received of 1 attempts"):
            hook.wait_for(2, timeout=0.1)


def test_hold_keeps_a_request_waiting_until_set():
    with receiver() as hook:
        hook.hold.clear()
        answers: list[int] = []
        sender = threading.Thread(
            target=lambda: answers.append(httpx.post(hook.url, content=b"held").status_code)
        )
        sender.start()
        [arrived] = hook.wait_for_attempts(1, timeout=10)
        assert arrived.body == b"held"
        time.sleep(0.1)
        assert hook.received == []
        assert answers == []
        hook.hold.set()
        assert [r.body for r in hook.wait_for(1, timeout=10)] == [b"held"]
        sender.join(timeout=10)
        assert answers == [204]


def test_delay_slows_answers_and_a_sender_that_gives_up_still_counts_as_an_attempt():
    with receiver(delay=0.3) as hook, httpx.Client() as client:
        started = time.monotonic()
        assert client.post(hook.url, content=b"slow").status_code == 204
        assert time.monotonic() - started >= 0.3

        hook.delay = 0.5
        with pytest.raises(httpx.ReadTimeout):
            client.post(hook.url, content=b"gave up", timeout=0.1)
        hook.delay = 0
        assert client.post(hook.url, content=b"quick").status_code == 204
        assert [r.body for r in hook.wait_for_attempts(3)] == [b"slow", b"gave up", b"quick"]


def test_a_chunked_body_is_read_whole():
    with receiver() as hook:
        response = httpx.post(hook.url, content=iter([b"one ", b"two ", b"three"]))
        assert response.status_code == 204
        [got] = hook.wait_for(1)
        assert got.headers["transfer-encoding"] == "chunked"
        assert got.body == b"one two three"


@pytest.mark.parametrize(
    "head",
    [b'Content-Length: 100\r\n\r\n{"partial', b'Transfer-Encoding: chunked\r\n\r\n64\r\n{"partial'],
)
def test_a_body_cut_short_by_a_sender_that_died_is_no_request(head: bytes):
    with receiver() as hook:
        address = urlsplit(hook.url)
        with socket.create_connection((address.hostname, address.port)) as sender:
            sender.sendall(b"POST " + address.path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + head)
            sender.shutdown(socket.SHUT_WR)  # as a process killed mid-request
            assert sender.recv(1024) == b""  # closed without an answer
        response = httpx.post(hook.url, content=b"{}")
        assert response.status_code == 204
        assert [r.body for r in hook.attempts] == [b"{}"]
