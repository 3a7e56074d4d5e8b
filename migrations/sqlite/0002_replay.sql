-- When a callback's retry window started: its creation, or its last replay.
ALTER TABLE callbacks ADD COLUMN window_started_at BIGINT;
