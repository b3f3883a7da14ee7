"""longvec's HTTP server (FastAPI): `create_app(settings, load)`; `longvec serve` runs it under uvicorn.

Needs the `serve` extra: pip install 'longvec[serve]'.
"""

from longvec.runtime.server.app import ServeSettings, create_app

__all__ = ["ServeSettings", "create_app"]
