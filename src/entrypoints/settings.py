"""The service's settings (SPEC section 6): defaults, then a YAML file, then the environment."""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import msgspec
import yaml


class SettingsError(Exception):
    """A setting is missing, malformed or inconsistent; the message is one line for the operator."""


# --- the settings tree ------------------------------------------------------------------


def _redact_url(text: str) -> str:
    try:
        parts = urlsplit(text)
        password = parts.password
    except ValueError:
        return text
    if not password:
        return text
    return parts._replace(netloc=parts.netloc.replace(f":{password}@", ":***@", 1)).geturl()


class _SettingsStruct(msgspec.Struct, frozen=True, kw_only=True):
    # Shown as *** by repr(), so that logging the settings never logs a credential.
    _secret_fields: ClassVar[frozenset[str]] = frozenset()

    def __repr__(self) -> str:
        fields = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if name in self._secret_fields and value is not None:
                value = "***"
            elif isinstance(value, str):
                value = _redact_url(value)
            fields.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(fields)})"


class SigningKey(_SettingsStruct, frozen=True, kw_only=True):
    _secret_fields = frozenset({"secret"})
    kid: str | None
    secret: str


class ServerSettings(_SettingsStruct, frozen=True, kw_only=True):
    host: str
    port: int
    workers: int
    read_timeout: float
    write_timeout: float
    idle_timeout: float
    max_body_size: int
    max_json_depth: int
    shutdown_timeout: float
    drain_delay: float

    @property
    def request_deadline(self) -> float:
        """Seconds a whole request may take before it is answered 503."""
        return self.read_timeout + self.write_timeout


class CacheSettings(_SettingsStruct, frozen=True, kw_only=True):
    _secret_fields = frozenset({"password"})
    url: str | None
    password: str | None
    db: int
    mode: str
    pool_size: int
    connect_timeout: float
    command_timeout: float
    sentinel_master: str
    lock_ttl: float
    ttl: float
    stale_window: float
    context_max_size: int
    context_ttl: float


class BackendSettings(_SettingsStruct, frozen=True, kw_only=True):
    _secret_fields = frozenset({"token"})
    url: str | None
    token: str | None
    timeout: float
    max_retries: int
    retry_delay: float
    breaker_failures: int
    breaker_cooldown: float


class AuthSettings(_SettingsStruct, frozen=True, kw_only=True):
    _secret_fields = frozenset({"jwt_secret", "internal_token"})
    jwt_secret: str | None
    jwt_secrets: tuple[SigningKey, ...]
    leeway: float
    issuers: tuple[str, ...] | None
    audience: str | None
    allow_weak_secret: bool
    internal_token: str | None
    max_token_lifetime: float
    revocation_refresh: float
    token_expiration: float

    @property
    def signing_keys(self) -> tuple[SigningKey, ...]:
        """`jwt_secret` (without a kid) first, then `jwt_secrets`."""
        first = () if self.jwt_secret is None else (SigningKey(kid=None, secret=self.jwt_secret),)
        return first + self.jwt_secrets


class StoreSettings(_SettingsStruct, frozen=True, kw_only=True):
    path: Path


class EmbeddedSettings(_SettingsStruct, frozen=True, kw_only=True):
    user_id: str


class AuditSettings(_SettingsStruct, frozen=True, kw_only=True):
    _secret_fields = frozenset({"key"})
    sinks: tuple[str, ...]
    # None: derived from the first JWT secret once it is known (it may be generated).
    key: str | None
    fail_closed: bool
    file_path: Path
    file_max_size: int
    file_backups: int
    spool_path: Path
    stream_max_age: float
    claim_idle: float
    ship_concurrency: int
    ship_retry_max: float


class MetricsSettings(_SettingsStruct, frozen=True, kw_only=True):
    multiprocess_dir: Path | None


class IdempotencySettings(_SettingsStruct, frozen=True, kw_only=True):
    ttl: float


class WebhookToolSettings(_SettingsStruct, frozen=True, kw_only=True):
    _secret_fields = frozenset({"url"})
    url: str | None


class SlackToolSettings(_SettingsStruct, frozen=True, kw_only=True):
    # An incoming-webhook URL is itself the credential.
    _secret_fields = frozenset({"webhook_url"})
    webhook_url: str | None


class DiscordToolSettings(_SettingsStruct, frozen=True, kw_only=True):
    _secret_fields = frozenset({"webhook_url"})
    webhook_url: str | None


