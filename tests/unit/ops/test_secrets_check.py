"""docker/check_secrets.py, the script the compose stack's secrets-check service runs, run as it is
run there (``python check_secrets.py --example .env.example`` over its environment) against env
files: .env.example as shipped, one filled in for real, and that one with a secret put back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.unit.ops.secret_env import (
    CHECK_SCRIPT,
    ENV_EXAMPLE,
    example_env,
    filled_env,
    secret_names,
)

OPTIONAL = {"AIRFLOW_CONN_ALERT_SMTP", "AIRFLOW_CONN_ALERT_SLACK", "AIRFLOW_CONN_ALERT_WEBHOOK"}
# The Sitecore connection of the backend a deployment does not use (OrderCloud by default).
OTHER_BACKEND = {"AIRFLOW_CONN_SITECORE_XC_DEFAULT"}


def check(env: dict[str, str]) -> tuple[int, list[str]]:
    # Only the env file's variables, as in the container (plus what Python needs to start).
    process_env = {"PATH": os.environ.get("PATH", ""), **env}
    process = subprocess.run(
        [sys.executable, str(CHECK_SCRIPT), "--example", str(ENV_EXAMPLE)],
        env=process_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    refused = [
        line.removeprefix("refused: ")
        for line in process.stderr.splitlines()
        if line.startswith("refused: ")
    ]
    return process.returncode, refused


def refused_names(refused: list[str]) -> set[str]:
    return {line.split(":")[0].split(" ")[0] for line in refused}


def test_env_example_as_shipped_is_refused_naming_every_secret():
    returncode, refused = check(example_env())

    assert returncode == 1
    assert refused_names(refused) == set(secret_names()) - OPTIONAL - OTHER_BACKEND
    # Both secrets of the Stripe connection, each by its field.
    assert "AIRFLOW_CONN_STRIPE_DEFAULT password: is a placeholder" in refused
    assert "AIRFLOW_CONN_STRIPE_DEFAULT extra.webhook_secret: is a placeholder" in refused
    assert "AIRFLOW_FERNET_KEY: is empty" in refused


def test_an_env_filled_in_for_real_is_accepted():
    assert check(filled_env()) == (0, [])


def test_the_optional_alert_channels_are_checked_only_when_set():
    env = filled_env()
    for name in OPTIONAL:
        env[name] = ""
    assert check(env) == (0, [])


def test_only_the_backends_sitecore_connection_is_required():
    ordercloud, xc = "AIRFLOW_CONN_ORDERCLOUD_DEFAULT", "AIRFLOW_CONN_SITECORE_XC_DEFAULT"
    # OrderCloud (the default): XC's connection may be unset, but is checked when set.
    assert check({**filled_env(), xc: ""}) == (0, [])
    assert check({**filled_env(), xc: example_env(commented=True)[xc]})[1] == [
        f"{xc} password: is the example value from .env.example"
    ]
    # XC: its connection is required and OrderCloud's may go.
    on_xc = {**filled_env(), "AIRFLOW_VAR_STRIPE_SITECORE_BACKEND": "xc", ordercloud: ""}
    assert check(on_xc) == (0, [])
    assert check({**on_xc, xc: ""}) == (1, [f"{xc}: is empty"])
    assert check({**filled_env(), "AIRFLOW_VAR_STRIPE_SITECORE_BACKEND": "sap"}) == (
        1,
        ["AIRFLOW_VAR_STRIPE_SITECORE_BACKEND: is 'sap', not one of ordercloud, xc"],
    )


@pytest.mark.parametrize("name", sorted(set(secret_names()) - OPTIONAL))
def test_one_secret_left_at_its_example_value_is_refused_by_name(name):
    env = {**filled_env(), name: example_env(commented=True)[name]}

    returncode, refused = check(env)

    assert returncode == 1
    assert refused_names(refused) == {name}, refused


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("change-me-please", "is a placeholder"),
        ("CHANGEME", "is a placeholder"),
        ("replace_me", "is a placeholder"),
        ("password", "is a placeholder"),
    ],
)
def test_placeholders_are_refused_whatever_their_spelling(value, rule):
    env = {**filled_env(), "POSTGRES_PASSWORD": value}
    assert check(env) == (1, [f"POSTGRES_PASSWORD: {rule}"])


def test_a_connection_is_checked_field_by_field_json_or_uri():
    env = filled_env()
    ordercloud = json.loads(env["AIRFLOW_CONN_ORDERCLOUD_DEFAULT"])
    ordercloud["extra"]["webhook_hash_key"] = "replace-me"
    env["AIRFLOW_CONN_ORDERCLOUD_DEFAULT"] = json.dumps(ordercloud)
    env["AIRFLOW_CONN_ALERT_SMTP"] = "smtp://alerts:change-me@smtp.example.com:587"
    env["AIRFLOW_CONN_ALERT_SLACK"] = example_env(commented=True)["AIRFLOW_CONN_ALERT_SLACK"]
    env["AIRFLOW_CONN_ERP_DEFAULT"] = '{"conn_type": "http", "password": '

    returncode, refused = check(env)

    assert returncode == 1
    assert sorted(refused) == [
        "AIRFLOW_CONN_ALERT_SLACK password: is the example value from .env.example",
        "AIRFLOW_CONN_ALERT_SMTP password: is a placeholder",
        "AIRFLOW_CONN_ERP_DEFAULT: is not valid JSON",
        "AIRFLOW_CONN_ORDERCLOUD_DEFAULT extra.webhook_hash_key: is a placeholder",
    ]


def test_a_fernet_key_must_be_one_and_flower_auth_user_password_pairs():
    env = {**filled_env(), "AIRFLOW_FERNET_KEY": "not-a-fernet-key", "FLOWER_BASIC_AUTH": "ops"}

    returncode, refused = check(env)

    assert returncode == 1
    assert sorted(refused) == [
        "AIRFLOW_FERNET_KEY: is not a Fernet key (32 url-safe base64-encoded bytes)",
        "FLOWER_BASIC_AUTH: must be user:password pairs separated by commas",
    ]


def test_values_are_never_printed():
    env = filled_env()
    env["POSTGRES_PASSWORD"] = "changeme"  # refused, and the others with it must stay unprinted
    process = subprocess.run(
        [sys.executable, str(CHECK_SCRIPT), "--example", str(ENV_EXAMPLE)],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    output = process.stdout + process.stderr
    assert process.returncode == 1
    for name in secret_names():
        assert env[name] not in output or not env[name], name
