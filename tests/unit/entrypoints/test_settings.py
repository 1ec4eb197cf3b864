import textwrap
from collections.abc import Mapping
from pathlib import Path

import msgspec
import pytest

from entrypoints.settings import (
    SETTINGS,
    Settings,
    SettingsError,
    SigningKey,
    load_settings,
    parse_duration,
    settings_reference,
)

HOME = "/home/tester"
DATA = Path(HOME, ".local", "share", "cronium-runtime")
STRONG = "s" * 32
OTHER_STRONG = "t" * 40
WITH_BACKEND = {
    "BACKEND_URL": "http://backend:5001",
    "BACKEND_TOKEN": "service-token",
    "JWT_SECRET": STRONG,
}


def load(
    tmp_path: Path, env: Mapping[str, str] | None = None, yaml_text: str | None = None
) -> Settings:
    if yaml_text is not None:
        (tmp_path / "config.yaml").write_text(textwrap.dedent(yaml_text), encoding="utf-8")
    return load_settings({"HOME": HOME, **(env or {})}, cwd=tmp_path)


def load_error(
    tmp_path: Path, env: Mapping[str, str] | None = None, yaml_text: str | None = None
) -> str:
    with pytest.raises(SettingsError) as caught:
        load(tmp_path, env, yaml_text)
    message = str(caught.value)
    assert "\n" not in message
    return message


def value_of(settings: Settings, key: str) -> object:
    (setting,) = [s for s in SETTINGS if s.key == key]
    value: object = settings
    for attr in setting.path:
        value = getattr(value, attr)
    return value


def config_path(tmp_path: Path) -> Path:
    return tmp_path / "config.yaml"


# --- defaults -----------------------------------------------------------------------------

DEFAULTS: dict[str, object] = {
    "server.host": "0.0.0.0",
    "server.port": 8081,
    "server.workers": 1,
    "server.readTimeout": 30.0,
    "server.writeTimeout": 30.0,
    "server.idleTimeout": 120.0,
    "server.maxBodySize": 10 * 1024 * 1024,
    "server.maxJsonDepth": 64,
    "server.shutdownTimeout": 25.0,
    "server.drainDelay": 5.0,
    "cache.url": None,
    "cache.password": None,
    "cache.db": 0,
    "cache.mode": "standalone",
    "cache.poolSize": 10,
    "cache.connectTimeout": 2.0,
    "cache.commandTimeout": 0.5,
    "cache.sentinelMaster": "mymaster",
    "cache.lockTtl": 5.0,
    "cache.ttl": 300.0,
    "cache.staleWindow": 3600.0,
    "cache.contextMaxSize": 8 * 1024 * 1024,
    "cache.contextTtl": 600.0,
    "backend.url": None,
    "backend.token": None,
    "backend.timeout": 30.0,
    "backend.maxRetries": 3,
    "backend.retryDelay": 1.0,
    "backend.breakerFailures": 5,
    "backend.breakerCooldown": 30.0,
    "auth.jwtSecret": None,
    "auth.jwtSecrets": (),
    "auth.leeway": 30.0,
    "auth.issuers": None,
    "auth.audience": None,
    "auth.allowWeakSecret": False,
    "auth.internalToken": None,
    "auth.maxTokenLifetime": 24 * 3600.0,
    "auth.revocationRefresh": 0.5,
    "auth.tokenExpiration": 3600.0,
    "store.path": DATA,
    "embedded.userId": "local",
    "audit.sinks": ("store",),
    "audit.key": None,
    "audit.failClosed": False,
    "audit.filePath": DATA / "audit.jsonl",
    "audit.fileMaxSize": 100 * 1024 * 1024,
    "audit.fileBackups": 5,
    "audit.spoolPath": DATA / "audit-spool.jsonl",
    "audit.streamMaxAge": 7 * 86400.0,
    "audit.claimIdle": 60.0,
    "audit.shipConcurrency": 4,
    "audit.shipRetryMax": 300.0,
    "metrics.multiprocessDir": None,
    "idempotency.ttl": 24 * 3600.0,
    "tools.mode": "builtin",
    "tools.dryRun": False,
    "tools.timeout": 10.0,
    "tools.webhook.url": None,
    "tools.slack.webhookUrl": None,
    "tools.discord.webhookUrl": None,
    "tools.email.host": None,
    "tools.email.port": 587,
    "tools.email.username": None,
    "tools.email.password": None,
    "tools.email.from": None,
    "tools.email.starttls": True,
    "logging.level": "info",
    "logging.format": "json",
    "security.enableCors": True,
    "security.allowedOrigins": ("*",),
    "security.allowedMethods": ("GET", "POST", "PUT", "DELETE", "OPTIONS"),
    "security.allowedHeaders": ("*",),
    "security.rateLimitPerMin": 1000,
    "security.rateLimitLeaseTtl": 2.0,
    "security.rateLimitLeaseMax": 32,
    "security.enableTls": False,
    "security.tlsCert": None,
    "security.tlsKey": None,
}


@pytest.mark.parametrize(("key", "expected"), DEFAULTS.items())
def test_with_no_file_and_no_environment_every_setting_has_the_default_of_the_spec(
    tmp_path: Path, key: str, expected: object
) -> None:
    settings = load(tmp_path)

    assert value_of(settings, key) == expected


def test_the_default_test_covers_every_row_of_the_table() -> None:
    assert set(DEFAULTS) == {setting.key for setting in SETTINGS}


