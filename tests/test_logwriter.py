"""Log lines in batches (deviceflow.logwriter), and a server that writes them all when it is stopped."""

import logging
import os
import threading
import time
import warnings

import pytest
import requests

from deviceflow.logwriter import BatchedStreamHandler

LONG = 3600.0  # a period no test waits for: only the handler's own triggers write


class Stream:
    """A stream that records each write, and the thread that made it."""

    def __init__(self, fail=False):
        self.writes: list[tuple[str, str]] = []
        self.flushes = 0
        self.fail = fail

    def write(self, text):
        if self.fail:
            raise OSError("disk full")
        self.writes.append((text, threading.current_thread().name))

    def flush(self):
        self.flushes += 1

    @property
    def text(self):
        return "".join(text for text, _ in self.writes)


@pytest.fixture
def make_logger(request):
    """A logger of its own on a BatchedStreamHandler over a Stream (closed at teardown)."""

    def make(stream=None, **options):
        stream = stream or Stream()
        handler = BatchedStreamHandler(stream, **options)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger = logging.getLogger(f"test-logwriter-{request.node.name}-{id(handler)}")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        request.addfinalizer(lambda: (logger.removeHandler(handler), handler.close()))
        return logger, handler, stream

    return make


def wait_for(condition, within=5.0):
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def written(handler):
    """Nothing waits, nor is being written (the writer takes lines from the queue with the lock held)."""
    with handler.lock:
        return not handler._waiting


def test_lines_below_warning_wait_and_a_flush_writes_them_in_one_write(make_logger):
    logger, handler, stream = make_logger(flush_every=LONG)
    logger.debug("one")
    logger.info("two")
    assert stream.writes == []
    handler.flush()
    assert stream.writes == [("DEBUG one\nINFO two\n", threading.current_thread().name)]
    assert stream.flushes >= 1


def test_the_writer_thread_writes_what_waits_every_period_in_one_write(make_logger):
    logger, handler, stream = make_logger(flush_every=0.05)
    with handler.lock:  # the writer thread cannot write halfway through the three lines
        for n in range(3):
            logger.info("line %d", n)
    assert wait_for(lambda: stream.writes)
    assert stream.writes == [("INFO line 0\nINFO line 1\nINFO line 2\n", "deviceflow-log")]


def test_a_line_is_formatted_when_it_is_logged(make_logger):
    logger, handler, stream = make_logger(flush_every=LONG)
    state = ["before"]
    logger.info("state %s", state)
    state[0] = "after"
    handler.flush()
    assert stream.text == "INFO state ['before']\n"


def test_a_warning_is_written_at_once_after_the_lines_waiting_before_it(make_logger):
    logger, handler, stream = make_logger(flush_every=LONG)
    logger.info("first")
    logger.info("second")
    logger.warning("trouble")
    assert stream.writes == [("INFO first\nINFO second\nWARNING trouble\n", threading.current_thread().name)]
    logger.info("third")
    logger.error("worse")
    assert stream.text.splitlines() == ["INFO first", "INFO second", "WARNING trouble", "INFO third", "ERROR worse"]


def test_past_the_bound_the_logging_thread_writes_what_waits(make_logger):
    logger, handler, stream = make_logger(flush_every=LONG, max_waiting=3)
    for n in range(3):
        logger.info("line %d", n)
    assert stream.writes == []
    logger.info("line 3")
    assert stream.writes == [("".join(f"INFO line {n}\n" for n in range(4)), threading.current_thread().name)]


def test_close_writes_everything_and_stops_the_writer_then_lines_are_written_at_once(make_logger):
    logger, handler, stream = make_logger(flush_every=LONG)
    logger.info("waiting")
    writer = handler._writer
    handler.close()
    assert stream.text == "INFO waiting\n" and not writer.is_alive()
    logger.info("after close")
    assert stream.text == "INFO waiting\nINFO after close\n"


def test_logging_shutdown_writes_what_waits(make_logger):
    logger, handler, stream = make_logger(flush_every=LONG)
    logger.info("at exit")
    logging.shutdown([lambda: handler])  # what runs at a normal exit, on this handler alone
    assert stream.text == "INFO at exit\n" and not handler._writer.is_alive()


def test_a_failing_stream_goes_to_handle_error_never_to_the_caller(make_logger, monkeypatch):
    logger, handler, stream = make_logger(Stream(fail=True), flush_every=0.05)
    errors = []
    monkeypatch.setattr(handler, "handleError", lambda record: errors.append(record.getMessage()))
    logger.warning("not written")  # does not raise
    assert errors == ["1 log line(s) not written, the first: 'WARNING not written'"]
    logger.info("nor this")
    assert wait_for(lambda: len(errors) == 2)  # the writer thread's write, which goes on after it
    logger.info("nor that")
    assert wait_for(lambda: len(errors) == 3) and handler._writer.is_alive()


def test_lines_from_many_threads_are_each_written_once_in_their_order(make_logger):
    logger, handler, stream = make_logger(flush_every=0.001, max_waiting=50)

    def log(thread):
        for n in range(500):
            (logger.warning if n % 97 == 0 else logger.info)("%d %d", thread, n)

    threads = [threading.Thread(target=log, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handler.close()
    lines = [line.split()[1:] for line in stream.text.splitlines()]
    assert len(lines) == 8 * 500
    for t in range(8):
        assert [int(n) for thread, n in lines if thread == str(t)] == list(range(500))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_neither_loses_nor_repeats_lines(make_logger, tmp_path):
    path = tmp_path / "forked.log"
    held, release = threading.Event(), threading.Event()

    def hold(lock):  # the parent's writer cannot write the first line before the fork
        with lock:
            held.set()
            release.wait(10)

    with open(path, "a", encoding="utf-8") as stream:
        logger, handler, _ = make_logger(stream, flush_every=0.02)
        holder = threading.Thread(target=hold, args=(handler.lock,))
        holder.start()
        held.wait(10)
        logger.info("before the fork")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+: a fork with threads running
            pid = os.fork()
        if pid == 0:  # the child, where the lock is free: its own writer thread writes its line, unflushed
            try:
                logger.info("in the child")
                os._exit(0 if wait_for(lambda: written(handler), within=5) else 1)
            finally:
                os._exit(2)
        release.set()
        holder.join(10)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        logger.info("in the parent")
        handler.close()
    assert sorted(path.read_text().splitlines()) == ["INFO before the fork", "INFO in the child", "INFO in the parent"]


# --- the server


def test_a_stopped_server_has_written_every_line(live_server):
    base = live_server()
    process = live_server.processes[-1]
    for _ in range(20):
        assert requests.get(f"{base}/.well-known/oauth-authorization-server", timeout=5).status_code == 200
    process.terminate()  # at once: the last lines are still waiting
    assert process.wait(10) == 0
    log = process.log.read_text()
    assert log.count("GET /.well-known/oauth-authorization-server 200") == 20
    assert log.splitlines()[-1].endswith("INFO deviceflow: deviceflow stopped")
