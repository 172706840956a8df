"""The floor of figures 1f and 1fc: what any script addon costs mitmdump. One hook, `request`,
that sets a constant bearer token, in the shape of the addon's own script (a class instance in
`addons`), so that the addon is measured against the least an addon doing its job can cost."""

from mitmproxy import http

AUTHORIZATION = "Bearer bench-floor-constant-token"  # any bearer passes the bench backend


class Floor:
    def request(self, flow: http.HTTPFlow) -> None:
        flow.request.headers["Authorization"] = AUTHORIZATION


addons = [Floor()]