def test_without_a_config_file_none_is_recorded(tmp_path: Path) -> None:
    settings = load(tmp_path)

    assert settings.config_file is None


def test_no_two_settings_read_the_same_environment_variable() -> None:
    names = [name for setting in SETTINGS for name in setting.variables]

    assert len(names) == len(set(names))


# --- environment names and precedence -----------------------------------------------------


@pytest.mark.parametrize("variable", ["RUNTIME_PORT", "RUNTIME_SERVER_PORT", "PORT"])
def test_each_of_the_three_environment_names_sets_a_setting(tmp_path: Path, variable: str) -> None:
    settings = load(tmp_path, {variable: "9000"})

    assert settings.server.port == 9000


@pytest.mark.parametrize(
    ("variable", "key", "value"),
    [
        ("RUNTIME_AUTH_JWT_SECRET", "auth.jwtSecret", STRONG),
        ("RUNTIME_CACHE_VALKEY_URL", "cache.url", "valkey://valkey:6379"),
        ("RUNTIME_TOOLS_TOOLS_EMAIL_HOST", "tools.email.host", "smtp.example.com"),
        ("RUNTIME_METRICS_PROMETHEUS_MULTIPROC_DIR", "metrics.multiprocessDir", Path("/m")),
    ],
)
def test_the_go_binarys_section_names_are_read(
    tmp_path: Path, variable: str, key: str, value: object
) -> None:
    settings = load(tmp_path, {variable: str(value)})

    assert value_of(settings, key) == value


def test_the_go_binarys_name_for_the_backend_url_is_read(tmp_path: Path) -> None:
    env = {**WITH_BACKEND, "BACKEND_URL": "", "RUNTIME_BACKEND_BACKEND_URL": "http://b:5001"}

    settings = load(tmp_path, env)

    assert settings.backend.url == "http://b:5001"


def test_runtime_name_wins_over_the_section_name_and_the_bare_name(tmp_path: Path) -> None:
    env = {"RUNTIME_PORT": "9001", "RUNTIME_SERVER_PORT": "9002", "PORT": "9003"}

    settings = load(tmp_path, env)

    assert settings.server.port == 9001


def test_the_section_name_wins_over_the_bare_name(tmp_path: Path) -> None:
    settings = load(tmp_path, {"RUNTIME_SERVER_PORT": "9002", "PORT": "9003"})

    assert settings.server.port == 9002


def test_an_empty_environment_variable_counts_as_unset(tmp_path: Path) -> None:
    settings = load(tmp_path, {"RUNTIME_PORT": "", "PORT": "9003"})

    assert settings.server.port == 9003


def test_a_yaml_value_beats_the_default(tmp_path: Path) -> None:
    settings = load(tmp_path, yaml_text="server:\n  port: 9000\n")

    assert settings.server.port == 9000
    assert settings.config_file == config_path(tmp_path)


def test_the_environment_beats_the_yaml_value(tmp_path: Path) -> None:
    settings = load(tmp_path, {"PORT": "9100"}, yaml_text="server:\n  port: 9000\n")

    assert settings.server.port == 9100


def test_a_yaml_value_survives_when_its_environment_variable_is_unset(tmp_path: Path) -> None:
    yaml_text = """
        server:
          readTimeout: 5s
        logging:
          level: debug
    """

    settings = load(tmp_path, {"PORT": "9100"}, yaml_text=yaml_text)

    assert settings.server.read_timeout == 5.0
    assert settings.logging.level == "debug"


def test_a_yaml_value_survives_when_its_environment_variable_is_empty(tmp_path: Path) -> None:
    settings = load(tmp_path, {"LOG_LEVEL": ""}, yaml_text="logging:\n  level: error\n")

    assert settings.logging.level == "error"


def test_an_empty_yaml_value_counts_as_unset(tmp_path: Path) -> None:
    settings = load(tmp_path, yaml_text="backend:\n  url: ''\nsecurity:\n  allowedOrigins: []\n")

    assert settings.backend.url is None
    assert settings.security.allowed_origins == ("*",)


def test_every_section_and_nested_tool_is_read_from_yaml(tmp_path: Path) -> None:
    yaml_text = f"""
        server: {{maxBodySize: 1MiB}}
        cache: {{url: "valkey://v:6379", mode: cluster}}
        backend: {{url: "https://b", token: tok}}
        auth: {{jwtSecret: {STRONG}, issuers: [cronium-orchestrator]}}
        store: {{path: /srv/state}}
        embedded: {{userId: alice}}
        audit: {{failClosed: true}}
        metrics: {{multiprocessDir: /tmp/prom}}
        idempotency: {{ttl: 1h}}
        tools:
          dryRun: yes
          webhook: {{url: "https://hooks.example.com/x"}}
          slack: {{webhookUrl: "https://hooks.slack.com/x"}}
          discord: {{webhookUrl: "https://discord.com/api/webhooks/x"}}
          email: {{host: smtp.example.com, from: bot@example.com, starttls: false}}
        logging: {{format: text}}
        security: {{rateLimitPerMin: 10}}
    """

    settings = load(tmp_path, yaml_text=yaml_text)

    assert settings.server.max_body_size == 1024 * 1024
    assert settings.cache.mode == "cluster"
    assert settings.backend.url == "https://b"
    assert settings.auth.issuers == ("cronium-orchestrator",)
    assert settings.store.path == Path("/srv/state")
    assert settings.embedded.user_id == "alice"
    assert settings.audit.fail_closed is True
    assert settings.metrics.multiprocess_dir == Path("/tmp/prom")
    assert settings.idempotency.ttl == 3600.0
    assert settings.tools.dry_run is True
    assert settings.tools.webhook.url == "https://hooks.example.com/x"
    assert settings.tools.slack.webhook_url == "https://hooks.slack.com/x"
    assert settings.tools.discord.webhook_url == "https://discord.com/api/webhooks/x"
    assert settings.tools.email.from_address == "bot@example.com"
    assert settings.tools.email.starttls is False
    assert settings.logging.format == "text"
    assert settings.security.rate_limit_per_min == 10


