"""The process supervisor behind `rte up`: starts the stack's processes, restarts a crashed worker or
API with back-off, and stops everything in order.

Temporal holds the durable state, so the worker and the API are disposable: when one dies, the
executions wait in Temporal and a fresh process picks them up. Only the Temporal server dying takes
the stack down (nothing can run without it).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

# Back-off between restarts of a crashing process: 1 s, 2 s, 4 s … at most this long.
MAX_BACKOFF_S = 30.0
# A process that ran this long before dying counts as healthy: its next restart waits 1 s again.
STABLE_AFTER_S = 60.0
POLL_INTERVAL_S = 0.5


@dataclass
class Service:
    name: str
    command: list[str]
    log_file: Path
    restart: bool  # restarted when it exits on its own; otherwise its end stops the stack
    stop_signal: int = signal.SIGTERM
    stop_grace_s: float = 10.0
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    crashes: int = 0  # consecutive short-lived runs, for the back-off
    restarts: int = 0
    restart_at: float | None = None  # when a crashed process is due to start again

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class StackDown(Exception):
    """A process the stack cannot live without has exited."""

    def __init__(self, service: Service, code: int | None) -> None:
        super().__init__(f"{service.name} exited with code {code}")
        self.service, self.code = service, code


class Supervisor:
    def __init__(self, env: dict[str, str], say: Callable[[str], None]) -> None:
        self.env, self.say = env, say
        self.services: list[Service] = []

    def start(self, service: Service) -> Service:
        if service not in self.services:
            self.services.append(service)
        log = service.log_file.open("ab")
        try:
            # Own process group: Ctrl-C reaches `rte up` only, which then stops children in order.
            service.process = subprocess.Popen(
                service.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()  # the child holds its own descriptor
        service.started_at, service.restart_at = time.monotonic(), None
        return service

    def check(self) -> None:
        """One supervision round: notice exits, restart what is due. Raises StackDown."""
        now = time.monotonic()
        for service in self.services:
            if service.restart_at is not None:
                if now >= service.restart_at:
                    service.restarts += 1
                    self.start(service)
                    self._note(service, f"restarted (restart {service.restarts}, pid {service.process.pid})")
                continue
            if service.process is None or service.running:
                continue
            code = service.process.returncode
            if not service.restart:
                raise StackDown(service, code)
            lived = now - service.started_at
            service.crashes = 1 if lived >= STABLE_AFTER_S else service.crashes + 1
            delay = min(2.0 ** (service.crashes - 1), MAX_BACKOFF_S)
            service.restart_at = now + delay
            self._note(service, f"exited with code {code} after {lived:.0f} s; restarting in {delay:.0f} s")

    def run(self) -> None:
        """Supervise until a process the stack needs exits (StackDown) or Ctrl-C."""
        while True:
            self.check()
            time.sleep(POLL_INTERVAL_S)

    def stop(self) -> None:
        """Stop in reverse start order: API and worker first (they finish in-flight work), the server last."""
        for service in reversed(self.services):
            service.restart_at = None
            process = service.process
            if process is None or process.poll() is not None:
                continue
            process.send_signal(service.stop_signal)
            try:
                process.wait(service.stop_grace_s)
            except subprocess.TimeoutExpired:
                self._note(service, f"did not stop within {service.stop_grace_s:.0f} s; killed")
                process.kill()
                process.wait()

    def _note(self, service: Service, message: str) -> None:
        """Tell the console, and leave the same line in the process's own log (where people look)."""
        line = f"{service.name} {message}"
        self.say(line)
        with service.log_file.open("a") as log:
            log.write(f"--- rte up {datetime.now().isoformat(timespec='seconds')}: {line} ---\n")
