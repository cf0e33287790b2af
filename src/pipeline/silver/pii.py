"""PII protection, applied from silver on: emails -> keyed hash + domain, phones masked.

The HMAC runs in a vectorised Python UDF rather than as SQL expressions: a SQL formulation
would put key material into query plans, which Spark writes to event logs and shows in its UI.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from pipeline.contracts.model import Contract, pii_outputs
from pipeline.settings import ConfigError, Settings

log = logging.getLogger(__name__)

LOCAL_DEVELOPMENT_KEY = b"lakehouse-local-development-key-not-for-real-data"


def pii_key(settings: Settings) -> bytes:
    try:
        return settings.pii.hmac_key.resolve().encode("utf-8")
    except ConfigError:
        if settings.env != "local":
            raise ConfigError(
                f"pii.hmac_key: no key for env {settings.env} ({settings.pii.hmac_key.describe()}); "
                "silver cannot protect emails without it"
            ) from None
        log.warning(
            "pii.hmac_key: %s unset; using the local development key", settings.pii.hmac_key.describe()
        )
        return LOCAL_DEVELOPMENT_KEY


def hmac_sha256(key: bytes):
    """A Spark column function: hex HMAC-SHA256 of a string column under `key` (null stays null)."""

    @pandas_udf("string")
    def _hmac(values: pd.Series) -> pd.Series:
        return values.map(lambda v: None if v is None or v != v else keyed_hash(key, v))

    return _hmac


def keyed_hash(key: bytes, value: str) -> str:
    """The hex HMAC-SHA256 of one value (what silver stores for an email; erase matches by it)."""
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def mask_phone(phone):
    """Every digit but the last two becomes `*`: '+1-415-555-0134' -> '+*-***-***-**34'. A digit
    is any Unicode decimal digit (full-width, Arabic-Indic, ...): Java's `\\d` is ASCII only."""
    return F.regexp_replace(phone, r"\p{Nd}(?=(?:\P{Nd}*\p{Nd}){2})", "*")


def protect(df: DataFrame, contract: Contract, key: bytes) -> DataFrame:
    """Replace each PII column by its protected form(s), in place in the column order."""
    digest = hmac_sha256(key)
    columns = []
    for name in df.columns:
        col = contract.columns.get(name)
        if col is None or col.pii in ("none", "name"):
            columns.append(F.col(f"`{name}`"))
        elif col.pii == "email":
            hashed, domain = pii_outputs(col)
            columns += [
                digest(F.col(name)).alias(hashed),
                F.substring_index(F.col(name), "@", -1).alias(domain),
            ]
        elif col.pii == "phone":
            (masked,) = pii_outputs(col)
            columns.append(mask_phone(F.col(name)).alias(masked))
    return df.select(*columns)