# --- the config file ----------------------------------------------------------------------


def test_config_file_names_the_yaml_file_relative_to_the_working_directory(
    tmp_path: Path,
) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "runtime.yaml").write_text("server:\n  port: 7000\n")

    settings = load(tmp_path, {"CONFIG_FILE": "conf/runtime.yaml"})

    assert settings.server.port == 7000
    assert settings.config_file == tmp_path / "conf" / "runtime.yaml"


def test_a_config_file_that_does_not_exist_stops_start_up(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"CONFIG_FILE": "missing.yaml"})

    assert message == f'CONFIG_FILE: "missing.yaml" does not exist ({tmp_path / "missing.yaml"})'


def test_runtime_config_file_is_read_before_config_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("server:\n  port: 7001\n")

    settings = load(tmp_path, {"RUNTIME_CONFIG_FILE": "a.yaml", "CONFIG_FILE": "missing.yaml"})

    assert settings.server.port == 7001


def test_config_file_is_read_before_config_yaml_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "other.yaml").write_text("server:\n  port: 7002\n")

    settings = load(tmp_path, {"CONFIG_FILE": "other.yaml"}, yaml_text="server:\n  port: 7003\n")

    assert settings.server.port == 7002


def test_the_config_file_argument_beats_the_environment(tmp_path: Path) -> None:
    (tmp_path / "arg.yaml").write_text("server:\n  port: 7004\n")

    settings = load_settings(
        {"CONFIG_FILE": "missing.yaml"}, config_file=tmp_path / "arg.yaml", cwd=tmp_path
    )

    assert settings.server.port == 7004


def test_a_config_file_argument_that_does_not_exist_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings({}, config_file="nope.yaml", cwd=tmp_path)


def test_config_yaml_is_looked_for_in_the_current_directory_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path(tmp_path).write_text("server:\n  port: 7005\n")
    monkeypatch.chdir(tmp_path)

    settings = load_settings({"HOME": HOME})

    assert settings.server.port == 7005


def test_an_unknown_yaml_key_stops_start_up_naming_it(tmp_path: Path) -> None:
    message = load_error(tmp_path, yaml_text="server:\n  prot: 9000\n")

    assert message == (
        f'{config_path(tmp_path)}: unknown setting "server.prot" (did you mean server.port?)'
    )


def test_a_snake_case_yaml_key_is_refused_with_the_camel_case_one_suggested(
    tmp_path: Path,
) -> None:
    message = load_error(tmp_path, yaml_text="server:\n  max_body_size: 1MiB\n")

    assert message.endswith(
        'unknown setting "server.max_body_size" (did you mean server.maxBodySize?)'
    )


def test_an_unknown_yaml_section_stops_start_up(tmp_path: Path) -> None:
    message = load_error(tmp_path, yaml_text="telemetry:\n  on: true\n")

    assert message == f'{config_path(tmp_path)}: unknown setting "telemetry"'


def test_an_unknown_key_inside_a_nested_tool_is_named_with_its_whole_path(tmp_path: Path) -> None:
    message = load_error(tmp_path, yaml_text="tools:\n  email:\n    sender: a@b\n")

    assert 'unknown setting "tools.email.sender"' in message


def test_yaml_that_is_not_a_mapping_stops_start_up(tmp_path: Path) -> None:
    message = load_error(tmp_path, yaml_text="- server\n- cache\n")

    assert (
        message == f"{config_path(tmp_path)}: is not a mapping of settings (server:, cache:, ...)"
    )


def test_a_section_that_is_not_a_mapping_stops_start_up(tmp_path: Path) -> None:
    message = load_error(tmp_path, yaml_text="server: 8081\n")

    assert message == f"server in {config_path(tmp_path)}: is not a mapping of settings"


def test_unparsable_yaml_stops_start_up_with_the_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, yaml_text="server:\n  port: [8081\n")

    assert message.startswith(f"{config_path(tmp_path)}: not valid YAML at line ")


def test_a_config_file_that_is_not_utf8_stops_start_up(tmp_path: Path) -> None:
    config_path(tmp_path).write_bytes(b"server:\n  host: \xff\n")

    message = load_error(tmp_path)

    assert message == f"{config_path(tmp_path)}: cannot be read: it is not UTF-8"


def test_a_config_file_that_is_a_folder_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()

    message = load_error(tmp_path, {"CONFIG_FILE": "conf.d"})

    assert message.startswith(f"{tmp_path / 'conf.d'}: cannot be read: ")


@pytest.mark.parametrize("yaml_text", ["", "# nothing yet\n", "server:\n"])
def test_an_empty_config_file_or_empty_section_leaves_the_defaults(
    tmp_path: Path, yaml_text: str
) -> None:
    settings = load(tmp_path, yaml_text=yaml_text)

    assert settings.server.port == 8081
    assert settings.config_file == config_path(tmp_path)


