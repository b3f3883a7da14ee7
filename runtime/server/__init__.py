"""longvec's HTTP server (FastAPI): `create_app(settings, load)`; `longvec serve` runs it under uvicorn with the
connection guard of `protocol.py`.

Needs the `serve` extra: pip install 'longvec[serve]'. Importing this package loads none of it: `longvec serve
--help` reads the defaults of `ServeSettings` without a web framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from longvec.runtime.server.app import create_app
    from longvec.runtime.server.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from longvec.runtime.server.app import create_app

        return create_app
    if name == "ServeSettings":
        from longvec.runtime.server.settings import ServeSettings

        return ServeSettings
    raise AttributeError(name)
