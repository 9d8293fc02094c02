"""The ASGI entry point gunicorn loads with uvicorn's worker (`asgi =
"echo.asgi:application"` in the spec): Django answers HTTP, and a WebSocket
at /ws/echo/ sends back every message it gets. Plain ASGI, as Django Channels'
ProtocolTypeRouter would route it, without a dependency."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "echo.settings")

django_application = get_asgi_application()


async def echo(receive, send):
    """Accepts the WebSocket, then sends back each message until it closes."""
    while True:
        event = await receive()
        if event["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif event["type"] == "websocket.receive":
            await send(
                {
                    "type": "websocket.send",
                    "text": event.get("text"),
                    "bytes": event.get("bytes"),
                }
            )
        elif event["type"] == "websocket.disconnect":
            return


async def application(scope, receive, send):
    if scope["type"] == "websocket" and scope["path"] == "/ws/echo/":
        await echo(receive, send)
    elif scope["type"] == "websocket":
        # No such socket: refused before the handshake completes (HTTP 403).
        await send({"type": "websocket.close"})
    else:
        await django_application(scope, receive, send)
