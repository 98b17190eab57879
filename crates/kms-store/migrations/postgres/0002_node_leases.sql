-- kmsd schema 2: leases of the nodes that serve from caches fed by the change feed
-- (LISTEN/NOTIFY); a writer waits for each leased node's acknowledgement or for its lease to
-- lapse before answering.
CREATE TABLE kmsd_nodes (
    node_id TEXT COLLATE "C" PRIMARY KEY,
    lease_until TIMESTAMPTZ NOT NULL
);
