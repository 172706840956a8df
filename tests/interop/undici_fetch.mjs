// fetch() through the OAuth2 proxy with undici: ProxyAgent tunnels each https:// request
// through the proxy (CONNECT), and Node trusts the proxy's CA from NODE_EXTRA_CA_CERTS.
//   HTTPS_PROXY=http://127.0.0.1:8080 NODE_EXTRA_CA_CERTS=certs/mitmproxy-ca-cert.pem \
//     node undici_fetch.mjs https://api.example.com/orders ...
// Prints each answer as a line of JSON: {"url", "status", "body"}.
import { ProxyAgent, fetch } from "undici";

const dispatcher = new ProxyAgent(process.env.HTTPS_PROXY);

for (const url of process.argv.slice(2)) {
  const response = await fetch(url, { dispatcher });
  console.log(JSON.stringify({ url, status: response.status, body: await response.json() }));
}