class EmailToolSettings(_SettingsStruct, frozen=True, kw_only=True):
    _secret_fields = frozenset({"password"})
    host: str | None
    port: int
    username: str | None
    password: str | None
    from_address: str | None
    starttls: bool


class ToolsSettings(_SettingsStruct, frozen=True, kw_only=True):
    mode: str
    dry_run: bool
    timeout: float
    webhook: WebhookToolSettings
    slack: SlackToolSettings
    discord: DiscordToolSettings
    email: EmailToolSettings


class LoggingSettings(_SettingsStruct, frozen=True, kw_only=True):
    level: str
    format: str


class SecuritySettings(_SettingsStruct, frozen=True, kw_only=True):
    enable_cors: bool
    allowed_origins: tuple[str, ...]
    allowed_methods: tuple[str, ...]
    allowed_headers: tuple[str, ...]
    rate_limit_per_min: int
    rate_limit_lease_ttl: float
    rate_limit_lease_max: int
    enable_tls: bool
    tls_cert: Path | None
    tls_key: Path | None


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    server: ServerSettings
    cache: CacheSettings
    backend: BackendSettings
    auth: AuthSettings
    store: StoreSettings
    embedded: EmbeddedSettings
    audit: AuditSettings
    metrics: MetricsSettings
    idempotency: IdempotencySettings
    tools: ToolsSettings
    logging: LoggingSettings
    security: SecuritySettings
    # The YAML file that was read, if any.
    config_file: Path | None

    @property
    def embedded_mode(self) -> bool:
        """No backend: the local store is the system of record."""
        return self.backend.url is None

    @property
    def uses_valkey(self) -> bool:
        return self.cache.url is not None


# --- parsers: raw YAML or environment value -> typed value, or _Invalid -------------------


class _Invalid(ValueError):
    """What is wrong with a value, as a phrase that follows it ('is not a port number')."""

    def __init__(self, problem: str, *, part: object = None) -> None:
        super().__init__(problem)
        self.problem = problem
        # The offending item of a list, shown instead of the whole value.
        self.part = part


Parser = Callable[[object], object]

_DURATION_FORMS = "like 250ms, 30s, 5m, 1h, 7d, or a number of seconds"
_DURATION_PARTS = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_DURATION = re.compile(f"(?:{_DURATION_PARTS.pattern})+")
_SECONDS_PER = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_INTEGER = re.compile(r"[+-]?\d+")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")
_BYTES_PER = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}
_BOOLEANS = {
    "true": True,
    "yes": True,
    "on": True,
    "1": True,
    "false": False,
    "no": False,
    "off": False,
    "0": False,
}


def _text(raw: object) -> str:
    if not isinstance(raw, str):
        raise _Invalid("is not text (quote it in the YAML file)")
    return raw


def _whole_number(raw: object) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and _INTEGER.fullmatch(raw.strip()):
        return int(raw.strip())
    return None


def _integer(minimum: int) -> Parser:
    def parse(raw: object) -> int:
        number = _whole_number(raw)
        if number is None or number < minimum:
            raise _Invalid(f"is not a whole number of at least {minimum}")
        return number

    return parse


def _port(raw: object) -> int:
    number = _whole_number(raw)
    if number is None or not 1 <= number <= 65535:
        raise _Invalid("is not a port number (1-65535)")
    return number


def _boolean(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in _BOOLEANS:
        return _BOOLEANS[raw.strip().lower()]
    raise _Invalid("is not true or false (true/false, yes/no, on/off, 1/0)")


def _seconds(raw: object) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw)
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    if _NUMBER.fullmatch(text):
        return float(text)
    if _DURATION.fullmatch(text):
        # Go's form, so old configurations still read: "1h30m" as well as "90m".
        return sum(float(n) * _SECONDS_PER[unit] for n, unit in _DURATION_PARTS.findall(text))
    return None


def _duration(*, positive: bool = False) -> Callable[[object], float]:
    def parse(raw: object) -> float:
        seconds = _seconds(raw)
        if seconds is None or not math.isfinite(seconds) or seconds < 0:
            raise _Invalid(f"is not a duration ({_DURATION_FORMS})")
        if positive and seconds == 0:
            raise _Invalid("is not a duration longer than zero")
        return seconds

    return parse


