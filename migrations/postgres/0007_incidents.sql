-- Non-chat channels become incidents (issue 12): the incident a handoff created and its
-- case number, read back on create; NULL for chats and until it exists.
ALTER TABLE handoffs ADD COLUMN dynamics365_incident_id TEXT;
ALTER TABLE handoffs ADD COLUMN dynamics365_ticket_number TEXT;
-- The connection's incident settings as JSON (fallback customer, priority, case origins,
-- owner, routing); NULL reads as the defaults.
ALTER TABLE connections ADD COLUMN incidents TEXT;
