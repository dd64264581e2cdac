"""Airflow hook for Sitecore Experience Commerce, reading the ``sitecore_xc_default``
connection."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from airflow.sdk import BaseHook

from stripe_sitecore.backends.xc.client import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CURRENCY,
    DEFAULT_ENVIRONMENT,
    DEFAULT_GEO_LOCATION,
    DEFAULT_LANGUAGE,
    DEFAULT_SHOP_NAME,
    DEFAULT_SHOPPER_ID,
    XCAuthError,
    XCClient,
    XCContextRefused,
    XCError,
    XCForbidden,
    XCSettings,
    XCUnavailable,
)
from stripe_sitecore.hooks.connection import base_url, extra_number, mask_secrets

# The extras the connection form shows, with what a real deployment puts there.
EXTRA_EXAMPLE = {
    "identity_url": "https://identity.example.com",
    "grant_type": "password",
    "client_id": DEFAULT_CLIENT_ID,
    "shop_name": DEFAULT_SHOP_NAME,
    "environment": DEFAULT_ENVIRONMENT,
    "currency": DEFAULT_CURRENCY,
    "language": DEFAULT_LANGUAGE,
    "shopper_id": DEFAULT_SHOPPER_ID,
    "geo_location": DEFAULT_GEO_LOCATION,
    "customer_domain": "CommerceUsers",
}


class XCHook(BaseHook):
    """``host`` = Commerce Engine URL (the shops API is under ``/api``); ``login``/``password``
    = the Identity Server user for the password grant (domain-qualified: ``sitecore\\admin``).

    Extra: ``identity_url`` (default: the host), ``grant_type`` (``password`` or
    ``client_credentials``), ``client_id`` (default ``postman-api``; a registered confidential
    client for ``client_credentials``), ``client_secret`` (default: the password, for
    ``client_credentials``), ``scope``, ``shop_name``, ``environment``, ``currency``,
    ``language``, ``shopper_id``, ``geo_location``, ``connect_timeout``, ``read_timeout``,
    ``max_retries``, ``backoff_factor``; ``customer_domain`` (default ``CommerceUsers``: whose
    customers the customer sync keeps in step).
    """

    conn_name_attr = "xc_conn_id"
    default_conn_name = "sitecore_xc_default"
    conn_type = "http"
    hook_name = "Sitecore Experience Commerce"

    def __init__(self, xc_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.xc_conn_id = xc_conn_id
        self._client: XCClient | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """How the connection form shows the fields (for a provider that registers the hook;
        plugins cannot add connection types, so with ``http`` the form is the HTTP one)."""
        return {
            "hidden_fields": ["schema", "port"],
            "relabeling": {
                "host": "Commerce Engine URL",
                "login": "Identity Server user (sitecore\\admin)",
                "password": "Password (or client secret for client_credentials)",
            },
            "placeholders": {
                "host": "https://commerceauthoring.example.com",
                "login": "sitecore\\admin",
                "password": "the user's password, or the confidential client's secret",
                "extra": json.dumps(EXTRA_EXAMPLE, indent=2),
            },
        }

    def settings(self) -> XCSettings:
        conn = self.get_connection(self.xc_conn_id)
        extra = conn.extra_dejson
        grant_type = extra.get("grant_type", "password")
        # The secret of a confidential client: its own extra, or the connection password.
        client_secret = extra.get("client_secret") or (
            conn.password if grant_type == "client_credentials" else None
        )
        mask_secrets(conn.password, client_secret)
        try:
            return XCSettings(
                base_url=base_url(conn),
                username=conn.login or None,
                password=conn.password or None,
                identity_url=(extra.get("identity_url") or "").rstrip("/") or None,
                grant_type=grant_type,
                client_id=extra.get("client_id", DEFAULT_CLIENT_ID),
                client_secret=client_secret or None,
                scope=extra.get("scope") or None,
                shop_name=extra.get("shop_name", DEFAULT_SHOP_NAME),
                shopper_id=extra.get("shopper_id", DEFAULT_SHOPPER_ID),
                language=extra.get("language", DEFAULT_LANGUAGE),
                currency=extra.get("currency", DEFAULT_CURRENCY),
                environment=extra.get("environment", DEFAULT_ENVIRONMENT),
                geo_location=extra.get("geo_location", DEFAULT_GEO_LOCATION),
                connect_timeout=extra_number(extra, "connect_timeout", 10.0),
                read_timeout=extra_number(extra, "read_timeout", 30.0),
                max_retries=extra_number(extra, "max_retries", 5, int),
                backoff_factor=extra_number(extra, "backoff_factor", 0.5),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"connection {self.xc_conn_id!r}: {exc}") from None

    def get_conn(self) -> XCClient:
        if self._client is None:
            # Access tokens and generated passwords appear at run time: Airflow cannot know
            # to mask them.
            self._client = XCClient(self.settings(), on_secret=mask_secrets)
        return self._client

    def test_connection(self) -> tuple[bool, str]:
        settings = None
        try:
            settings = self.settings()
            # The UI's Test button should answer within seconds, not after a full retry cycle.
            quick = dataclasses.replace(settings, max_retries=min(settings.max_retries, 1))
            client = XCClient(quick, on_secret=mask_secrets)
            try:
                client.check_credentials()
            finally:
                client.close()
        except XCAuthError as exc:
            return False, f"Sitecore Identity Server refused the credentials: {exc}"
        except XCForbidden as exc:
            return False, (
                "XC accepted the token but refused the call: the user or client lacks a "
                f"Commerce role (e.g. sitecore\\Commerce Business User): {exc}"
            )
        except XCContextRefused as exc:
            return False, (
                "XC does not know the connection's shop or environment (extra shop_name, "
                f"environment): {exc}"
            )
        except XCUnavailable as exc:
            if exc.status is None and settings is not None:
                where = settings.token_url if exc.path.endswith("/token") else settings.base_url
                return False, f"XC unreachable at {where}: {exc}"
            return False, f"XC is failing: {exc}"
        except (XCError, ValueError) as exc:
            return False, f"XC check failed: {exc}"
        return True, (
            f"Connected to XC (shop {settings.shop_name}, environment {settings.environment})"
        )


def backend_from_connection(conn_id: str = XCHook.default_conn_name):
    """The XC backend over the client of the ``sitecore_xc_default`` connection; its customers
    are those of the extra's ``customer_domain`` (default ``CommerceUsers``)."""
    from stripe_sitecore.backends.xc.backend import DEFAULT_CUSTOMER_DOMAIN, XCBackend

    hook = XCHook(conn_id)
    domain = hook.get_connection(conn_id).extra_dejson.get("customer_domain")
    return XCBackend(hook.get_conn(), customer_domain=domain or DEFAULT_CUSTOMER_DOMAIN)
