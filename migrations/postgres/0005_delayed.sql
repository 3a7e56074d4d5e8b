-- When the widget backend was told that the handoff is taking longer than the org's
-- patience (`handoff.delayed`); NULL until then.
ALTER TABLE handoffs ADD COLUMN delayed_at BIGINT;
