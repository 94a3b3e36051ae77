"""The stream stage on several cores: child processes each holding their own stage context.

The stage is CPU-bound pure Python (Avro decode, validation, HMAC, harmonization, Avro
encode), so threads share one core under the GIL. A pool of spawned processes runs
``curate_messages`` on raw batches in parallel; the worker process keeps the Faust
consumer, the producer, the sinks and the warehouse. Inputs and outputs are plain bytes
and counters, cheap to pass between processes.

Each stage process costs ~230 MB of memory (Python, the Avro codec, the absence model and
the libraries it needs), and the worker already holds a stage of its own. With
``share_local``, the worker's thread takes a batch too whenever every process is busy, so
that one process fewer keeps the cores as busy (issue 18: on two cores, one process and the
worker's thread instead of two processes).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from schemas.organizations import load_organizations
from schemas.schools import load_schools
from schemas.wire import AvroCodec
from streams.consent import ConsentWatcher
from streams.curate import RawMessage, StageOutput, curate_messages
from streams.harmonize import Harmonizer
from streams.process import StageContext
from streams.pseudonymize import load_pseudonymizer
from vigie.runtime import stage_child
from vigie.settings import Settings


@dataclass(frozen=True)
class Stage:
    """Everything ``curate_messages`` needs, built once per process."""

    ctx: StageContext
    codec: AvroCodec
    mapping_version: str
    consent: ConsentWatcher

    @classmethod
    def from_settings(cls, settings: Settings) -> Stage:
        key = settings.pseudonym_key.get_secret_value() if settings.pseudonym_key else None
        pseudonymizer = load_pseudonymizer(
            key, settings.pseudonym_key_file, settings.pseudonym_key_id,
            settings.embedded_key_file if settings.embedded else None,
        )  # fmt: skip
        harmonizer = Harmonizer(settings.mappings_dir, settings.model_cache)
        consent = ConsentWatcher(settings.consent_file, settings.consent_reload_s)
        organizations = load_organizations(settings.organizations_file)
        schools = load_schools(settings.schools_file)
        ctx = StageContext(organizations, consent, pseudonymizer, harmonizer, schools)
        return cls(ctx, AvroCodec.from_url(settings.registry_url), harmonizer.version, consent)

    def run(self, messages: list[RawMessage], absences: bool = False) -> StageOutput:
        """The stage over one raw batch (``absences``: see ``curate_messages``)."""
        return curate_messages(messages, self.ctx, self.codec, self.mapping_version, absences=absences)


log = logging.getLogger(__name__)


def prepare_model_apart(settings: Settings, timeout_s: float = 900.0) -> None:
    """Have the motif d'absence model trained into the model cache by a throw-away process, so
    that the worker only reads it back: the worker then never imports scikit-learn (~100 MB of
    resident memory at a first start, issue 18). Already cached, this costs a process start."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, context, stage_child.exit_with_parent) as executor:
        done = executor.submit(stage_child.prepare_model, settings.mappings_dir, settings.model_cache)
        done.result(timeout_s)


class StagePool:
    """Run the stage in ``processes`` child processes, or in a thread of this process when 0;
    with ``share_local``, in that thread as well when every process is busy."""

    def __init__(self, settings: Settings, processes: int, local: Stage, share_local: bool = False) -> None:
        self.processes = processes
        self.restarts = 0
        self._settings = settings
        self._local = local
        self._executor: Executor = self._new_executor()
        self._thread: ThreadPoolExecutor | None = None
        if processes > 0 and share_local:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="stage")
        self._replace_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._in_processes = 0  # batches submitted to the processes and not finished
        self._in_thread = 0  # batches submitted to the local thread and not finished

    @property
    def workers(self) -> int:
        """How many batches run at once (processes, plus the worker's thread when it shares)."""
        return max(1, self.processes) + (1 if self._thread is not None else 0)

    def _new_executor(self) -> Executor:
        if self.processes > 0:
            # spawn, not fork: the worker has threads (Kafka clients, the engine) by now.
            context = multiprocessing.get_context("spawn")
            return ProcessPoolExecutor(self.processes, context, stage_child.init, (self._settings,))
        return ThreadPoolExecutor(1, thread_name_prefix="stage")

    async def run(self, messages: list[RawMessage]) -> StageOutput:
        """One raw batch through the stage, off the event loop. A stage process that died
        (killed, out of memory) breaks the pool: a new pool takes the batch again, once."""
        loop = asyncio.get_running_loop()
        if self.processes == 0:
            return await loop.run_in_executor(self._executor, self._local.run, messages)
        broken = self._executor
        try:
            return await loop.run_in_executor(broken, stage_child.run, messages)
        except BrokenProcessPool:
            if self._executor is broken:  # the first batch to notice replaces the pool
                log.error("a stream stage process died; starting a new pool")
                broken.shutdown(wait=False, cancel_futures=True)
                self._executor = self._new_executor()
                self.restarts += 1
            return await loop.run_in_executor(self._executor, stage_child.run, messages)

    def warm(self, timeout_s: float = 120.0) -> None:
        """Start every stage process and wait until each has built its stage (key, references,
        registry), so that start-up happens before the worker says it is ready."""
        if self.processes == 0:
            return
        seen: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(seen) < self.processes and time.monotonic() < deadline:
            pings = [self._executor.submit(stage_child.ping) for _ in range(self.processes)]
            seen |= {p.result(timeout=timeout_s) for p in pings}

    def submit(self, messages: list[RawMessage]) -> Future[StageOutput]:
        """One raw batch through the stage, from a thread: a future of its output. A pool broken
        by a dead stage process is replaced here (the caller submits its batch again)."""
        if self.processes == 0:
            return self._executor.submit(self._local.run, messages)
        with self._count_lock:
            # Every process gets a batch first; the worker's thread takes one when they are all
            # busy and it is idle; beyond that, batches wait for a process (the faster one).
            local = self._thread is not None and self._in_thread == 0 and self._in_processes >= self.processes
            if local:
                self._in_thread += 1
            else:
                self._in_processes += 1
        if local:
            assert self._thread is not None
            future = self._thread.submit(self._local.run, messages)
            future.add_done_callback(lambda _f: self._finished(local=True))
            return future
        future = self._submit_to_processes(messages)
        future.add_done_callback(lambda _f: self._finished(local=False))
        return future

    def _finished(self, local: bool) -> None:
        with self._count_lock:
            if local:
                self._in_thread -= 1
            else:
                self._in_processes -= 1

    def _submit_to_processes(self, messages: list[RawMessage]) -> Future[StageOutput]:
        executor = self._executor
        try:
            return executor.submit(stage_child.run, messages)
        except BrokenProcessPool:
            with self._replace_lock:
                if self._executor is executor:
                    log.error("a stream stage process died; starting a new pool")
                    executor.shutdown(wait=False, cancel_futures=True)
                    self._executor = self._new_executor()
                    self.restarts += 1
            return self._executor.submit(stage_child.run, messages)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._thread is not None:
            self._thread.shutdown(wait=False, cancel_futures=True)
