-- 002_token_vault: what the fetcher needs beside the sealed tokens of 001's `connections`.
-- token_generation counts refreshes; a refresh commits the new tokens with generation + 1 under
-- the Redis refresh lock, and `auren-admin keys rotate` re-seals a row only if its generation is
-- unchanged, so a rotation never overwrites a token refreshed meanwhile.
-- status_reason says why a connection left 'active' (e.g. invalid_grant); never a token.
ALTER TABLE connections
    ADD COLUMN token_generation bigint NOT NULL DEFAULT 0,
    ADD COLUMN refreshed_at     timestamptz,
    ADD COLUMN status_reason    text;

-- The fetcher turns a vendor delete into tombstones for the rows of that vendor record.
CREATE INDEX biometric_events_vendor_record_idx
    ON biometric_events (vendor, user_id, source_record_id text_pattern_ops);