def _size(raw: object) -> int:
    size: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        size = raw
    elif isinstance(raw, str):
        match = _SIZE.fullmatch(raw.strip().lower())
        if match and match[2] in _BYTES_PER:
            size = int(Decimal(match[1]) * _BYTES_PER[match[2]])
    if size is None or size < 1:
        raise _Invalid("is not a size (like 512KiB, 10MiB, 1GiB, 100KB, or a number of bytes)")
    return size


def _items(raw: object) -> list[object]:
    if isinstance(raw, str):
        return [item.strip() for item in raw.split(",") if item.strip()]
    if isinstance(raw, list):
        return raw
    raise _Invalid("is not a list (a YAML list, or comma-separated in the environment)")


def _text_list(raw: object) -> tuple[str, ...]:
    items = _items(raw)
    if not items:
        raise _Invalid("names nothing")
    for item in items:
        if not isinstance(item, str) or not item:
            raise _Invalid("is not text (quote it in the YAML file)", part=item)
    return tuple(str(item) for item in items)


def _choice(*choices: str, aliases: Mapping[str, str] | None = None) -> Parser:
    aliases = aliases or {}

    def parse(raw: object) -> str:
        if isinstance(raw, str):
            word = raw.strip().lower()
            word = aliases.get(word, word)
            if word in choices:
                return word
        raise _Invalid(f"is not one of {', '.join(choices)}")

    return parse


def _choice_list(*choices: str) -> Parser:
    one = _choice(*choices)

    def parse(raw: object) -> tuple[str, ...]:
        chosen: list[str] = []
        for item in _items(raw):
            try:
                word = str(one(item))
            except _Invalid as invalid:
                raise _Invalid(invalid.problem, part=item) from None
            if word not in chosen:
                chosen.append(word)
        if not chosen:
            raise _Invalid(f"names none of {', '.join(choices)}")
        return tuple(chosen)

    return parse


def _url(*schemes: str, described: str, strip_slash: bool = False) -> Parser:
    def parse(raw: object) -> str:
        text = _text(raw).strip()
        try:
            parts = urlsplit(text)
            _ = parts.port  # raises on a port that is not a number
        except ValueError:
            raise _Invalid(f"is not {described}") from None
        if parts.scheme.lower() not in schemes or not parts.hostname:
            raise _Invalid(f"is not {described}")
        # The backend client appends "/api/...": a trailing slash would double it.
        return text.rstrip("/") if strip_slash else text

    return parse


def _path(raw: object) -> Path:
    return Path(_text(raw))


def _key_from_text(entry: str) -> SigningKey:
    # A base64 secret ends in "=" padding, so only an "=" before the trailing ones
    # separates a kid: "k1=c2VjcmV0==" is kid k1, "c2VjcmV0==" a bare secret.
    if "=" not in entry.rstrip("="):
        return SigningKey(kid=None, secret=entry)
    kid, secret = (part.strip() for part in entry.split("=", 1))
    if not kid:
        raise _Invalid("has an entry with an empty kid")
    return SigningKey(kid=kid, secret=secret)


def _key_from_yaml(item: object) -> SigningKey:
    if isinstance(item, str) and item:
        return SigningKey(kid=None, secret=item)
    if not isinstance(item, dict):
        raise _Invalid("has an entry that is neither a secret nor a {kid, secret} mapping")
    unknown = sorted(str(field) for field in item if field not in ("kid", "secret"))
    if unknown:
        raise _Invalid(f'has an entry with the unknown field "{unknown[0]}" (only kid, secret)')
    kid, secret = item.get("kid"), item.get("secret")
    if not isinstance(secret, str) or not secret:
        raise _Invalid("has an entry without a secret")
    if kid is not None and (not isinstance(kid, str) or not kid):
        raise _Invalid("has an entry whose kid is not text")
    return SigningKey(kid=kid, secret=secret)


def _signing_keys(raw: object) -> tuple[SigningKey, ...]:
    if isinstance(raw, str):
        keys = [_key_from_text(str(entry)) for entry in _items(raw)]
    elif isinstance(raw, list):
        keys = [_key_from_yaml(item) for item in raw]
    else:
        raise _Invalid("is not a list of {kid, secret} mappings or of kid=secret entries")
    kids = [key.kid for key in keys if key.kid is not None]
    for kid in kids:
        if kids.count(kid) > 1:
            raise _Invalid(f'names kid "{kid}" more than once')
    return tuple(keys)


# --- the table ----------------------------------------------------------------------------


