//! The database schema: its tables, the columns added since the first version (added in
//! place to older databases), and the indexes and triggers over them.

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS device_streams (
    device_id TEXT NOT NULL,
    stream TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    since_seq INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    secret_sha256 TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    used_ms INTEGER,
    used_by TEXT
);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    hostname TEXT NOT NULL,
    os TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    cert_sha256 TEXT NOT NULL UNIQUE,
    cert_serial TEXT NOT NULL,
    enrolled_ms INTEGER NOT NULL,
    last_seen_ms INTEGER,
    revoked_ms INTEGER,
    spool_backlog INTEGER,
    first_seq INTEGER NOT NULL DEFAULT 1,
    policy_version TEXT NOT NULL DEFAULT '',
    clock_skew_ms INTEGER,
    offline_since_ms INTEGER,
    edm_version TEXT NOT NULL DEFAULT '',
    prev_cert_sha256 TEXT,
    cert_issued_ms INTEGER NOT NULL DEFAULT 0,
    cert_expires_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    user TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    action TEXT,
    path TEXT,
    old_path TEXT,
    size INTEGER,
    sha256 TEXT,
    records INTEGER,
    findings TEXT,
    rules TEXT NOT NULL,
    body BLOB NOT NULL,
    hash BLOB,
    prev_hash BLOB,
    corrected_ms INTEGER,
    UNIQUE (device_id, seq)
);
CREATE INDEX IF NOT EXISTS events_sha256 ON events (sha256);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    rule_id TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'new',
    user TEXT NOT NULL,
    device_id TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT,
    records INTEGER NOT NULL,
    event_count INTEGER NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    last_event_seq INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS alerts_open ON alerts (rule_id, device_id, path, status);
