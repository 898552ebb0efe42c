"""The classifier in a process of its own, so its forward pass never waits for the GIL.

An eager PyTorch forward pass takes the GIL back between operators. In the server's process it
competes for it with the event loop, which parses HTTP, decodes PNGs and writes JSON: under load
the inference thread spends much of its time waiting (on a 2-core machine a busy Python thread
slowed the eager forward pass of the default classifier about tenfold). `InferenceProcess` runs
the same `Predictor` in a spawned child process instead and exchanges raw arrays with it over a
pipe: uint8 images one way, float32 probabilities the other.

It has the `Predictor`'s interface (`classes`, `info`, `image_size`, calling it on images), so
the micro-batcher uses either. If the child dies (killed, out of memory), a fresh one is started
and the batch is tried once more (inference has no side effects); a batch on which two children
die in a row fails. A child that does not answer a batch within `batch_timeout_s` (stopped,
stuck) is killed and replaced, and the batch fails with `InferenceTimeout` (the server answers
503 with Retry-After); `state` says "ok", or "restarting" while a new child loads.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from .errors import InferenceTimeout, ModelFault
from .limits import INFERENCE_TIMEOUT_S, check_seconds

log = logging.getLogger("veil.serve")
_OK, _ERROR, _MODEL_FAULT = b"\x00", b"\x01", b"\x02"


class InferenceProcess:
    """`Predictor.from_checkpoint(path)` running in a child process."""

    def __init__(self, checkpoint: str | os.PathLike, threads: int | None = None,
                 start_timeout_s: float = 300.0, batch_timeout_s: float = INFERENCE_TIMEOUT_S,
                 verify: bool = True) -> None:
        check_seconds("the inference timeout", batch_timeout_s)
        self.checkpoint, self.threads, self.verify = str(checkpoint), threads, verify
        self.start_timeout_s, self.batch_timeout_s = start_timeout_s, batch_timeout_s
        self.restarts = self.timeouts = 0
        self.state = "starting"
        self._closed = False
        self._lock = threading.Lock()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        meta = self._start()
        self.classes: list[str] = meta["classes"]
        self.info: dict[str, Any] = meta["info"]
        self.image_size: tuple[int, int] = tuple(meta["image_size"])

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.uint8)
        with self._lock:
            if self._closed:
                raise RuntimeError("the inference process has been closed")
            if not self._alive():
                self._restart("the inference process had exited")
            try:
                reply = self._exchange(images)
            except (EOFError, OSError):  # it died before or while running this batch: once more
                self._restart("the inference process died during a batch")
                try:
                    reply = self._exchange(images)
                except (EOFError, OSError):
                    raise RuntimeError(f"the inference process died twice on the same batch "
                                       f"(exit code {self._exit_code()})") from None
        if reply[:1] == _ERROR:
            raise RuntimeError(f"inference failed: {reply[1:].decode()}")
        if reply[:1] == _MODEL_FAULT:
            raise ModelFault(reply[1:].decode())
        probs = np.frombuffer(reply, np.float32, offset=1).copy()  # copy: aligned and writable
        return probs.reshape(len(images), len(self.classes))

    def _exchange(self, images: np.ndarray) -> bytes:
        assert self._conn is not None
        self._conn.send_bytes(images.reshape(-1))  # 1-D: send_bytes counts items, not bytes
        if not self._conn.poll(self.batch_timeout_s):
            self.timeouts += 1
            self._restart(f"the inference process did not answer within "
                          f"{self.batch_timeout_s:g} s")
            raise InferenceTimeout(f"inference took longer than {self.batch_timeout_s:g} s; "
                                   "the inference process was replaced, try again")
        return self._conn.recv_bytes()

    def warm_up(self) -> None:
        """Nothing to do: the child warms up its model before it reports ready."""

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._stop()

    def __enter__(self) -> InferenceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> dict[str, Any]:
        # spawn, not fork: forking a process that already runs torch threads can deadlock
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(target=_serve, args=(child_conn, self.checkpoint,
                                                             self.threads, self.verify),
                                        name="veil-inference", daemon=True)
        self._process.start()
        child_conn.close()
        if not self._conn.poll(self.start_timeout_s):
            self._stop()
            raise RuntimeError(f"the inference process did not start within "
                               f"{self.start_timeout_s:.0f} s")
        try:
            status, payload = self._conn.recv()
        except EOFError:
            code = self._exit_code()
            self._stop()
            raise RuntimeError(f"the inference process exited while loading "
                               f"{self.checkpoint} (exit code {code})") from None
        if status != "ready":
            self._stop()
            raise RuntimeError(f"the inference process could not load {self.checkpoint}: "
                               f"{payload}")
        self.state = "ok"
        return payload

    def _restart(self, reason: str) -> None:
        self.state = "restarting"
        if self._alive():  # stuck, not dead: it will not exit on its own
            assert self._process is not None
            self._process.kill()
        log.warning("%s (%s); starting a new one", reason, self._exit_status())
        self.restarts += 1
        self._stop()
        self._start()

    def _alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def _exit_status(self) -> str:
        code = self._exit_code()
        if code is None:
            return "still running"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    def _exit_code(self) -> int | None:
        if self._process is None:
            return None
        self._process.join(timeout=5)  # the pipe closes a moment before the exit is recorded
        return self._process.exitcode

    def _stop(self) -> None:
        if self._conn is not None:
            self._conn.close()  # the child sees EOF and exits
            self._conn = None
        if self._process is not None:
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
            self._process = None


def _serve(conn: Connection, checkpoint: str, threads: int | None, verify: bool = True) -> None:
    """The child: load the classifier, report its metadata, then answer batches until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which closes the pipe
    try:
        import torch

        from .inference import Predictor

        if threads:
            torch.set_num_threads(threads)
        predictor = Predictor.from_checkpoint(checkpoint, verify=verify)
        predictor.warm_up()
    except Exception as e:  # reported to the parent, which raises it with the checkpoint's name
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", {"classes": predictor.classes, "info": predictor.info,
                         "image_size": list(predictor.image_size)}))
    height, width = predictor.image_size
    while True:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            images = np.frombuffer(request, np.uint8).reshape(-1, height, width, 3)
            reply = _OK + predictor(images).astype(np.float32, copy=False).tobytes()
        except ModelFault as e:
            reply = _MODEL_FAULT + str(e).encode()
        except Exception as e:
            reply = _ERROR + f"{type(e).__name__}: {e}".encode()
        conn.send_bytes(reply)
