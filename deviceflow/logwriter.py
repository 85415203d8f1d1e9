"""Log lines written in batches by a background thread.

Every write to the log is a system call, and a thread making one lets go of the GIL: under load, with
32 server threads, winning it back costs tens of microseconds of hand-offs between them
(docs/performance.md, "Where the time goes"). One access-log line per request was one such write per
request. `BatchedStreamHandler` formats each line in the thread that logs it and queues the text; a
thread of its own writes everything queued in one write every FLUSH_EVERY seconds.

A line at WARNING or above is written at once, by the thread that logs it, after every line queued
before it: the order of the lines is kept, and what an operator must see is not held back. A flush
(logging.shutdown does one at a normal exit) writes everything queued; only a process killed outright
(SIGKILL, a crash of the machine) loses the lines of its last FLUSH_EVERY seconds.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import weakref

# How long a line below WARNING may wait before it is written: short enough that a person watching the
# log sees it at once, long enough that under load a batch holds the lines of hundreds of requests.
FLUSH_EVERY = 0.1  # seconds
# Lines waiting past this many are written by the thread that logs the next one: a flood of lines
# faster than the writer's period costs those threads their writes, never unbounded memory.
MAX_WAITING = 10_000
# How long close() waits for the writer thread to end (it ends at once unless a write is blocked).
JOIN_TIMEOUT = 1.0


class BatchedStreamHandler(logging.StreamHandler):
    """A StreamHandler whose lines below `at_once_level` are written in batches (see the module)."""

    def __init__(
        self,
        stream=None,
        flush_every: float = FLUSH_EVERY,
        max_waiting: int = MAX_WAITING,
        at_once_level: int = logging.WARNING,
    ):
        super().__init__(stream)
        self.flush_every = flush_every
        self.max_waiting = max_waiting
        self.at_once_level = at_once_level
        # deque: append and popleft are atomic, so threads logging never wait for the writer.
        self._waiting: collections.deque[str] = collections.deque()
        self._finished = False
        self._start_writer()
        _live.add(self)

    def _start_writer(self) -> None:
        self._stop = threading.Event()
        self._writer = threading.Thread(
            target=self._write_periodically, args=(self._stop,), name="deviceflow-log", daemon=True
        )
        self._writer.start()

    def handle(self, record: logging.LogRecord):
        # Handler.handle takes the handler's lock around emit(); a line that is only queued needs no lock,
        # and taking it would make the logging threads wait while the writer thread writes.
        result = self.filter(record)
        if isinstance(result, logging.LogRecord):  # Python 3.12: a filter may return the record to log
            record = result
        if result:
            self.emit(record)
        return result

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator  # now: the line says what was true when it was logged
        except Exception:
            self.handleError(record)
            return
        self._waiting.append(line)
        # Checked after the append: close() sets _finished before its last write, so a line queued after
        # that write is seen here and written by this thread.
        if record.levelno >= self.at_once_level or len(self._waiting) > self.max_waiting or self._finished:
            self._write_waiting()

    def _write_waiting(self, blocking: bool = True) -> None:
        """Everything queued, in one write, under the handler's lock (two writers never interleave, and
        lines taken from the queue in order are written in that order)."""
        if not self.lock.acquire(blocking):
            return
        try:
            lines = []
            try:
                while True:
                    lines.append(self._waiting.popleft())
            except IndexError:
                pass
            if not lines:
                return
            try:
                self.stream.write("".join(lines))
                if hasattr(self.stream, "flush"):
                    self.stream.flush()
            except Exception:
                self.handleError(_lost(lines))
        finally:
            self.lock.release()

    def _write_periodically(self, stop: threading.Event) -> None:
        while not stop.wait(self.flush_every):
            # Not blocking: whoever holds the lock is writing the queue (or is logging.shutdown, which
            # holds it while it closes the handler, and would wait for this thread); the next round writes
            # whatever that left.
            self._write_waiting(blocking=False)

    def flush(self) -> None:
        """Writes every line waiting, and flushes the stream."""
        self._write_waiting()
        super().flush()

    def close(self) -> None:
        """Stops the writer thread and writes every line waiting; lines logged afterwards are written at once."""
        self._finished = True
        self._stop.set()
        if self._writer is not threading.current_thread():
            self._writer.join(JOIN_TIMEOUT)
        self._write_waiting()
        super().close()

    def _after_fork_in_child(self) -> None:
        # The parent writes the lines it had queued; the child starts with none (written twice otherwise),
        # and with a writer thread of its own (a fork copies only the thread that forked).
        self._waiting.clear()
        if not self._finished:
            self._start_writer()


def _lost(lines: list[str]) -> logging.LogRecord:
    """A record for handleError, which describes the record it failed to write; the batch has none."""
    return logging.makeLogRecord(
        {"msg": "%d log line(s) not written, the first: %r", "args": (len(lines), lines[0].rstrip("\n"))}
    )


_live: weakref.WeakSet[BatchedStreamHandler] = weakref.WeakSet()


def _restart_writers_in_child() -> None:
    for handler in list(_live):
        handler._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_restart_writers_in_child)
