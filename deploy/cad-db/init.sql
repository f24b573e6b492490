-- A CAD reporting database as config/ingest.toml reads it: one row per call, updated in place, its last update
-- in updated_at. compose.yaml's cad-writer job loads the bundled Nashville sample into it, a row at a time.
CREATE TABLE calls_for_service (
    id bigserial PRIMARY KEY,
    event_number text NOT NULL,
    tencode text,
    tencode_desc text,
    tencode_suffix_desc text,
    latitude double precision,
    longitude double precision,
    call_received text,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX calls_for_service_watermark ON calls_for_service (updated_at, (id::text));

-- The export as it comes (every column text): the writer copies it here, then moves it row by row.
CREATE TABLE export_staging (
    objectid text, event_number text, complaint_number text, tencode text, tencode_desc text, tencode_suffix text,
    tencode_suffix_desc text, disposition_code text, disposition_desc text, block text, street_name text,
    unit_dispatched text, shift text, sector text, zone text, latitude text, longitude text, rpa text,
    call_received text
);

CREATE ROLE dispatch_trigger LOGIN PASSWORD 'change-me';
GRANT SELECT ON calls_for_service TO dispatch_trigger;
