"""Sessions in other accounts of an organization, for `reconcile` across accounts:
`sts:AssumeRole` into the read-only role `infra/member.yaml` creates, and the account list
from AWS Organizations when the caller may read it. Credentials to assume with come from
the standard chain; endpoints from `AWS_ENDPOINT_URL[_STS|_ORGANIZATIONS|_ECS]`."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from stream_processor.adapters.botocore_errors import error_code
from stream_processor.errors import StreamProcessorError

#: The role name infra/member.yaml creates.
DEFAULT_ROLE_NAME = "stream-processor-reconcile"


class AccountAccessError(StreamProcessorError):
    """A member account could not be entered (role missing, access denied, ...)."""


def role_arn_template(role_name: str | None, role_arn: str | None, partition: str = "aws") -> str:
    """A role ARN with `{account}` in it, from `--role-arn` or `--role-name`."""
    if role_arn:
        if "{account}" not in role_arn:
            raise StreamProcessorError("--role-arn must contain {account}")
        return role_arn
    return f"arn:{partition}:iam::{{account}}:role/{role_name or DEFAULT_ROLE_NAME}"


class StsRoleSessions:
    """boto3 sessions in member accounts through one role-ARN template."""

    def __init__(
        self, sts: Any, template: str, session_name: str = "stream-processor-reconcile"
    ) -> None:
        self._sts = sts
        self._template = template
        self._session_name = session_name

    def session(self, account: str, region: str) -> boto3.Session:
        """A session in `account` and `region` (credentials last an hour: one reconcile)."""
        arn = self._template.format(account=account)
        try:
            credentials = self._sts.assume_role(
                RoleArn=arn, RoleSessionName=self._session_name, DurationSeconds=3600
            )["Credentials"]
        except (ClientError, BotoCoreError) as exc:
            raise AccountAccessError(f"assuming {arn}: {error_code(exc)}") from exc
        return boto3.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name=region,
        )


def organization_accounts(organizations: Any) -> list[str]:
    """The ACTIVE accounts of the caller's organization (needs organizations:ListAccounts,
    i.e. the management or a delegated administrator account)."""
    accounts: list[str] = []
    try:
        for page in organizations.get_paginator("list_accounts").paginate():
            accounts.extend(a["Id"] for a in page["Accounts"] if a.get("Status") == "ACTIVE")
    except (ClientError, BotoCoreError) as exc:
        raise AccountAccessError(f"listing the organization's accounts: {error_code(exc)}") from exc
    return sorted(accounts)
