"""Which methods a path answers: the `Allow` header of a 405 and of an OPTIONS answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar.enums import ScopeType
from litestar.exceptions import HTTPException

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.types import ASGIApp, Receive, Scope, Send

_PROBED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: Litestar, path: str) -> list[str]:
    """The methods `path` answers, asked of Litestar's own router; none for an unknown path."""
    allowed = []
    for method in _PROBED_METHODS:
        try:
            app.asgi_router.handle_routing(path=path, method=method)
        except HTTPException:
            continue
        allowed.append(method)
    return allowed


def route_template(app: Litestar, path: str, method: str) -> str:
    """The template of the route `path` matches, for one of the methods it answers."""
    *_, template = app.asgi_router.handle_routing(path=path, method=method)
    return template


class OptionsAnswer:
    """Answers OPTIONS on every known path with 204 and an `Allow` header, without a token.

    Litestar 2 answers OPTIONS with a handler of its own, but the `Allow` it sends names the
    methods of only one of the handlers on a path (litestar-org/litestar#4169, fixed in v3
    only), and it sits behind the token check although it tells nothing the API document
    does not. A CORS preflight (an OPTIONS with `Origin`, CORS enabled) is left to Litestar's
    CORS middleware; an unknown path to the router's 404.
    """

    def __init__(self, app: ASGIApp, litestar: Litestar, *, cors: bool) -> None:
        self._app = app
        self._litestar = litestar
        self._cors = cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope["method"] == "OPTIONS":
            preflight = self._cors and any(name == b"origin" for name, _ in scope["headers"])
            allowed = [] if preflight else allowed_methods(self._litestar, scope["path"])
            if allowed:
                scope["path_template"] = route_template(self._litestar, scope["path"], "OPTIONS")
                await send(
                    {
                        "type": "http.response.start",
                        "status": 204,
                        "headers": [(b"allow", ", ".join(allowed).encode())],
                    }
                )
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
        await self._app(scope, receive, send)
