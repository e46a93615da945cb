"""TLS and credentials of an MQTT uplink, built from its configuration.

Server verification is always on: the broker's certificate must chain to ``ca_file`` (or
the system's CAs) and name the host of the URL. There is no setting to turn that off.
Files are read at every connection attempt, so renewed certificates and rotated
passwords are picked up without a restart (call these from a worker thread: they block).
"""

from __future__ import annotations

import ssl

from gateway.config import MqttUplink, read_secret, resolve_secret_path
from gateway.errors import ConfigError, UplinkError


def tls_context(config: MqttUplink) -> ssl.SSLContext | None:
    """A verifying client context for ``mqtts://`` (None for ``mqtt://``), with the client
    certificate when ``cert_file``/``key_file`` are set."""
    if not config.tls:
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                             cafile=str(config.ca_file) if config.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise UplinkError(f"uplink {config.name}: cannot load ca_file {config.ca_file}: {_reason(exc)}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # create_default_context already sets these; stated so that no later edit weakens them.
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if config.cert_file is not None and config.key_file is not None:
        read_secret(config.key_file)  # refuses a key file that other users can read
        try:
            context.load_cert_chain(config.cert_file, resolve_secret_path(config.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise UplinkError(
                f"uplink {config.name}: cannot load client certificate {config.cert_file} "
                f"with key {config.key_file}: {_reason(exc)}"
            ) from None
    return context


def credentials(config: MqttUplink) -> tuple[str | None, str | None]:
    """``(username, password)``; the password comes from ``password_file``."""
    if config.password_file is None:
        return config.username, None
    if config.username is None:
        raise ConfigError([f"uplinks.mqtt {config.name}: password_file is set but username is not"])
    return config.username, read_secret(config.password_file).decode("utf-8")


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