# --- parsers ------------------------------------------------------------------------------


def test_a_kubernetes_service_link_in_runtime_port_stops_start_up_naming_the_variable(
    tmp_path: Path,
) -> None:
    message = load_error(tmp_path, {"RUNTIME_PORT": "tcp://10.0.0.1:8081"})

    assert (
        message
        == 'RUNTIME_PORT (server.port): "tcp://10.0.0.1:8081" is not a port number (1-65535)'
    )


@pytest.mark.parametrize("value", ["0", "65536", "80.5", "http"])
def test_a_port_outside_1_to_65535_is_refused(tmp_path: Path, value: str) -> None:
    message = load_error(tmp_path, {"TOOLS_EMAIL_PORT": value})

    assert message == (
        f'TOOLS_EMAIL_PORT (tools.email.port): "{value}" is not a port number (1-65535)'
    )


def test_a_port_may_be_quoted_in_yaml(tmp_path: Path) -> None:
    settings = load(tmp_path, yaml_text="server:\n  port: '8082'\n")

    assert settings.server.port == 8082


def test_a_bad_yaml_value_is_named_by_its_key_and_file(tmp_path: Path) -> None:
    message = load_error(tmp_path, yaml_text="server:\n  port: true\n")

    assert message == f"server.port in {config_path(tmp_path)}: true is not a port number (1-65535)"


@pytest.mark.parametrize(
    ("variable", "value", "minimum"),
    [
        ("WORKERS", "0", 1),
        ("MAX_JSON_DEPTH", "0", 1),
        ("RATE_LIMIT_PER_MIN", "0", 1),
        ("VALKEY_DB", "-1", 0),
        ("BACKEND_MAX_RETRIES", "three", 0),
    ],
)
def test_a_count_below_its_minimum_or_not_a_number_is_refused(
    tmp_path: Path, variable: str, value: str, minimum: int
) -> None:
    message = load_error(tmp_path, {variable: value})

    assert message.startswith(f"{variable} (")
    assert message.endswith(f'"{value}" is not a whole number of at least {minimum}')


def test_a_fractional_number_in_yaml_is_not_a_whole_number(tmp_path: Path) -> None:
    message = load_error(tmp_path, yaml_text="cache:\n  poolSize: 2.5\n")

    assert message.endswith(": 2.5 is not a whole number of at least 1")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("On", True),
        ("false", False),
        ("0", False),
        ("No", False),
        ("off", False),
    ],
)
def test_booleans_are_read_in_every_common_spelling(
    tmp_path: Path, value: str, expected: bool
) -> None:
    settings = load(tmp_path, {"TOOLS_DRY_RUN": value})

    assert settings.tools.dry_run is expected


def test_a_yaml_number_0_or_1_is_a_boolean(tmp_path: Path) -> None:
    settings = load(tmp_path, yaml_text="security:\n  enableCors: 0\n")

    assert settings.security.enable_cors is False


def test_a_word_that_is_not_a_boolean_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"ENABLE_CORS": "maybe"})

    assert message == (
        'ENABLE_CORS (security.enableCors): "maybe" is not true or false'
        " (true/false, yes/no, on/off, 1/0)"
    )


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("24h", 86400.0),
        ("7d", 604800.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("45", 45.0),
        ("0.5", 0.5),
        (" 2s ", 2.0),
    ],
)
def test_durations_are_read_with_units_or_as_seconds(
    tmp_path: Path, value: str, seconds: float
) -> None:
    settings = load(tmp_path, {"BACKEND_TIMEOUT": value})

    assert settings.backend.timeout == pytest.approx(seconds)


def test_a_yaml_number_is_a_duration_in_seconds(tmp_path: Path) -> None:
    settings = load(tmp_path, yaml_text="server:\n  readTimeout: 2\n  writeTimeout: 0.5\n")

    assert settings.server.read_timeout == 2.0
    assert settings.server.request_deadline == 2.5


@pytest.mark.parametrize("value", ["30 seconds", "-5s", "5x", "1h-30m", "s"])
def test_a_value_that_is_not_a_duration_is_refused(tmp_path: Path, value: str) -> None:
    message = load_error(tmp_path, {"CACHE_TTL": value})

    assert message == (
        f'CACHE_TTL (cache.ttl): "{value}" is not a duration'
        " (like 250ms, 30s, 5m, 1h, 7d, or a number of seconds)"
    )


@pytest.mark.parametrize("yaml_value", ["-1", "true", ".inf", "[1]"])
def test_a_yaml_value_that_is_not_a_duration_is_refused(tmp_path: Path, yaml_value: str) -> None:
    message = load_error(tmp_path, yaml_text=f"auth:\n  leeway: {yaml_value}\n")

    assert message.startswith(f"auth.leeway in {config_path(tmp_path)}: ")
    assert "is not a duration" in message


def test_parse_duration_reads_the_settings_durations_for_the_command_line() -> None:
    assert parse_duration("1h30m") == 5400.0


def test_parse_duration_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match=r'^"2 hours" is not a duration \(like 250ms'):
        parse_duration("2 hours")


def test_a_timeout_of_zero_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"READ_TIMEOUT": "0s"})

    assert message == 'READ_TIMEOUT (server.readTimeout): "0s" is not a duration longer than zero'