class Derived(msgspec.Struct, frozen=True):
    """A default computed from settings earlier in the table and the environment.

    `compute` returns the value as a configuration file would write it (or None for unset).
    """

    doc: str
    compute: Callable[[Mapping[str, Any], Mapping[str, str]], object]


class Setting(msgspec.Struct, frozen=True):
    """One row of SPEC section 6: YAML key, environment NAME, parser, default.

    A default is written as it would be in the YAML file and goes through the parser, so the
    table prints as documentation as it stands.
    """

    key: str
    name: str
    parse: Parser
    default: object = None
    # Only where the attribute is not the snake_case of the YAML key.
    attr: str | None = None
    # Never echoed in an error message nor in repr().
    secret: bool = False

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def variables(self) -> tuple[str, str, str]:
        """The environment variables read, first present wins."""
        return (f"RUNTIME_{self.name}", f"RUNTIME_{self.section.upper()}_{self.name}", self.name)

    @property
    def path(self) -> tuple[str, ...]:
        """The attribute path in `Settings`: ("tools", "email", "from_address")."""
        *groups, last = self.key.split(".")
        return (*groups, self.attr or _snake(last))

    @property
    def default_text(self) -> str:
        if isinstance(self.default, Derived):
            return self.default.doc
        if self.default is None or self.default == []:
            return "unset"
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def _home(environ: Mapping[str, str]) -> Path:
    home = environ.get("HOME")
    return Path(home) if home else Path.home()


