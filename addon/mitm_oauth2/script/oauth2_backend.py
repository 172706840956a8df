"""mitmproxy script of the installed package: ``mitmdump -s <this file>``, no checkout needed.

Its path: ``python -c "import mitm_oauth2.testing as t; print(t.ADDON_SCRIPT)"``.
"""

from mitm_oauth2.addon import OAuth2Backend

addons = [OAuth2Backend()]
