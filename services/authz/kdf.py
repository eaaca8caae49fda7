"""Password hashing off the event loop: scrypt on a few threads of its own (never the event loop's, never the
default executor's), and the bound on Login attempts in progress, so that logins never starve decisions.

A Login attempt holds one of `workers + queue` places from before it reads the user until it answers: `workers`
attempts hash at once and up to `queue` more wait for a thread. An attempt that finds every place taken is
refused at once (model.LoginShed, RESOURCE_EXHAUSTED with RetryInfo), before it reads or writes anything, so a
shed attempt changes no failed-login count. Hashing a new password (CreateUser, UpdateUser: authenticated
calls) waits for a thread instead of being shed."""
from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

from services.authz import model
from services.authz.passwords import hash_password, verify_password


class KdfPool:
    """scrypt at cost `log2_n` on `workers` threads, and `workers + queue` places for Login attempts."""

    def __init__(self, log2_n: int, workers: int, queue: int) -> None:
        self.log2_n = log2_n
        self.places = workers + queue
        self.in_progress = 0  # Login attempts holding a place (touched on the event loop only)
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="authz-kdf")

    @contextlib.contextmanager
    def place(self) -> Iterator[None]:
        """One Login attempt's place for as long as the block runs; LoginShed at once when none is free."""
        if self.in_progress >= self.places:
            raise model.LoginShed()
        self.in_progress += 1
        try:
            yield
        finally:
            self.in_progress -= 1

    async def hash(self, password: str) -> str:
        """The stored form of a new password, at the service's cost."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, hash_password, password,
                                                                self.log2_n)

    async def verify(self, password: str, stored: str | None) -> bool:
        """Whether `password` matches `stored`; a missing hash costs one run at the service's cost too."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, verify_password, password, stored,
                                                                self.log2_n)

    def close(self) -> None:
        """Stop the threads; hashes not yet started are dropped."""
        self._threads.shutdown(wait=False, cancel_futures=True)
