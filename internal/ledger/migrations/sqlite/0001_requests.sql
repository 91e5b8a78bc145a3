CREATE TABLE requests (
    id             TEXT    PRIMARY KEY,   -- request id: the signature, lower-case hex
    task           TEXT    NOT NULL,
    state          TEXT    NOT NULL,      -- pending | final
    payment_hash   TEXT,                  -- hex
    pay_state      TEXT    NOT NULL DEFAULT '', -- '' | paying | paid | unpaid
    record_key     BLOB,
    record_headers TEXT    NOT NULL DEFAULT '[]',
    result         BLOB,
    created_at     INTEGER NOT NULL,      -- Unix ms
    updated_at     INTEGER NOT NULL
);

-- At most one request holds a payment hash: the one paying it, or the one that paid it.
CREATE UNIQUE INDEX requests_payment_holder ON requests (payment_hash) WHERE pay_state IN ('paying', 'paid');

CREATE INDEX requests_unfinished ON requests (created_at) WHERE state = 'pending' OR pay_state = 'paying';