def _data_folder(_values: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    # The XDG specification says a relative XDG_DATA_HOME is invalid and to be ignored.
    xdg = environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else _home(environ) / ".local" / "share"
    return str(base / "cronium-runtime")


def _with_backend(with_one: object, without: object) -> Derived:
    return Derived(
        f"{with_one} with a backend, else {without}",
        lambda values, _environ: with_one if values["backend.url"] else without,
    )


def _under_store(name: str) -> Derived:
    return Derived(
        f"<store.path>/{name}", lambda values, _environ: str(values["store.path"] / name)
    )


_DATA_FOLDER = Derived(
    "$XDG_DATA_HOME/cronium-runtime, else ~/.local/share/cronium-runtime", _data_folder
)
_BACKEND_TOKEN = Derived("the backend token", lambda values, _environ: values["backend.token"])
_TOOLS_MODE_DEFAULT = _with_backend("backend", "builtin")
_AUDIT_SINKS_DEFAULT = _with_backend("backend", "store")
_METHODS = "GET,POST,PUT,DELETE,OPTIONS"

_HTTP_URL = _url("http", "https", described="an http:// or https:// URL")
_BACKEND_URL = _url("http", "https", described="an http:// or https:// URL", strip_slash=True)
_VALKEY_URL = _url(
    "valkey",
    "valkeys",
    "redis",
    "rediss",
    described="a Valkey URL (valkey://, valkeys://, redis:// or rediss://)",
)
_WAIT = _duration()
_SPAN = _duration(positive=True)  # a span that cannot be zero: a timeout, a TTL
_COUNT = _integer(0)
_POSITIVE = _integer(1)
_TOOLS_MODE = _choice("backend", "builtin")
_CACHE_MODE = _choice("standalone", "cluster", "sentinel")
_LOG_LEVEL = _choice("debug", "info", "warning", "error", aliases={"warn": "warning"})
_AUDIT_SINKS = _choice_list("backend", "store", "file", "stdout")


# One row per setting, in the order of SPEC section 6; a derived default reads only rows above
# it. Positional rows, and no formatter, so that the table reads as a table.
# fmt: off
SETTINGS: tuple[Setting, ...] = (
    Setting("server.host", "HOST", _text, "0.0.0.0"),  # noqa: S104 (every interface)
    Setting("server.port", "PORT", _port, 8081),
    Setting("server.workers", "WORKERS", _POSITIVE, 1),
    Setting("server.readTimeout", "READ_TIMEOUT", _SPAN, "30s"),
    Setting("server.writeTimeout", "WRITE_TIMEOUT", _SPAN, "30s"),
    Setting("server.idleTimeout", "IDLE_TIMEOUT", _WAIT, "120s"),
    Setting("server.maxBodySize", "MAX_BODY_SIZE", _size, "10MiB"),
    Setting("server.maxJsonDepth", "MAX_JSON_DEPTH", _POSITIVE, 64),
    Setting("server.shutdownTimeout", "SHUTDOWN_TIMEOUT", _WAIT, "25s"),
    Setting("server.drainDelay", "DRAIN_DELAY", _WAIT, "5s"),
    Setting("cache.url", "VALKEY_URL", _VALKEY_URL),
    Setting("cache.password", "VALKEY_PASSWORD", _text, secret=True),
    Setting("cache.db", "VALKEY_DB", _COUNT, 0),
    Setting("cache.mode", "VALKEY_MODE", _CACHE_MODE, "standalone"),
    Setting("cache.poolSize", "VALKEY_POOL_SIZE", _POSITIVE, 10),
    Setting("cache.connectTimeout", "VALKEY_DIAL_TIMEOUT", _SPAN, "2s"),
    Setting("cache.commandTimeout", "VALKEY_READ_TIMEOUT", _SPAN, "500ms"),
    Setting("cache.sentinelMaster", "VALKEY_SENTINEL_MASTER", _text, "mymaster"),
    Setting("cache.lockTtl", "VALKEY_LOCK_TTL", _SPAN, "5s"),
    Setting("cache.ttl", "CACHE_TTL", _SPAN, "5m"),
    Setting("cache.staleWindow", "CACHE_STALE_WINDOW", _WAIT, "1h"),
    Setting("cache.contextMaxSize", "CONTEXT_CACHE_MAX_SIZE", _size, "8MiB"),
    Setting("cache.contextTtl", "CONTEXT_CACHE_TTL", _WAIT, "10m"),
    Setting("backend.url", "BACKEND_URL", _BACKEND_URL),
    Setting("backend.token", "BACKEND_TOKEN", _text, secret=True),
    Setting("backend.timeout", "BACKEND_TIMEOUT", _SPAN, "30s"),
    Setting("backend.maxRetries", "BACKEND_MAX_RETRIES", _COUNT, 3),
    Setting("backend.retryDelay", "BACKEND_RETRY_DELAY", _WAIT, "1s"),
    Setting("backend.breakerFailures", "BACKEND_BREAKER_FAILURES", _POSITIVE, 5),
    Setting("backend.breakerCooldown", "BACKEND_BREAKER_COOLDOWN", _WAIT, "30s"),
    Setting("auth.jwtSecret", "JWT_SECRET", _text, secret=True),
    Setting("auth.jwtSecrets", "JWT_SECRETS", _signing_keys, [], secret=True),
    Setting("auth.leeway", "JWT_LEEWAY", _WAIT, "30s"),
    Setting("auth.issuers", "JWT_ISSUERS", _text_list),
    Setting("auth.audience", "JWT_AUDIENCE", _text),
    Setting("auth.allowWeakSecret", "ALLOW_WEAK_SECRET", _boolean, False),
    Setting("auth.internalToken", "INTERNAL_TOKEN", _text, _BACKEND_TOKEN, secret=True),
    Setting("auth.maxTokenLifetime", "MAX_TOKEN_LIFETIME", _SPAN, "24h"),
    Setting("auth.revocationRefresh", "REVOCATION_REFRESH", _SPAN, "500ms"),
    Setting("auth.tokenExpiration", "TOKEN_EXPIRATION", _SPAN, "1h"),
    Setting("store.path", "STORE_PATH", _path, _DATA_FOLDER),
    Setting("embedded.userId", "EMBEDDED_USER_ID", _text, "local"),
    Setting("audit.sinks", "AUDIT_SINKS", _AUDIT_SINKS, _AUDIT_SINKS_DEFAULT),
    Setting("audit.key", "AUDIT_HMAC_KEY", _text, secret=True),
    Setting("audit.failClosed", "AUDIT_FAIL_CLOSED", _boolean, False),
    Setting("audit.filePath", "AUDIT_FILE", _path, _under_store("audit.jsonl")),
    Setting("audit.fileMaxSize", "AUDIT_FILE_MAX_SIZE", _size, "100MiB"),
    Setting("audit.fileBackups", "AUDIT_FILE_BACKUPS", _COUNT, 5),
    Setting("audit.spoolPath", "AUDIT_SPOOL", _path, _under_store("audit-spool.jsonl")),
    Setting("audit.streamMaxAge", "AUDIT_STREAM_MAX_AGE", _SPAN, "7d"),
    Setting("audit.claimIdle", "AUDIT_CLAIM_IDLE", _SPAN, "60s"),
    Setting("audit.shipConcurrency", "AUDIT_SHIP_CONCURRENCY", _POSITIVE, 4),
    Setting("audit.shipRetryMax", "AUDIT_SHIP_RETRY_MAX", _SPAN, "5m"),
    Setting("metrics.multiprocessDir", "PROMETHEUS_MULTIPROC_DIR", _path),
    Setting("idempotency.ttl", "IDEMPOTENCY_TTL", _SPAN, "24h"),
    Setting("tools.mode", "TOOLS_MODE", _TOOLS_MODE, _TOOLS_MODE_DEFAULT),
    Setting("tools.dryRun", "TOOLS_DRY_RUN", _boolean, False),
    Setting("tools.timeout", "TOOLS_TIMEOUT", _SPAN, "10s"),
    Setting("tools.webhook.url", "TOOLS_WEBHOOK_URL", _HTTP_URL, secret=True),
    Setting("tools.slack.webhookUrl", "TOOLS_SLACK_WEBHOOK_URL", _HTTP_URL, secret=True),
    Setting("tools.discord.webhookUrl", "TOOLS_DISCORD_WEBHOOK_URL", _HTTP_URL, secret=True),
    Setting("tools.email.host", "TOOLS_EMAIL_HOST", _text),
    Setting("tools.email.port", "TOOLS_EMAIL_PORT", _port, 587),
    Setting("tools.email.username", "TOOLS_EMAIL_USERNAME", _text),
    Setting("tools.email.password", "TOOLS_EMAIL_PASSWORD", _text, secret=True),
    Setting("tools.email.from", "TOOLS_EMAIL_FROM", _text, attr="from_address"),
    Setting("tools.email.starttls", "TOOLS_EMAIL_STARTTLS", _boolean, True),
    Setting("logging.level", "LOG_LEVEL", _LOG_LEVEL, "info"),
    Setting("logging.format", "LOG_FORMAT", _choice("json", "text"), "json"),
    Setting("security.enableCors", "ENABLE_CORS", _boolean, True),
    Setting("security.allowedOrigins", "ALLOWED_ORIGINS", _text_list, "*"),
    Setting("security.allowedMethods", "ALLOWED_METHODS", _text_list, _METHODS),
    Setting("security.allowedHeaders", "ALLOWED_HEADERS", _text_list, "*"),
    Setting("security.rateLimitPerMin", "RATE_LIMIT_PER_MIN", _POSITIVE, 1000),
    Setting("security.rateLimitLeaseTtl", "RATE_LIMIT_LEASE_TTL", _SPAN, "2s"),
    Setting("security.rateLimitLeaseMax", "RATE_LIMIT_LEASE_MAX", _POSITIVE, 32),
    Setting("security.enableTls", "ENABLE_TLS", _boolean, False),
    Setting("security.tlsCert", "TLS_CERT", _path),
    Setting("security.tlsKey", "TLS_KEY", _path),
)
# fmt: on

_BY_KEY = {setting.key: setting for setting in SETTINGS}
# "tools", "tools.email", ...: the YAML mappings that hold settings.
_GROUPS = {
    ".".join(setting.key.split(".")[:depth])
    for setting in SETTINGS
    for depth in range(1, setting.key.count(".") + 1)
}
_MIN_SECRET_BYTES = 32
_StructT = TypeVar("_StructT", bound=msgspec.Struct)


def parse_duration(text: str) -> float:
    """Seconds in `text` ("250ms", "30s", "1h30m", "7d", or a number); ValueError if none."""
    try:
        return _WAIT(text)
    except _Invalid as invalid:
        raise ValueError(f"{_show(text)} {invalid.problem}") from None


def settings_reference() -> str:
    """The settings as a Markdown table: YAML key, environment variables, default."""
    rows = [f"| {s.key} | {', '.join(s.variables)} | {s.default_text} |" for s in SETTINGS]
    return "\n".join(["| YAML key | environment | default |", "|---|---|---|", *rows])


# --- loading ------------------------------------------------------------------------------


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    config_file: str | os.PathLike[str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Defaults, overridden by the YAML file, overridden by the environment; then validated.

    The YAML file is `config_file`, else $RUNTIME_CONFIG_FILE or $CONFIG_FILE (which must
    exist), else `config.yaml` in `cwd` if there is one. Relative paths, the file's among
    them, are taken from `cwd` (default: the working directory); "~" is $HOME of `environ`.
    """
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    file = _config_path(config_file, environ, cwd)
    from_file = _read_yaml(file) if file is not None else {}
    values: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for setting in SETTINGS:
        value, labels[setting.key] = _resolve(setting, environ, from_file, file, values)
        if isinstance(value, Path):
            value = _absolute(value, environ, cwd)
        values[setting.key] = value
    _check(values, labels)
    return _assemble(Settings, _nest(values, file))


def _config_path(
    config_file: str | os.PathLike[str] | None, environ: Mapping[str, str], cwd: Path
) -> Path | None:
    if config_file is not None:
        path = cwd / config_file
        if not path.exists():
            raise SettingsError(f"config file {path} does not exist")
        return path
    for variable in ("RUNTIME_CONFIG_FILE", "CONFIG_FILE"):
        if value := environ.get(variable):
            path = cwd / value
            if not path.exists():
                raise SettingsError(f"{variable}: {_quote(value)} does not exist ({path})")
            return path
    default = cwd / "config.yaml"
    return default if default.is_file() else None


def _read_yaml(path: Path) -> dict[str, object]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8"
        raise SettingsError(f"{path}: cannot be read: {reason}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise SettingsError(f"{path}: not valid YAML{where}: {problem}") from None
    if document is None:  # an empty file, or only comments
        return {}
    if not isinstance(document, dict):
        raise SettingsError(f"{path}: is not a mapping of settings (server:, cache:, ...)")
    found: dict[str, object] = {}
    _collect(document, "", path, found)
    return found


def _collect(mapping: dict[Any, Any], prefix: str, path: Path, found: dict[str, object]) -> None:
    for name, value in mapping.items():
        key = f"{prefix}{name}"
        if key in _BY_KEY:
            found[key] = value
        elif key in _GROUPS:
            if isinstance(value, dict):
                _collect(value, f"{key}.", path, found)
            elif value is not None:
                raise SettingsError(f"{key} in {path}: is not a mapping of settings")
        else:
            raise SettingsError(f"{path}: unknown setting {_quote(key)}{_suggestion(key)}")


def _suggestion(key: str) -> str:
    def folded(text: str) -> str:
        return text.replace("_", "").replace("-", "").lower()

    known = [*_BY_KEY, *_GROUPS]
    same = [candidate for candidate in known if folded(candidate) == folded(key)]
    close = same or difflib.get_close_matches(key, known, n=1, cutoff=0.8)
    return f" (did you mean {close[0]}?)" if close else ""


def _unset(value: object) -> bool:
    # An empty string (or list) counts as unset, in the environment and in the file alike:
    # compose files and Helm charts write `JWT_SECRET=` for "not given", and that must
    # neither wipe out the YAML value nor fail to parse.
    return value is None or value in ("", [])


def _resolve(
    setting: Setting,
    environ: Mapping[str, str],
    from_file: Mapping[str, object],
    file: Path | None,
    values: Mapping[str, Any],
) -> tuple[object, str]:
    """The setting's value and a label naming where it came from, for error messages."""
    raw: object
    from_environment = _from_environment(setting, environ)
    if from_environment is not None:
        variable, raw = from_environment
        label = f"{variable} ({setting.key})"
    # An unset variable leaves the YAML value alone (the Go service let the default win).
    elif not _unset(from_file.get(setting.key)):
        raw, label = from_file[setting.key], f"{setting.key} in {file}"
    else:
        label = f"{setting.key} ({setting.name})"
        default = setting.default
        raw = default.compute(values, environ) if isinstance(default, Derived) else default
        if raw is None:
            return None, label
    try:
        return setting.parse(raw), label
    except _Invalid as invalid:
        shown = _show(raw if invalid.part is None else invalid.part)
        if setting.secret:
            shown = "the value"
        raise SettingsError(f"{label}: {shown} {invalid.problem}") from None


def _from_environment(setting: Setting, environ: Mapping[str, str]) -> tuple[str, str] | None:
    for variable in setting.variables:
        value = environ.get(variable)
        if not _unset(value):
            return variable, str(value)
    return None


def _show(value: object) -> str:
    if isinstance(value, str):
        return _quote(_redact_url(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, int | float):
        return str(value)
    return _quote(str(value))


def _quote(text: str) -> str:
    # JSON quoting escapes newlines, so the message stays on one line.
    return json.dumps(text if len(text) <= 80 else f"{text[:77]}...", ensure_ascii=False)


def _absolute(path: Path, environ: Mapping[str, str], cwd: Path) -> Path:
    # Only "~" itself: the home of `environ`, not of os.environ. "~user" is not expanded.
    if path.parts and path.parts[0] == "~":
        path = _home(environ).joinpath(*path.parts[1:])
    return cwd / path


def _check(values: Mapping[str, Any], labels: Mapping[str, str]) -> None:
    """The rules that join several settings; each broken one stops start-up."""
    backend = values["backend.url"]
    if backend and not values["backend.token"]:
        raise SettingsError(
            f"{labels['backend.token']}: a backend token is required with a backend"
            " (backend.url is set)"
        )
    keys = [values["auth.jwtSecret"], *values["auth.jwtSecrets"]]
    if backend and not any(keys):
        raise SettingsError(
            f"{labels['auth.jwtSecret']}: a JWT secret is required with a backend"
            " (set auth.jwtSecret / JWT_SECRET or auth.jwtSecrets / JWT_SECRETS)"
        )
    if not values["auth.allowWeakSecret"]:
        _check_strength(values, labels)
    if values["server.workers"] > 1 and not values["cache.url"]:
        raise SettingsError(
            f"{labels['server.workers']}: {values['server.workers']} workers cannot share"
            " in-process state: Valkey (cache.url / VALKEY_URL) is needed for more than one worker"
        )
    if values["security.enableTls"]:
        needed = ("security.tlsCert", "security.tlsKey")
        missing = [f"{key} ({_BY_KEY[key].name})" for key in needed if values[key] is None]
        if missing:
            verb = "is" if len(missing) == 1 else "are"
            raise SettingsError(
                f"{labels['security.enableTls']}: TLS is enabled but"
                f" {' and '.join(missing)} {verb} not set"
            )
    if values["tools.mode"] == "backend" and not backend:
        raise SettingsError(
            f"{labels['tools.mode']}: the backend tool mode needs a backend"
            " (backend.url / BACKEND_URL)"
        )
    if "backend" in values["audit.sinks"] and not backend:
        raise SettingsError(
            f"{labels['audit.sinks']}: the backend audit sink needs a backend"
            " (backend.url / BACKEND_URL)"
        )


def _check_strength(values: Mapping[str, Any], labels: Mapping[str, str]) -> None:
    for setting, which, size in _weak_secrets(values["auth.jwtSecret"], values["auth.jwtSecrets"]):
        raise SettingsError(
            f"{labels[setting]}: {which} is {size} bytes, shorter than"
            f" {_MIN_SECRET_BYTES} (auth.allowWeakSecret / ALLOW_WEAK_SECRET accepts it)"
        )


def weak_secrets(auth: AuthSettings) -> list[str]:
    """The configured JWT secrets shorter than 32 bytes, each named by its setting and kid
    or position (never shown), as `auth.allowWeakSecret` lets them through."""
    return [
        f"{which} of {setting} is {size} bytes"
        for setting, which, size in _weak_secrets(auth.jwt_secret, auth.jwt_secrets)
    ]


def _weak_secrets(
    jwt_secret: str | None, jwt_secrets: tuple[SigningKey, ...]
) -> Iterator[tuple[str, str, int]]:
    """(setting, which secret, its size in bytes) of each secret shorter than 32 bytes."""
    named: list[tuple[str, str, str]] = []
    if jwt_secret:
        named.append(("auth.jwtSecret", "the secret", jwt_secret))
    for number, key in enumerate(jwt_secrets, start=1):
        which = f'the secret of kid "{key.kid}"' if key.kid else f"secret number {number}"
        named.append(("auth.jwtSecrets", which, key.secret))
    for setting, which, secret in named:
        size = len(secret.encode())
        if size < _MIN_SECRET_BYTES:
            yield setting, which, size


def _nest(values: Mapping[str, Any], file: Path | None) -> dict[str, Any]:
    tree: dict[str, Any] = {"config_file": file}
    for key, value in values.items():
        *groups, attr = _BY_KEY[key].path
        branch = tree
        for group in groups:
            branch = branch.setdefault(group, {})
        branch[attr] = value
    return tree


def _assemble(cls: type[_StructT], tree: Mapping[str, Any]) -> _StructT:
    fields = {field.name: field.type for field in msgspec.structs.fields(cls)}
    return cls(
        **{
            name: _assemble(fields[name], value) if isinstance(value, dict) else value
            for name, value in tree.items()
        }
    )