def test_a_delay_of_zero_is_accepted(tmp_path: Path) -> None:
    settings = load(tmp_path, {"DRAIN_DELAY": "0", "BACKEND_RETRY_DELAY": "0ms"})

    assert settings.server.drain_delay == 0.0
    assert settings.backend.retry_delay == 0.0


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("512KiB", 512 * 1024),
        ("10MiB", 10 * 1024 * 1024),
        ("1GiB", 1024**3),
        ("100KB", 100_000),
        ("2MB", 2_000_000),
        ("1gb", 1_000_000_000),
        ("1.5MiB", 1536 * 1024),
        ("2048", 2048),
        ("64 B", 64),
    ],
)
def test_sizes_are_read_in_binary_and_decimal_units_or_as_bytes(
    tmp_path: Path, value: str, size: int
) -> None:
    settings = load(tmp_path, {"MAX_BODY_SIZE": value})

    assert settings.server.max_body_size == size


def test_a_yaml_list_is_not_a_size(tmp_path: Path) -> None:
    message = load_error(tmp_path, yaml_text="server:\n  maxBodySize: [1, MiB]\n")

    assert message.endswith(
        ": a list is not a size (like 512KiB, 10MiB, 1GiB, 100KB, or a number of bytes)"
    )


def test_a_yaml_date_is_shown_as_written(tmp_path: Path) -> None:
    message = load_error(tmp_path, yaml_text="server:\n  port: 2026-11-28\n")

    assert message.endswith(': "2026-11-28" is not a port number (1-65535)')


def test_a_yaml_number_is_a_size_in_bytes(tmp_path: Path) -> None:
    settings = load(tmp_path, yaml_text="audit:\n  fileMaxSize: 4096\n")

    assert settings.audit.file_max_size == 4096


@pytest.mark.parametrize("value", ["10 parsecs", "0", "-1", "1.5XB", "MiB"])
def test_a_value_that_is_not_a_size_is_refused(tmp_path: Path, value: str) -> None:
    message = load_error(tmp_path, {"AUDIT_FILE_MAX_SIZE": value})

    assert message == (
        f'AUDIT_FILE_MAX_SIZE (audit.fileMaxSize): "{value}" is not a size'
        " (like 512KiB, 10MiB, 1GiB, 100KB, or a number of bytes)"
    )


def test_an_environment_list_is_comma_separated_and_trimmed(tmp_path: Path) -> None:
    settings = load(tmp_path, {"ALLOWED_ORIGINS": "https://a.example, https://b.example,,"})

    assert settings.security.allowed_origins == ("https://a.example", "https://b.example")


def test_a_yaml_list_is_read_as_a_list(tmp_path: Path) -> None:
    settings = load(tmp_path, yaml_text="security:\n  allowedMethods: [GET, POST]\n")

    assert settings.security.allowed_methods == ("GET", "POST")


def test_a_list_that_names_nothing_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"JWT_ISSUERS": " , "})

    assert message == 'JWT_ISSUERS (auth.issuers): " , " names nothing'


def test_a_yaml_list_item_that_is_not_text_is_named(tmp_path: Path) -> None:
    message = load_error(tmp_path, yaml_text="security:\n  allowedHeaders: [X-A, 12]\n")

    assert message.endswith(": 12 is not text (quote it in the YAML file)")


def test_a_yaml_mapping_where_a_list_belongs_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, yaml_text="auth:\n  issuers: {a: 1}\n")

    assert message.endswith(
        ": a mapping is not a list (a YAML list, or comma-separated in the environment)"
    )


def test_a_yaml_number_where_text_belongs_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, yaml_text="embedded:\n  userId: 42\n")

    assert message == (
        f"embedded.userId in {config_path(tmp_path)}: 42 is not text (quote it in the YAML file)"
    )


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("debug", "debug"),
        ("INFO", "info"),
        ("warn", "warning"),
        ("Warning", "warning"),
        ("error", "error"),
    ],
)
def test_log_levels_are_normalised(tmp_path: Path, value: str, level: str) -> None:
    settings = load(tmp_path, {"LOG_LEVEL": value})

    assert settings.logging.level == level


def test_an_unknown_log_level_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"LOG_LEVEL": "verbose"})

    assert (
        message == 'LOG_LEVEL (logging.level): "verbose" is not one of debug, info, warning, error'
    )


@pytest.mark.parametrize("mode", ["standalone", "cluster", "Sentinel"])
def test_the_cache_modes_are_accepted(tmp_path: Path, mode: str) -> None:
    settings = load(tmp_path, {"VALKEY_MODE": mode})

    assert settings.cache.mode == mode.lower()


def test_an_unknown_enum_value_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"VALKEY_MODE": "ring"})

    assert message == (
        'VALKEY_MODE (cache.mode): "ring" is not one of standalone, cluster, sentinel'
    )


def test_a_yaml_number_is_not_an_enum_value(tmp_path: Path) -> None:
    message = load_error(tmp_path, yaml_text="logging:\n  format: 1\n")

    assert message.endswith(": 1 is not one of json, text")


@pytest.mark.parametrize(
    "url",
    ["valkey://v:6379", "valkeys://v:6380/0", "redis://:pw@v:6379", "rediss://user:pw@v"],
)
def test_every_valkey_url_scheme_is_accepted(tmp_path: Path, url: str) -> None:
    settings = load(tmp_path, {"VALKEY_URL": url})

    assert settings.cache.url == url
    assert settings.uses_valkey is True