CREATE TABLE IF NOT EXISTS edm_sets (
    id INTEGER PRIMARY KEY,
    version TEXT NOT NULL,
    published_ms INTEGER NOT NULL,
    customers INTEGER NOT NULL,
    signed BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS customer_sets (
    id INTEGER PRIMARY KEY,
    version TEXT NOT NULL,
    published_ms INTEGER NOT NULL,
    customers INTEGER NOT NULL,
    piece INTEGER NOT NULL,
    manifest BLOB NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS offboardings (
    user TEXT PRIMARY KEY,
    started_ms INTEGER NOT NULL,
    effective_ms INTEGER NOT NULL,
    lookback_ms INTEGER NOT NULL,
    reason TEXT NOT NULL,
    restored_ms INTEGER
);
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    effective_ms INTEGER NOT NULL,
    signed BLOB NOT NULL,
    delivered_ms INTEGER,
    done_ms INTEGER,
    ok INTEGER,
    receipts TEXT
);
CREATE INDEX IF NOT EXISTS orders_device ON orders (device_id, done_ms);
CREATE TABLE IF NOT EXISTS crm_polls (
    connector TEXT PRIMARY KEY,
    cursor_ms INTEGER NOT NULL,
    polled_ms INTEGER,
    ok INTEGER NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS connector_runs (
    id INTEGER PRIMARY KEY,
    user TEXT NOT NULL,
    event TEXT NOT NULL,
    connector TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    next_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'pending',
    last_ms INTEGER,
    last_code INTEGER,
    last_detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS connector_runs_due ON connector_runs (status, next_ms);
CREATE TABLE IF NOT EXISTS handed_over (
    user TEXT NOT NULL,
    connector TEXT NOT NULL,
    external_userid TEXT NOT NULL,
    successor TEXT NOT NULL,
    state TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    PRIMARY KEY (user, connector, external_userid)
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    origin TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_append_only_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    once INTEGER NOT NULL DEFAULT 0,
    last_used_ms INTEGER,
    used_ms INTEGER,
    revoked_ms INTEGER
);
CREATE TABLE IF NOT EXISTS sessions (
    id_sha256 TEXT PRIMARY KEY,
    token_name TEXT NOT NULL,
    role TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_notes (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    author TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_notes_alert ON alert_notes (alert_id);
CREATE TABLE IF NOT EXISTS forward_cursors (
    name TEXT PRIMARY KEY,
    last_alert_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS policy_bundles (
    id INTEGER PRIMARY KEY,
    version TEXT NOT NULL,
    issued_ms INTEGER NOT NULL,
    published_ms INTEGER NOT NULL,
    files INTEGER NOT NULL,
    signed BLOB NOT NULL
);
";

/// Columns added after the first schema: added in place to databases created before them.
pub(super) const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("devices", "first_seq", "INTEGER NOT NULL DEFAULT 1"),
    ("devices", "policy_version", "TEXT NOT NULL DEFAULT ''"),
    ("devices", "clock_skew_ms", "INTEGER"),
    ("devices", "offline_since_ms", "INTEGER"),
    ("devices", "prev_cert_sha256", "TEXT"),
    ("devices", "cert_issued_ms", "INTEGER NOT NULL DEFAULT 0"),
    ("devices", "cert_expires_ms", "INTEGER NOT NULL DEFAULT 0"),
    ("events", "hash", "BLOB"),
    ("events", "prev_hash", "BLOB"),
    ("events", "corrected_ms", "INTEGER"),
    ("alerts", "detail", "TEXT NOT NULL DEFAULT ''"),
    ("devices", "edm_version", "TEXT NOT NULL DEFAULT ''"),
    ("devices", "last_stream", "TEXT"),
    ("offboardings", "notice_ms", "INTEGER"),
    ("offboardings", "raise_levels", "INTEGER NOT NULL DEFAULT 0"),
    ("offboardings", "successor", "TEXT"),
    ("alerts", "assignee", "TEXT"),
    ("devices", "coverage", "TEXT"),
    ("events", "destination", "TEXT"),
    ("events", "origin", "TEXT"),
    ("events", "process", "TEXT"),
    ("alerts", "severity_rank", "INTEGER NOT NULL DEFAULT -1"),
    ("devices", "last_stop", "TEXT"),
    ("devices", "last_gap", "TEXT"),
    ("devices", "health", "TEXT NOT NULL DEFAULT ''"),
    ("alerts", "version", "INTEGER NOT NULL DEFAULT 0"),
    ("events", "external_id", "TEXT"),
    ("events", "crm_link", "INTEGER"),
    ("devices", "removed_ms", "INTEGER"),
    ("devices", "removed", "TEXT"),
];

/// Indexes over added columns (created once those exist).
pub(super) const INDEXES: &str = "
UPDATE alerts SET severity_rank = CASE severity WHEN 'low' THEN 0 WHEN 'medium' THEN 1
    WHEN 'high' THEN 2 ELSE 3 END WHERE severity_rank = -1;
CREATE INDEX IF NOT EXISTS alerts_by_severity ON alerts (severity_rank DESC, last_seen_ms DESC, id DESC);
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts (last_seen_ms DESC, id DESC);
CREATE INDEX IF NOT EXISTS alerts_by_user ON alerts (user, last_seen_ms);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user, time_ms);
CREATE INDEX IF NOT EXISTS events_by_user_corrected ON events (user, corrected_ms);
UPDATE alerts SET version = id WHERE version = 0;
CREATE INDEX IF NOT EXISTS alerts_by_version ON alerts (version);
CREATE UNIQUE INDEX IF NOT EXISTS events_external ON events (device_id, external_id)
    WHERE external_id IS NOT NULL;
-- Every insert and every change of an alert gives it the next version: forwarders follow
-- versions, so escalations and status changes reach them, whatever statement made them.
CREATE TRIGGER IF NOT EXISTS alerts_version_insert AFTER INSERT ON alerts
BEGIN
    UPDATE alerts SET version = (SELECT COALESCE(MAX(version), 0) + 1 FROM alerts)
    WHERE id = NEW.id;
END;
CREATE TRIGGER IF NOT EXISTS alerts_version_update AFTER UPDATE ON alerts
WHEN NEW.version = OLD.version
BEGIN
    UPDATE alerts SET version = (SELECT COALESCE(MAX(version), 0) + 1 FROM alerts)
    WHERE id = NEW.id;
END;
";
