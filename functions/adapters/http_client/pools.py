"""Connection pools cached per (scheme, address, port, host name, TLS context) at module level, so
warm Lambda invocations reuse keep-alive connections; each pool connects to one checked address."""

from __future__ import annotations

import ssl
import threading
from collections import OrderedDict
from typing import TypedDict

from urllib3 import HTTPConnectionPool

from functions.adapters.http_client.attempt import PinnedHTTPPool, PinnedHTTPSPool

_POOL_CACHE_SIZE = 64
POOL_MAXSIZE = 4


class _PoolOptions(TypedDict):
    maxsize: int
    block: bool
    retries: bool


# Every pool, HTTP or HTTPS: up to POOL_MAXSIZE connections kept for keep-alive (more are opened,
# never waited for, when all are busy), and no retries of urllib3's own: Relay's schedule retries.
_POOL_OPTIONS: _PoolOptions = {"maxsize": POOL_MAXSIZE, "block": False, "retries": False}

PoolKey = tuple[str, str, int, str, ssl.SSLContext | None]
_pools: OrderedDict[PoolKey, HTTPConnectionPool] = OrderedDict()
_pools_lock = threading.Lock()
_default_context: ssl.SSLContext | None = None


def default_ssl_context() -> ssl.SSLContext:
    """TLS with certificate verification against certifi's CA bundle (the system store without it)."""
    global _default_context
    with _pools_lock:
        if _default_context is None:
            try:
                import certifi

                _default_context = ssl.create_default_context(cafile=certifi.where())
            except ImportError:  # pragma: no cover - certifi ships with botocore's dependencies
                _default_context = ssl.create_default_context()
            _default_context.minimum_version = ssl.TLSVersion.TLSv1_2
        return _default_context


def pool_for(key: PoolKey) -> HTTPConnectionPool:
    scheme, address, port, hostname, context = key
    with _pools_lock:
        pool = _pools.get(key)
        if pool is not None:
            _pools.move_to_end(key)
            return pool
        if scheme == "https":
            tls_name = hostname.rstrip(".")
            pool = PinnedHTTPSPool(
                address, port, ssl_context=context, server_hostname=tls_name, assert_hostname=tls_name, **_POOL_OPTIONS
            )
        else:
            pool = PinnedHTTPPool(address, port, **_POOL_OPTIONS)
        _pools[key] = pool
        while len(_pools) > _POOL_CACHE_SIZE:
            _, evicted = _pools.popitem(last=False)
            evicted.close()
        return pool


def forget_pool(key: PoolKey, pool: HTTPConnectionPool) -> None:
    with _pools_lock:
        if _pools.get(key) is pool:
            del _pools[key]


def close_pools() -> None:
    """Close every cached connection (tests; a long-lived process shutting down)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()