@pytest.mark.parametrize("url", ["http://v:6379", "v:6379", "valkey://", "valkey://v:port"])
def test_a_cache_url_that_does_not_name_a_valkey_server_is_refused(
    tmp_path: Path, url: str
) -> None:
    message = load_error(tmp_path, {"VALKEY_URL": url})

    assert message == (
        f'VALKEY_URL (cache.url): "{url}" is not a Valkey URL'
        " (valkey://, valkeys://, redis:// or rediss://)"
    )


def test_a_password_in_a_bad_url_is_not_shown(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"VALKEY_URL": "http://:hunter2@v:6379"})

    assert "hunter2" not in message
    assert '"http://:***@v:6379"' in message


@pytest.mark.parametrize("url", ["ftp://backend", "http://", "backend:5001", "http://[::1"])
def test_a_backend_url_that_is_not_http_is_refused(tmp_path: Path, url: str) -> None:
    message = load_error(tmp_path, {**WITH_BACKEND, "BACKEND_URL": url})

    assert message == f'BACKEND_URL (backend.url): "{url}" is not an http:// or https:// URL'


def test_a_trailing_slash_is_dropped_from_the_backend_url(tmp_path: Path) -> None:
    settings = load(tmp_path, {**WITH_BACKEND, "BACKEND_URL": "https://cronium.example/"})

    assert settings.backend.url == "https://cronium.example"


def test_a_bad_webhook_url_is_refused_without_showing_it(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"TOOLS_SLACK_WEBHOOK_URL": "hooks.slack.com/T000/SECRET"})

    assert message == (
        "TOOLS_SLACK_WEBHOOK_URL (tools.slack.webhookUrl): the value"
        " is not an http:// or https:// URL"
    )


def test_a_relative_path_is_taken_from_the_working_directory(tmp_path: Path) -> None:
    settings = load(tmp_path, {"STORE_PATH": "state"})

    assert settings.store.path == tmp_path / "state"


def test_a_path_starting_with_a_tilde_is_under_home_of_the_given_environment(
    tmp_path: Path,
) -> None:
    settings = load(tmp_path, {"TLS_CERT": "~/tls/cert.pem"})

    assert settings.security.tls_cert == Path(HOME, "tls", "cert.pem")


def test_a_long_bad_value_is_shortened_in_the_message(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"PORT": "9" * 200})

    assert '"' + "9" * 77 + '..."' in message


# --- JWT secrets --------------------------------------------------------------------------


def test_jwt_secrets_entries_are_kid_equals_secret_or_a_bare_secret(tmp_path: Path) -> None:
    settings = load(tmp_path, {"JWT_SECRETS": f"k1={STRONG}, {OTHER_STRONG}"})

    assert settings.auth.jwt_secrets == (
        SigningKey(kid="k1", secret=STRONG),
        SigningKey(kid=None, secret=OTHER_STRONG),
    )


def test_a_bare_base64_secret_keeps_its_padding(tmp_path: Path) -> None:
    padded = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0cw=="

    settings = load(tmp_path, {"JWT_SECRETS": f"{padded},k2={padded}"})

    assert settings.auth.jwt_secrets == (
        SigningKey(kid=None, secret=padded),
        SigningKey(kid="k2", secret=padded),
    )


def test_a_jwt_secrets_entry_with_an_empty_kid_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"JWT_SECRETS": f"={STRONG}"})

    assert message == "JWT_SECRETS (auth.jwtSecrets): the value has an entry with an empty kid"
    assert STRONG not in message


def test_a_kid_named_twice_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"JWT_SECRETS": f"a={STRONG},a={OTHER_STRONG}"})

    assert message == 'JWT_SECRETS (auth.jwtSecrets): the value names kid "a" more than once'


def test_yaml_jwt_secrets_are_kid_and_secret_mappings(tmp_path: Path) -> None:
    yaml_text = f"""
        auth:
          jwtSecrets:
            - {{kid: "2026-01", secret: {STRONG}}}
            - {{secret: {OTHER_STRONG}}}
            - {OTHER_STRONG}x
    """

    settings = load(tmp_path, yaml_text=yaml_text)

    assert settings.auth.jwt_secrets == (
        SigningKey(kid="2026-01", secret=STRONG),
        SigningKey(kid=None, secret=OTHER_STRONG),
        SigningKey(kid=None, secret=f"{OTHER_STRONG}x"),
    )


def test_a_yaml_jwt_secrets_string_is_read_like_the_environment(tmp_path: Path) -> None:
    settings = load(tmp_path, yaml_text=f"auth:\n  jwtSecrets: 'k1={STRONG}'\n")

    assert settings.auth.jwt_secrets == (SigningKey(kid="k1", secret=STRONG),)


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        ("[{kid: a}]", "has an entry without a secret"),
        (f"[{{kid: a, secret: {STRONG}, alg: HS256}}]", 'the unknown field "alg"'),
        (f"[{{kid: 7, secret: {STRONG}}}]", "has an entry whose kid is not text"),
        ("[12]", "has an entry that is neither a secret nor a {kid, secret} mapping"),
        ("12", "is not a list of {kid, secret} mappings or of kid=secret entries"),
    ],
)
def test_a_malformed_yaml_jwt_secrets_list_is_refused_without_showing_secrets(
    tmp_path: Path, entries: str, problem: str
) -> None:
    message = load_error(tmp_path, yaml_text=f"auth:\n  jwtSecrets: {entries}\n")

    assert message.startswith(f"auth.jwtSecrets in {config_path(tmp_path)}: the value ")
    assert problem in message
    assert STRONG not in message


