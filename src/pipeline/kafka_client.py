"""Kafka client properties from `KafkaSettings`: one place for what Spark's Kafka source, the
consumer-lag probe (`bronze.kafka`) and the EMR submission's jar check (`deploy.submit`) use."""

from __future__ import annotations

from pipeline.settings import KafkaSettings

MSK_IAM_OPTIONS = {  # MSK IAM auth: the EMR role signs in, no stored secret
    "sasl.mechanism": "AWS_MSK_IAM",
    "sasl.jaas.config": "software.amazon.msk.auth.iam.IAMLoginModule required;",
    "sasl.client.callback.handler.class": "software.amazon.msk.auth.iam.IAMClientCallbackHandler",
}


def client_options(k: KafkaSettings) -> dict[str, str]:
    """Kafka client properties for `k` (Spark's source takes them with a `kafka.` prefix)."""
    options = {"bootstrap.servers": k.bootstrap_servers, "security.protocol": k.security_protocol}
    if k.sasl_mechanism == "AWS_MSK_IAM":
        options.update(MSK_IAM_OPTIONS)
    return options
