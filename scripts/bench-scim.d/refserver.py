"""The reference server of scripts/bench-scim: scim2-server's own ASGI application over its
default in-memory storage, with a static bearer token (like `scim2-server --bearer-token`).

Run with: SCIM_REF_TOKEN=... uvicorn --app-dir scripts/bench-scim.d refserver:app
"""

import os

from scim2_models import UnauthorizedException
from scim2_server.applications.asgi import ASGIApplication
from scim2_server.memory import AsyncInMemoryStorage
from scim2_server.utils import load_default_provider

TOKEN = os.environ["SCIM_REF_TOKEN"]


class BenchApplication(ASGIApplication):
    def check_auth(self, request):
        scheme, _, token = (request.header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or token != TOKEN:
            raise UnauthorizedException


app = BenchApplication(AsyncInMemoryStorage(), load_default_provider())
