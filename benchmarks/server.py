"""``python -m benchmarks.server``: the hub, or a bare ASGI app as its ceiling, under uvicorn.

The hub runs as ``emr serve`` would, but without authentication (a local measurement;
``auth_required`` is ignored by hubs that predate it).
"""

from __future__ import annotations

import argparse

import orjson
import uvicorn

BARE_BODY = orjson.dumps({"resourceType": "Parameters", "parameter": []})


async def bare_app(scope: dict, receive, send) -> None:  # noqa: ANN001 - the ASGI callables
    """Reads the request body and answers a fixed FHIR JSON body: the floor of any HTTP round trip."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/fhir+json")]})
    await send({"type": "http.response.body", "body": BARE_BODY})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", default="")
    parser.add_argument("--bare", action="store_true")
    args = parser.parse_args()
    if args.bare:
        app = bare_app
    else:
        from emr.config import Settings
        from emr.hub.app import create_app

        settings = Settings(database_url=args.db, base_url=f"http://127.0.0.1:{args.port}/fhir",
                            auth_required=False)
        app = create_app(settings)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
