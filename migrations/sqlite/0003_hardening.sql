-- Retention: when a settled handoff's session (summary, contact details, transcript) was
-- removed from `payload`. NULL while it is kept.
ALTER TABLE handoffs ADD COLUMN redacted_at BIGINT;
CREATE INDEX handoffs_retention ON handoffs (redacted_at, updated_at);

-- The webhook-id of a `received` / `duplicate_delivery` event, so a replayed delivery adds
-- no second event.
ALTER TABLE handoff_events ADD COLUMN webhook_id TEXT;
CREATE INDEX handoff_events_webhook ON handoff_events (handoff_id, webhook_id);
