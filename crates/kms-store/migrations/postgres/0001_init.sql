-- kmsd schema 1: the records (JSON bodies with indexed columns, as in the SQLite store) and the
-- change log other nodes read to drop cached copies. Text compares bytewise (COLLATE "C"), as
-- in SQLite, so listings page in the same order on both stores.
CREATE TABLE keys (
    region TEXT COLLATE "C" NOT NULL,
    key_id TEXT COLLATE "C" NOT NULL,
    account TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL,
    deletion_ms BIGINT,
    custom_key_store_id TEXT COLLATE "C",
    rotation_ms BIGINT,
    material_expiry_ms BIGINT,
    body TEXT NOT NULL,
    PRIMARY KEY (region, key_id)
);
CREATE INDEX keys_by_account ON keys (account, region, key_id);
CREATE INDEX keys_by_deletion ON keys (state, deletion_ms);
CREATE INDEX keys_by_custom_key_store ON keys (custom_key_store_id);
CREATE INDEX keys_by_rotation ON keys (rotation_ms);
CREATE INDEX keys_by_material_expiry ON keys (material_expiry_ms);
CREATE TABLE aliases (
    account TEXT COLLATE "C" NOT NULL,
    region TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    target_key_id TEXT COLLATE "C" NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (account, region, name)
);
CREATE INDEX aliases_by_target ON aliases (account, region, target_key_id, name);
CREATE TABLE access_keys (
    access_key_id TEXT COLLATE "C" PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE docs (
    kind TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE meta (
    name TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE changes (
    seq BIGSERIAL PRIMARY KEY,
    body TEXT NOT NULL
);
