"""mitmproxy script: `mitmdump -s addon/oauth2_backend.py --set oauth2_config=backends.toml`.

The code lives in the `mitm_oauth2` package beside this file (importable because mitmproxy puts
this script's folder on sys.path, or installed with pip).
"""

from mitm_oauth2.addon import OAuth2Backend

addons = [OAuth2Backend()]
