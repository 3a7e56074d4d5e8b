-- When the widget backend was told that the handoff is taking longer than the org's
-- patience (`handoff.delayed`); NULL until then.
ALTER TABLE handoffs ADD COLUMN delayed_at BIGINT;

-- Claims take expired leases in index order (the queued ones use `handoffs_due`).
CREATE INDEX handoffs_leases ON handoffs (state, lease_until);
