"""AWS sessions for the aws family: one boto3 session per target per run.

A target's ``aws:`` block (``region``, ``profile``, ``role_arn``, ``external_id``,
``role_session_name``, ``endpoint_url``, ``access_key_id``, ``secret_access_key``,
``session_token``, ``max_attempts``, ``connect_timeout``, ``read_timeout``) picks the
credentials; a step without a target uses boto3's default chain (environment,
``~/.aws``, instance role). With ``role_arn`` the session assumes the role through STS
and botocore refreshes the temporary credentials before they expire.

boto3 is imported inside the functions that build sessions, never at module level.
Every credential is handed to the run's redactor, and every message this module
builds goes through :meth:`AwsSession.clean`: no key, secret or token reaches a plan,
a result, a journal or an error.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, fields
from typing import Any, Callable

from engine.errors import ActionError

__all__ = ["AwsSettings", "AwsSession", "AwsApiError", "session_for", "call", "paginate",
           "api_error", "MASK"]

MASK = "***"
DEFAULT_MAX_ATTEMPTS = 5
#: services whose API lives in one global endpoint; a region is still needed to sign
GLOBAL_SERVICES = {"route53": "us-east-1", "iam": "us-east-1", "cloudfront": "us-east-1",
                   "organizations": "us-east-1", "sts": "us-east-1"}
THROTTLING_CODES = {"Throttling", "ThrottlingException", "ThrottledException",
                    "TooManyRequestsException", "RequestLimitExceeded", "SlowDown",
                    "RequestThrottled", "RequestThrottledException", "PriorRequestNotComplete",
                    "ProvisionedThroughputExceededException", "BandwidthLimitExceeded"}


class AwsApiError(ActionError):
    """A failed AWS call; ``code`` is AWS's error code (``NoSuchKey``), or "" when the
    call never got an answer (no credentials, unreachable endpoint)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class AwsSettings:
    """A target's ``aws:`` block, checked (unknown keys are refused with a suggestion)."""

    region: str | None = None
    profile: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    role_session_name: str | None = None
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    @classmethod
    def from_target(cls, target: dict | None) -> "AwsSettings":
        block = (target or {}).get("aws")
        if block is None:
            return cls()
        where = f"target '{(target or {}).get('name', '?')}'"
        if not isinstance(block, dict):
            raise ActionError(f"{where}: 'aws' must be a mapping of settings, got "
                              f"{type(block).__name__}")
        return cls(**_checked_settings(block, where))

    def credentials(self) -> list[str]:
        """Every credential value these settings carry (for the redactor)."""
        return [v for v in (self.access_key_id, self.secret_access_key, self.session_token,
                            self.external_id) if v]


def _checked_settings(block: dict, where: str) -> dict:
    known = {f.name: f for f in fields(AwsSettings)}
    values = {}
    for key, value in block.items():
        if key not in known:
            raise ActionError(f"{where}: unknown aws setting '{key}'{_suggest(str(key), known)}")
        if value is None or value == "":
            continue
        if key == "max_attempts":
            values[key] = _number(value, int, f"{where}: aws.max_attempts", minimum=1)
        elif key.endswith("_timeout"):
            values[key] = _number(value, float, f"{where}: aws.{key}", minimum=0.1)
        elif not isinstance(value, str):
            raise ActionError(f"{where}: aws.{key} must be a string, got {type(value).__name__}")
        else:
            values[key] = value
    if bool(values.get("access_key_id")) != bool(values.get("secret_access_key")):
        raise ActionError(f"{where}: aws.access_key_id and aws.secret_access_key go together")
    return values


def _suggest(word: str, candidates) -> str:
    import difflib

    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _number(value: Any, kind: type, what: str, minimum: float):
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ActionError(f"{what} must be a number, got {value!r}") from None
    if number < minimum or isinstance(value, bool):
        raise ActionError(f"{what} must be at least {minimum}, got {value!r}")
    return number


