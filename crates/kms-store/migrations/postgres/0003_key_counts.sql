-- kmsd schema 3: keys per account and Region, kept by every write that adds or removes a key,
-- so CreateKey's quota check reads one row instead of counting up to 100,000 keys.
CREATE TABLE key_counts (
    account TEXT COLLATE "C" NOT NULL,
    region TEXT COLLATE "C" NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (account, region)
);
INSERT INTO key_counts (account, region, n)
    SELECT account, region, COUNT(*) FROM keys GROUP BY account, region;
