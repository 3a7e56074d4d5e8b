-- The views at scale (issue 13, item 7): every org's queue (handoffs queued or processing,
-- the oldest first) and its counts by state read this index alone, and an org's handoffs in
-- one state come from it newest first.
CREATE INDEX handoffs_waiting ON handoffs (state, org_id, created_at);
