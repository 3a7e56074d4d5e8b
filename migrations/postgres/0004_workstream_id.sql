-- The column holds a workstream GUID; `default_queue_id` is only OpenCX's name for the
-- setting, kept at the API edge.
ALTER TABLE connections RENAME COLUMN default_queue_id TO workstream_id;
