"""How every Baton client connects to Kafka: bootstrap, TLS, SASL and the client id.

One translation of :class:`ServiceSettings` into client options, used by the services'
FastStream broker, the topic admin and the tools, so that a managed cluster (SASL_SSL with
SCRAM, say) needs settings and nothing else.
"""

from __future__ import annotations

import ssl
from typing import Any

from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)

from shared.settings import ServiceSettings


class KafkaSettingsError(ValueError):
    """The Kafka connection settings contradict each other; the message says how."""


def ssl_context(settings: ServiceSettings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    )
    if settings.kafka_ssl_certfile:
        password = settings.kafka_ssl_key_password
        context.load_cert_chain(
            str(settings.kafka_ssl_certfile),
            str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
            password.get_secret_value() if password else None,
        )
    elif settings.kafka_ssl_keyfile:
        raise KafkaSettingsError("BATON_KAFKA_SSL_KEYFILE needs BATON_KAFKA_SSL_CERTFILE")
    return context


def security(settings: ServiceSettings) -> BaseSecurity | None:
    """FastStream's security object for the services' broker."""
    protocol = settings.kafka_security_protocol
    context = ssl_context(settings)
    if protocol in ("PLAINTEXT", "SSL"):
        return BaseSecurity(ssl_context=context) if context else None
    if not settings.kafka_username or settings.kafka_password is None:
        raise KafkaSettingsError(
            f"BATON_KAFKA_SECURITY_PROTOCOL={protocol} needs BATON_KAFKA_USERNAME and "
            "BATON_KAFKA_PASSWORD"
        )
    user, password = settings.kafka_username, settings.kafka_password.get_secret_value()
    use_ssl = protocol == "SASL_SSL"
    kind = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256,
            "SCRAM-SHA-512": SASLScram512}[settings.kafka_sasl_mechanism]
    return kind(user, password, ssl_context=context, use_ssl=use_ssl)


def client_options(settings: ServiceSettings) -> dict[str, Any]:
    """Keyword arguments for aiokafka's clients (admin, producer, consumer)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "client_id": client_id(settings),
        "security_protocol": settings.kafka_security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        sasl = security(settings)
        assert isinstance(sasl, SASLPlaintext | SASLScram256 | SASLScram512)
        options |= {"sasl_mechanism": settings.kafka_sasl_mechanism,
                    "sasl_plain_username": sasl.username, "sasl_plain_password": sasl.password}
    return options


def client_id(settings: ServiceSettings) -> str:
    return settings.kafka_client_id or settings.service_name