def test_signing_keys_put_the_single_secret_first(tmp_path: Path) -> None:
    settings = load(tmp_path, {"JWT_SECRET": STRONG, "JWT_SECRETS": f"k1={OTHER_STRONG}"})

    assert settings.auth.signing_keys == (
        SigningKey(kid=None, secret=STRONG),
        SigningKey(kid="k1", secret=OTHER_STRONG),
    )


def test_without_any_secret_there_are_no_signing_keys(tmp_path: Path) -> None:
    settings = load(tmp_path)

    assert settings.auth.signing_keys == ()


# --- derived defaults ---------------------------------------------------------------------


def test_with_a_backend_tools_and_audit_go_to_the_backend(tmp_path: Path) -> None:
    settings = load(tmp_path, WITH_BACKEND)

    assert settings.tools.mode == "backend"
    assert settings.audit.sinks == ("backend",)
    assert settings.embedded_mode is False


def test_without_a_backend_tools_are_builtin_and_audit_goes_to_the_store(tmp_path: Path) -> None:
    settings = load(tmp_path)

    assert settings.tools.mode == "builtin"
    assert settings.audit.sinks == ("store",)
    assert settings.embedded_mode is True


def test_builtin_tools_may_be_chosen_with_a_backend(tmp_path: Path) -> None:
    settings = load(tmp_path, {**WITH_BACKEND, "TOOLS_MODE": "builtin"})

    assert settings.tools.mode == "builtin"


def test_audit_sinks_are_deduplicated_in_order(tmp_path: Path) -> None:
    settings = load(tmp_path, {"AUDIT_SINKS": "file, stdout, FILE"})

    assert settings.audit.sinks == ("file", "stdout")


def test_an_unknown_audit_sink_is_named(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"AUDIT_SINKS": "store,kafka"})

    assert message == (
        'AUDIT_SINKS (audit.sinks): "kafka" is not one of backend, store, file, stdout'
    )


def test_audit_sinks_that_name_nothing_are_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"AUDIT_SINKS": ","})

    assert message == 'AUDIT_SINKS (audit.sinks): "," names none of backend, store, file, stdout'


def test_the_internal_token_defaults_to_the_backend_token(tmp_path: Path) -> None:
    settings = load(tmp_path, WITH_BACKEND)

    assert settings.auth.internal_token == "service-token"


def test_an_internal_token_of_its_own_beats_the_backend_token(tmp_path: Path) -> None:
    settings = load(tmp_path, {**WITH_BACKEND, "INTERNAL_TOKEN": "internal"})

    assert settings.auth.internal_token == "internal"


def test_the_store_is_under_xdg_data_home_when_it_is_set(tmp_path: Path) -> None:
    settings = load(tmp_path, {"XDG_DATA_HOME": "/xdg/data"})

    assert settings.store.path == Path("/xdg/data/cronium-runtime")


def test_a_relative_xdg_data_home_is_ignored(tmp_path: Path) -> None:
    settings = load(tmp_path, {"XDG_DATA_HOME": "relative/data"})

    assert settings.store.path == DATA


def test_without_home_in_the_environment_the_users_home_is_used(tmp_path: Path) -> None:
    settings = load_settings({}, cwd=tmp_path)

    assert settings.store.path == Path.home() / ".local" / "share" / "cronium-runtime"


def test_the_audit_files_follow_the_store_path(tmp_path: Path) -> None:
    settings = load(tmp_path, {"STORE_PATH": "/var/lib/runtime"})

    assert settings.audit.file_path == Path("/var/lib/runtime/audit.jsonl")
    assert settings.audit.spool_path == Path("/var/lib/runtime/audit-spool.jsonl")


def test_audit_files_of_their_own_beat_the_store_path(tmp_path: Path) -> None:
    env = {"STORE_PATH": "/var/lib/runtime", "AUDIT_FILE": "/logs/a.jsonl", "AUDIT_SPOOL": "/s"}

    settings = load(tmp_path, env)

    assert settings.audit.file_path == Path("/logs/a.jsonl")
    assert settings.audit.spool_path == Path("/s")


# --- cross-field rules --------------------------------------------------------------------


def test_a_backend_without_a_jwt_secret_stops_start_up(tmp_path: Path) -> None:
    message = load_error(tmp_path, {**WITH_BACKEND, "JWT_SECRET": ""})

    assert message == (
        "auth.jwtSecret (JWT_SECRET): a JWT secret is required with a backend"
        " (set auth.jwtSecret / JWT_SECRET or auth.jwtSecrets / JWT_SECRETS)"
    )


def test_a_backend_with_only_jwt_secrets_is_enough(tmp_path: Path) -> None:
    env = {**WITH_BACKEND, "JWT_SECRET": "", "JWT_SECRETS": f"k1={STRONG}"}

    settings = load(tmp_path, env)

    assert settings.auth.jwt_secret is None


def test_a_backend_without_a_token_stops_start_up(tmp_path: Path) -> None:
    message = load_error(tmp_path, {**WITH_BACKEND, "BACKEND_TOKEN": ""})

    assert message == (
        "backend.token (BACKEND_TOKEN): a backend token is required with a backend"
        " (backend.url is set)"
    )


def test_a_short_jwt_secret_stops_start_up_naming_the_setting_that_allows_it(
    tmp_path: Path,
) -> None:
    message = load_error(tmp_path, {"RUNTIME_JWT_SECRET": "too-short"})

    assert message == (
        "RUNTIME_JWT_SECRET (auth.jwtSecret): the secret is 9 bytes, shorter than 32"
        " (auth.allowWeakSecret / ALLOW_WEAK_SECRET accepts it)"
    )