class AwsSession:
    """A boto3 session for one target and the clients made from it (one per service
    and region), shared by the steps of a run. Clients are thread-safe; the session
    is only touched under a lock."""

    def __init__(self, settings: AwsSettings, session_name: str = "runbook") -> None:
        self.settings = settings
        self._session_name = session_name
        self._session = None
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._secrets: list[str] = settings.credentials()
        self._lock = threading.Lock()
        #: S3 bucket -> its region, learnt once per run (a cross-region copy needs both)
        self.bucket_regions: dict[str, str | None] = {}

    # --- clients ---
    def client(self, service: str, region: str | None = None):
        """The client for ``service`` in ``region`` (default: the target's region)."""
        region = region or self.settings.region
        with self._lock:
            key = (service, region)
            if key not in self._clients:
                self._clients[key] = self._new_client(service, region)
            return self._clients[key]

    def _new_client(self, service: str, region: str | None):
        from botocore.exceptions import BotoCoreError, NoRegionError

        session = self._boto_session()
        region = region or session.region_name or GLOBAL_SERVICES.get(service)
        try:
            return session.client(service, region_name=region, config=self._config(),
                                  endpoint_url=self.settings.endpoint_url)
        except NoRegionError:
            raise ActionError(f"aws {service}: no region: set aws.region on the target, the "
                              f"step's region argument, or AWS_REGION") from None
        except BotoCoreError as exc:
            raise ActionError(f"aws {service}: {self.clean(str(exc))}") from None

    def _config(self):
        from botocore.config import Config

        s = self.settings
        # standard mode retries throttling and transient errors with jittered backoff
        return Config(retries={"mode": "standard", "total_max_attempts": s.max_attempts},
                      connect_timeout=s.connect_timeout, read_timeout=s.read_timeout,
                      user_agent_appid="runbook-engine")

    # --- the session and its credentials ---
    def _boto_session(self):
        if self._session is None:
            base = self._base_session()
            self._session = self._assumed(base) if self.settings.role_arn else base
        return self._session

    def _base_session(self):
        import boto3
        from botocore.exceptions import ProfileNotFound

        s = self.settings
        try:
            return boto3.session.Session(
                aws_access_key_id=s.access_key_id, aws_secret_access_key=s.secret_access_key,
                aws_session_token=s.session_token, region_name=s.region, profile_name=s.profile)
        except ProfileNotFound:
            raise ActionError(f"aws profile '{s.profile}' not found (in ~/.aws/config, "
                              f"~/.aws/credentials or AWS_CONFIG_FILE)") from None

    def _assumed(self, base):
        """A session whose credentials come from STS AssumeRole and refresh themselves."""
        import boto3
        from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials
        from botocore.session import Session as BotocoreSession

        s = self.settings
        source = base.get_credentials()
        if source is None:
            raise ActionError(f"aws: no credentials to assume {s.role_arn} with: set "
                              f"access_key_id/secret_access_key, a profile, or the environment")
        extra = {"RoleSessionName": s.role_session_name or self._session_name}
        if s.external_id:
            extra["ExternalId"] = s.external_id
        fetcher = AssumeRoleCredentialFetcher(
            client_creator=self._sts_creator(base), source_credentials=source,
            role_arn=s.role_arn, extra_args=extra)
        refreshing = DeferredRefreshableCredentials(method="assume-role",
                                                    refresh_using=self._remembering(fetcher))
        botocore_session = BotocoreSession(profile=s.profile) if s.profile else BotocoreSession()
        botocore_session._credentials = refreshing  # botocore has no public setter for this
        region = s.region or base.region_name
        return boto3.session.Session(botocore_session=botocore_session, region_name=region)

    def _sts_creator(self, base) -> Callable:
        region = self.settings.region or base.region_name or GLOBAL_SERVICES["sts"]

        def create(service, **kwargs):
            return base.client(service, region_name=region, config=self._config(),
                               endpoint_url=self.settings.endpoint_url, **kwargs)
        return create

    def _remembering(self, fetcher) -> Callable:
        """The fetcher's ``fetch_credentials``, noting each temporary secret for masking."""
        def fetch():
            try:
                fresh = fetcher.fetch_credentials()
            except Exception as exc:
                raise ActionError(f"aws sts AssumeRole {self.settings.role_arn}: "
                                  f"{self.clean(api_error_text(exc))}") from None
            self._secrets += [fresh.get("access_key"), fresh.get("secret_key"), fresh.get("token")]
            return fresh
        return fetch

    # --- keeping credentials out of text ---
    def clean(self, text: str) -> str:
        """``text`` with every credential this session knows replaced by ``***``."""
        for secret in sorted({s for s in self._secrets if s}, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def known_secrets(self) -> list[str]:
        return [s for s in self._secrets if s]

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                try:
                    client.close()
                except Exception:  # closing at the end of a run must not fail it
                    pass
            self._clients.clear()


def session_for(ctx) -> AwsSession:
    """The run's session for the step's target (or the default chain without one)."""
    settings = AwsSettings.from_target(ctx.target)
    if ctx.redactor is not None and settings.credentials():
        ctx.redactor.add(settings.credentials())
    name = (ctx.target or {}).get("name")
    session_name = f"runbook-{ctx.run_id}" if ctx.run_id else "runbook"
    return ctx.connection(("aws", name, settings), lambda: AwsSession(settings, session_name[:64]))


def call(ctx, service: str, operation: str, params: dict | None = None, *,
         region: str | None = None) -> dict:
    """``service``'s ``operation`` (CamelCase name) with ``params``; the response.

    Every failure is an ActionError naming the service, operation and AWS error code.
    """
    from botocore import xform_name

    session = session_for(ctx)
    client = session.client(service, region)
    try:
        response = getattr(client, xform_name(operation))(**dict(params or {}))
    except Exception as exc:
        raise api_error(session, service, operation, exc) from None
    if ctx.redactor is not None and session.known_secrets():
        ctx.redactor.add(session.known_secrets())  # assumed-role credentials, once fetched
    return response


def paginate(ctx, service: str, operation: str, params: dict | None = None, *,
             region: str | None = None) -> dict:
    """Every page of ``operation`` merged into one response (botocore's paginator)."""
    from botocore import xform_name

    session = session_for(ctx)
    client = session.client(service, region)
    try:
        pages = client.get_paginator(xform_name(operation)).paginate(**dict(params or {}))
        return pages.build_full_result()
    except Exception as exc:
        raise api_error(session, service, operation, exc) from None


def api_error(session: AwsSession | None, service: str, operation: str,
              exc: BaseException) -> ActionError:
    """One clear line for a failed call: ``route53 ChangeResourceRecordSets: Code: message``."""
    from botocore.exceptions import ClientError

    text = api_error_text(exc)
    if session is not None:
        text = session.clean(text)
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
    return AwsApiError(f"{service} {operation}: {text}", str(code))


def api_error_text(exc: BaseException) -> str:
    """What went wrong, without the exception's class path or a traceback."""
    from botocore import exceptions as bx

    if isinstance(exc, ActionError):
        return str(exc)
    if isinstance(exc, bx.ClientError):
        return _client_error_text(exc)
    if isinstance(exc, bx.NoCredentialsError):
        return ("no AWS credentials: give the target aws.access_key_id/secret_access_key "
                "(from secrets), aws.profile, or set them in the environment")
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError)):
        return f"cannot reach {exc.kwargs.get('endpoint_url', 'the endpoint')}: {_reason(exc)}"
    if isinstance(exc, bx.ReadTimeoutError):
        return f"no answer from {exc.kwargs.get('endpoint_url', 'the endpoint')} in time"
    if isinstance(exc, bx.ParamValidationError):
        return "invalid parameters: " + " ".join(str(exc.kwargs.get("report", exc)).split())
    if isinstance(exc, bx.BotoCoreError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _client_error_text(exc) -> str:
    error = exc.response.get("Error", {})
    code = error.get("Code") or str(exc.response.get("ResponseMetadata", {})
                                   .get("HTTPStatusCode", "error"))
    message = " ".join(str(error.get("Message") or "").split())
    text = f"{code}: {message}" if message else code
    attempts = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
    if code in THROTTLING_CODES:
        text += (f" (still throttled after {attempts + 1} attempts with backoff; raise "
                 f"aws.max_attempts on the target or retry later)")
    return text


def _reason(exc) -> str:
    error = getattr(exc, "kwargs", {}).get("error")
    text = str(error or exc)
    for marker in ("Connection refused", "Name or service not known", "timed out",
                   "No route to host", "Temporary failure in name resolution"):
        if marker in text:
            return marker.lower()
    return text.split(": ")[-1][:120]
