"""The reference gateway: a minimal aiohttp pass-through proxy, the yardstick waystone
is measured against (SPEC §11: "a minimal aiohttp pass-through").

It reads the client's body, POSTs it upstream with one shared ``ClientSession``, and
returns the answer whole (JSON) or relays it chunk by chunk as it arrives (SSE).  No
identity, no policy, no ledger, no logging.  Like waystone it runs on uvloop, so the
comparison measures waystone's own work, not the event loop.

    python bench/proxy/reference.py --port 9002 --upstream http://127.0.0.1:9001/v1
"""

from __future__ import annotations

import argparse

from aiohttp import ClientSession, TCPConnector, web

SESSION = web.AppKey("session", ClientSession)
UPSTREAM = web.AppKey("upstream", str)


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    session = request.app[SESSION]
    async with session.post(
        f"{request.app[UPSTREAM]}/chat/completions",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-bench"},
    ) as upstream:
        content_type = upstream.headers.get("Content-Type", "application/json")
        if not content_type.startswith("text/event-stream"):
            data = await upstream.read()
            return web.Response(
                body=data, status=upstream.status, headers={"Content-Type": content_type}
            )
        response = web.StreamResponse(
            status=upstream.status, headers={"Content-Type": content_type}
        )
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


def make_app(upstream: str) -> web.Application:
    app = web.Application(client_max_size=32 << 20)
    app[UPSTREAM] = upstream.rstrip("/")
    app.router.add_post("/v1/chat/completions", chat)

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        app[SESSION] = ClientSession(connector=TCPConnector(limit=0))
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Minimal aiohttp pass-through proxy.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:9001/v1")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(
        make_app(args.upstream),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        backlog=1024,
    )


if __name__ == "__main__":
    main()
