"""A real webhook receiver on loopback: verifies each post's signature and records it.

It answers the statuses it is told to (``fail_first`` posts get 500, then 204), and
may hold every post until ``release`` is set (a receiver that is slow to answer).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Post:
    body: bytes
    signature: str | None
    verified: bool

    @property
    def event(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded


@dataclass
class Receiver:
    secret: str = "whsec-test-0123456789"
    fail_first: int = 0
    hold: bool = False
    posts: list[Post] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    holding: int = 0
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        sent = request.headers.get("X-Waystone-Signature")
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        verified = sent is not None and hmac.compare_digest(sent, expected)
        async with self._arrived:
            self.posts.append(Post(body, sent, verified))
            self._arrived.notify_all()
        if self.hold:
            self.holding += 1
            try:
                await asyncio.wait_for(self.release.wait(), 60)
            finally:
                self.holding -= 1
        if len(self.posts) <= self.fail_first:
            return web.Response(status=500, text="receiver failing on purpose")
        if not verified:
            return web.Response(status=401, text="bad signature")
        return web.Response(status=204)

    async def wait_for(self, count: int, timeout_s: float = 20.0) -> list[Post]:
        """At least ``count`` posts (bounded wait: a missing post fails the test)."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.posts) >= count), timeout_s
            )
        return list(self.posts)

    def events(self) -> list[dict[str, Any]]:
        return [p.event for p in self.posts]
