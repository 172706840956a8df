"""A test-only mitmproxy script: runs a mitmproxy command that a request asks for, and answers
with its result, so a test can use the addon's commands on a running mitmdump.

mitmdump reads no commands while it runs; mitmweb's /commands API would, but mitmweb has no flow
dump (`flow_detail`), which the secret hygiene test wants in the same run. Commands go through
mitmproxy's own command manager, as the console's `:` prompt and mitmweb's command bar do.

    GET http://commands.probe.invalid/oauth.refresh?arg=billing  ->  200, the result as text
"""

from __future__ import annotations

from mitmproxy import ctx
from mitmproxy import http

HOST = "commands.probe.invalid"


class CommandProbe:
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.request.host != HOST or flow.response is not None:
            return
        name = flow.request.path.partition("?")[0].strip("/")
        args = flow.request.query.get_all("arg")
        try:
            result = ctx.master.commands.call_strings(name, args)
        except Exception as e:  # the test reads the failure from the answer
            flow.response = http.Response.make(500, f"{type(e).__name__}: {e}")
            return
        text = "" if result is None else str(result)
        flow.response = http.Response.make(200, text, {"content-type": "text/plain"})


addons = [CommandProbe()]
