-- An org's OpenCX connection (issue 11): the API key the bridge fetches thin handoff
-- events' sessions with and writes the work item id back with. Times are Unix ms;
-- booleans are 0/1; `checks` is the JSON array of the last test-and-save.
CREATE TABLE opencx_connections (
    org_id                  TEXT PRIMARY KEY REFERENCES orgs (org_id),
    base_url                TEXT NOT NULL,
    api_key_enc             TEXT NOT NULL,
    contact_emails_verified BIGINT NOT NULL,
    write_back_message      TEXT,
    status                  TEXT NOT NULL,
    checks                  TEXT NOT NULL,
    last_checked_at         BIGINT NOT NULL,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL
);
