-- A pay request's invoice, and the instance that owns its work under a lease.
ALTER TABLE requests ADD COLUMN payment_request TEXT;    -- BOLT11, so that any owner can resume it
ALTER TABLE requests ADD COLUMN owner           TEXT;    -- while not final
ALTER TABLE requests ADD COLUMN unpublished     INTEGER NOT NULL DEFAULT 0; -- 1: final, its result not yet published by its owner
ALTER TABLE requests ADD COLUMN lease_until     INTEGER NOT NULL DEFAULT 0; -- Unix ms; 0: not leased, free to take

-- 'paying' is named 'sending' from now on: the holder may have sent its payment.
DROP INDEX requests_payment_holder;
DROP INDEX requests_unfinished;
UPDATE requests SET pay_state = 'sending' WHERE pay_state = 'paying';

-- At most one request holds a payment hash: the one sending it, or the one that paid it.
CREATE UNIQUE INDEX requests_payment_holder ON requests (payment_hash) WHERE pay_state IN ('sending', 'paid');

CREATE INDEX requests_unfinished ON requests (created_at) WHERE state = 'pending' OR pay_state = 'sending';

-- The leases of pay requests not final, or final and not yet published:
-- only work in flight, however many requests the table holds.
CREATE INDEX requests_leases ON requests (lease_until) WHERE (state = 'pending' OR unpublished = 1) AND task = 'pay';

-- Requests waiting for an invoice another request holds.
CREATE INDEX requests_waiting ON requests (payment_hash) WHERE state = 'pending' AND pay_state = '';
