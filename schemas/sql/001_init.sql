-- 001_init: the bridge's PostgreSQL schema.
-- Applied by `auren-admin migrate`, which runs each schemas/sql/NNN_name.sql not yet recorded in
-- schema_migrations in its own transaction (so a file holds no BEGIN/COMMIT of its own) and
-- records its version in the same transaction. A released file is never edited: add NNN+1.

-- The migration log. auren-admin creates it (same definition) before reading it, so this
-- statement only matters when the file is applied by hand.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- One row per normalized BiometricEvent (schemas/avro BiometricEvent). event_id is deterministic
-- per vendor record, so replays and redeliveries insert nothing new (ON CONFLICT DO NOTHING).
CREATE TABLE biometric_events (
    event_id           text PRIMARY KEY,
    user_id            text NOT NULL,
    vendor             text NOT NULL,
    metric             text NOT NULL,
    value              double precision NOT NULL,
    unit               text NOT NULL,
    loinc              text,
    start_time         timestamptz NOT NULL,
    end_time           timestamptz NOT NULL,
    utc_offset_seconds integer,
    source_record_id   text NOT NULL,
    raw_event_id       text NOT NULL,
    ingested_at        timestamptz NOT NULL,
    received_at        timestamptz NOT NULL,
    deleted            boolean NOT NULL DEFAULT false,
    persisted_at       timestamptz NOT NULL DEFAULT now()
);

-- A user's series of one metric over time: the history query.
CREATE INDEX biometric_events_user_metric_time_idx
    ON biometric_events (user_id, metric, start_time);

-- Vendor account -> our user, with the OAuth tokens sealed with AES-256-GCM. key_id names the
-- TOKEN_ENCRYPTION_KEYS entry that sealed both ciphertexts, so keys can rotate.
CREATE TABLE connections (
    vendor           text NOT NULL,
    vendor_user_id   text NOT NULL,
    user_id          text NOT NULL,
    status           text NOT NULL DEFAULT 'active'
                     CHECK (status IN ('active', 'revoked', 'reconsent_required')),
    access_token_ct  bytea,
    refresh_token_ct bytea,
    key_id           text,
    expires_at       timestamptz,
    scopes           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vendor, vendor_user_id)
);
