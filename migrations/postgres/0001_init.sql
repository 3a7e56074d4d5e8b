-- Times are Unix milliseconds (BIGINT); JSON documents are TEXT; booleans are 0/1.

CREATE TABLE orgs (
    org_id                      TEXT PRIMARY KEY,
    name                        TEXT NOT NULL,
    callback_url                TEXT,
    webhook_secret_enc          TEXT NOT NULL,
    previous_webhook_secret_enc TEXT,
    previous_secret_expires_at  BIGINT,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL
);

CREATE TABLE connections (
    org_id                    TEXT PRIMARY KEY REFERENCES orgs (org_id),
    tenant_id                 TEXT NOT NULL,
    client_id                 TEXT NOT NULL,
    client_secret_enc         TEXT NOT NULL,
    environment_url           TEXT NOT NULL,
    default_queue_id          TEXT NOT NULL,
    create_contact_if_missing BIGINT NOT NULL,
    status                    TEXT NOT NULL,
    checks                    TEXT NOT NULL,
    last_checked_at           BIGINT NOT NULL,
    created_at                BIGINT NOT NULL,
    updated_at                BIGINT NOT NULL
);

CREATE TABLE handoffs (
    handoff_id          TEXT PRIMARY KEY,
    org_id              TEXT NOT NULL REFERENCES orgs (org_id),
    session_id          TEXT NOT NULL,
    webhook_id          TEXT NOT NULL,
    channel             TEXT NOT NULL,
    payload_version     BIGINT NOT NULL,
    payload             TEXT NOT NULL,
    state               TEXT NOT NULL,
    contact_match       TEXT,
    contact_id          TEXT,
    dynamics365_chat_id TEXT,
    workstream_id       TEXT,
    attempts            BIGINT NOT NULL DEFAULT 0,
    next_attempt_at     BIGINT NOT NULL,
    first_attempt_at    BIGINT,
    lease_id            TEXT,
    lease_until         BIGINT,
    last_error          TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    UNIQUE (org_id, session_id)
);
CREATE INDEX handoffs_due ON handoffs (state, next_attempt_at);
CREATE INDEX handoffs_recent ON handoffs (org_id, created_at);

CREATE TABLE handoff_events (
    event_id   BIGSERIAL PRIMARY KEY,
    handoff_id TEXT NOT NULL REFERENCES handoffs (handoff_id),
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    detail     TEXT NOT NULL
);
CREATE INDEX handoff_events_handoff ON handoff_events (handoff_id, event_id);

CREATE TABLE callbacks (
    webhook_id      TEXT PRIMARY KEY,
    handoff_id      TEXT NOT NULL REFERENCES handoffs (handoff_id),
    org_id          TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_id        TEXT,
    lease_until     BIGINT,
    last_error      TEXT,
    delivered_at    BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX callbacks_due ON callbacks (state, next_attempt_at);
CREATE INDEX callbacks_handoff ON callbacks (handoff_id);
