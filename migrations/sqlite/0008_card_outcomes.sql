-- The connection card follows handoff outcomes (issue 13): when a handoff last reached
-- Dynamics, when one last failed for a reason of the connection (and the diagnosis, JSON),
-- and since when the connection has been failing that way (cleared by a success). Unix ms.
ALTER TABLE connections ADD COLUMN last_success_at BIGINT;
ALTER TABLE connections ADD COLUMN last_failure_at BIGINT;
ALTER TABLE connections ADD COLUMN last_failure TEXT;
ALTER TABLE connections ADD COLUMN failing_since BIGINT;
-- When the connection's client secret expires, as the admin entered it (Entra ID does not
-- tell a client-credentials caller); the card warns ahead of it. NULL when not given.
ALTER TABLE connections ADD COLUMN client_secret_expires_at BIGINT;
