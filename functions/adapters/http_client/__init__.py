"""The SSRF-safe HTTP client that delivers messages to their targets.

One `send` does, in order:

1. parse the URL with `parse_target_url` (scheme, credentials, odd IPv4 spellings, literal
   addresses on the block list);
2. resolve the host now (literal addresses skip DNS) and check EVERY resolved address with
   `blocked_reason`; one blocked address refuses the whole target, before any connection;
3. connect to a checked address only: the urllib3 pool is created for the IP itself, while the
   `Host` header, TLS SNI and certificate verification use the real host name, so a second DNS
   answer (DNS rebinding) can never change where the request goes;
4. send method, headers and body as given; never follow redirects (a 3xx is a response); read at
   most `max_response_bytes` of the response body.

Timeouts: `connect_timeout` bounds connecting (and the TLS handshake); `total_timeout` is a hard
deadline for the whole attempt (resolving, connecting, TLS, sending, status line, headers, body),
enforced by a watchdog that shuts down every socket the attempt opened, so a target that trickles
bytes cannot hold the delivery Lambda past it. The watchdog keeps the socket itself, not the
connection: http.client drops the connection's socket as soon as it reads `Connection: close`,
while the response goes on reading from it.

The status line decides. Once a 2xx status line has been read, the target has taken the request:
whatever follows (more than 100 headers, a 64 KiB header line, a body that breaks off or trickles
past the deadline) the result is a DeliveryResponse with `anomaly` saying what was wrong, never an
error that would make the request be sent again. A response that is not HTTP/1.x (no status line,
a malformed one, too many or too large headers before a non-2xx status) raises InvalidResponse
with the precise reason; it stays retryable.

Pools are cached per (scheme, address, port, host name, TLS context) at module level, so warm
Lambda invocations reuse keep-alive connections. A request that fails on a reused keep-alive
connection before any response arrives (the target closed it while the Lambda was frozen) is
sent again once on a new connection; receivers dedupe on `webhook-id` (at-least-once).

The modules: `client` (DeliveryClient: the steps above), `attempt` (the deadline watchdog, the status
line as soon as it is read, the tracked connections), `pools` (the pool cache) and `failures` (what
went wrong, in words).
"""

from __future__ import annotations

from functions.adapters.http_client.client import (
    CLIENT_OWNED_HEADERS,
    DEFAULT_USER_AGENT,
    MAX_RESPONSE_HEADER_VALUE,
    DeliveryClient,
    DeliveryResponse,
    InvalidResponse,
    Resolver,
    TargetBlocked,
    TargetTimeout,
    TargetUnreachable,
    parse_retry_after,
)
from functions.adapters.http_client.pools import close_pools, default_ssl_context

__all__ = [
    "CLIENT_OWNED_HEADERS",
    "DEFAULT_USER_AGENT",
    "MAX_RESPONSE_HEADER_VALUE",
    "DeliveryClient",
    "DeliveryResponse",
    "InvalidResponse",
    "Resolver",
    "TargetBlocked",
    "TargetTimeout",
    "TargetUnreachable",
    "close_pools",
    "default_ssl_context",
    "parse_retry_after",
]
