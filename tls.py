"""TLS for the app's outgoing connections (webhook receivers, the SMTP server): one client
context per process, verifying certificates and host names."""

import functools
import ssl

import httpx


@functools.cache
def client_context() -> ssl.SSLContext:
    """httpx's defaults: certifi's CA bundle, or the one SSL_CERT_FILE (or SSL_CERT_DIR) names,
    read once per process, as the environment stands then. Made once because each new
    context parses the whole bundle again (tens of milliseconds of CPU)."""
    return httpx.create_ssl_context()