def test_a_short_secret_in_jwt_secrets_is_named_by_its_kid(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"JWT_SECRETS": f"{STRONG},old=short"})

    assert 'the secret of kid "old" is 5 bytes' in message
    assert "short," not in message


def test_a_short_secret_without_a_kid_is_named_by_its_position(tmp_path: Path) -> None:
    yaml_text = f"auth:\n  jwtSecrets: [{STRONG}, short]\n"

    message = load_error(tmp_path, yaml_text=yaml_text)

    assert message.startswith(f"auth.jwtSecrets in {config_path(tmp_path)}: secret number 2 is")


def test_secret_length_is_counted_in_bytes(tmp_path: Path) -> None:
    settings = load(tmp_path, {"JWT_SECRET": "é" * 16})

    assert settings.auth.jwt_secret == "é" * 16


def test_allow_weak_secret_accepts_a_short_secret(tmp_path: Path) -> None:
    yaml_text = "auth:\n  jwtSecret: short\n  allowWeakSecret: true\n"

    settings = load(tmp_path, {**WITH_BACKEND, "JWT_SECRET": ""}, yaml_text=yaml_text)

    assert settings.auth.jwt_secret == "short"


def test_tls_without_a_certificate_and_key_stops_start_up(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"ENABLE_TLS": "true"})

    assert message == (
        "ENABLE_TLS (security.enableTls): TLS is enabled but security.tlsCert (TLS_CERT)"
        " and security.tlsKey (TLS_KEY) are not set"
    )


def test_tls_without_a_key_stops_start_up(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"ENABLE_TLS": "true", "TLS_CERT": "/tls/cert.pem"})

    assert message.endswith("TLS is enabled but security.tlsKey (TLS_KEY) is not set")


def test_tls_with_a_certificate_and_key_is_accepted(tmp_path: Path) -> None:
    env = {"ENABLE_TLS": "on", "TLS_CERT": "/tls/cert.pem", "TLS_KEY": "/tls/key.pem"}

    settings = load(tmp_path, env)

    assert settings.security.enable_tls is True
    assert settings.security.tls_key == Path("/tls/key.pem")


def test_more_than_one_worker_without_valkey_stops_start_up(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"WORKERS": "4"})

    assert message == (
        "WORKERS (server.workers): 4 workers cannot share in-process state:"
        " Valkey (cache.url / VALKEY_URL) is needed for more than one worker"
    )


def test_more_than_one_worker_with_valkey_is_accepted(tmp_path: Path) -> None:
    settings = load(tmp_path, {"WORKERS": "4", "VALKEY_URL": "valkey://v:6379"})

    assert settings.server.workers == 4


def test_the_backend_tool_mode_without_a_backend_stops_start_up(tmp_path: Path) -> None:
    message = load_error(tmp_path, yaml_text="tools:\n  mode: backend\n")

    assert message == (
        f"tools.mode in {config_path(tmp_path)}: the backend tool mode needs a backend"
        " (backend.url / BACKEND_URL)"
    )


def test_the_backend_audit_sink_without_a_backend_stops_start_up(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"AUDIT_SINKS": "store,backend"})

    assert message == (
        "AUDIT_SINKS (audit.sinks): the backend audit sink needs a backend"
        " (backend.url / BACKEND_URL)"
    )


# --- the settings object ------------------------------------------------------------------


def test_the_request_deadline_is_the_read_and_write_timeouts_together(tmp_path: Path) -> None:
    settings = load(tmp_path, {"READ_TIMEOUT": "10s", "WRITE_TIMEOUT": "250ms"})

    assert settings.server.request_deadline == 10.25


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load(tmp_path)

    with pytest.raises(AttributeError):
        settings.server.port = 1  # type: ignore[misc]


def test_settings_can_be_copied_with_a_change_for_tests(tmp_path: Path) -> None:
    settings = load(tmp_path)

    changed = msgspec.structs.replace(
        settings, server=msgspec.structs.replace(settings.server, port=1)
    )

    assert changed.server.port == 1
    assert settings.server.port == 8081


def test_repr_never_shows_a_credential(tmp_path: Path) -> None:
    env = {
        **WITH_BACKEND,
        "JWT_SECRETS": f"k1={OTHER_STRONG}",
        "VALKEY_URL": "valkey://:valkey-pass@v:6379",
        "TOOLS_EMAIL_PASSWORD": "mail-pass",
    }

    shown = repr(load(tmp_path, env))

    for secret in (STRONG, OTHER_STRONG, "service-token", "valkey-pass", "mail-pass"):
        assert secret not in shown
    assert "valkey://:***@v:6379" in shown
    assert "kid='k1'" in shown


def test_the_reference_table_lists_every_setting_with_its_variables_and_default() -> None:
    reference = settings_reference()

    assert "| server.port | RUNTIME_PORT, RUNTIME_SERVER_PORT, PORT | 8081 |" in reference
    assert "| tools.mode | RUNTIME_TOOLS_MODE, RUNTIME_TOOLS_TOOLS_MODE, TOOLS_MODE |" in reference
    assert "| auth.allowWeakSecret |" in reference
    assert "| security.enableCors | " in reference
    assert len(reference.splitlines()) == len(SETTINGS) + 2
