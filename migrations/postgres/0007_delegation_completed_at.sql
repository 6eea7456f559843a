-- When a delegation reached Completed (PROTOCOL B.7): the ownership map
-- dates the new authority's management from then, not from the request.
ALTER TABLE delegations ADD COLUMN completed_at BIGINT;
UPDATE delegations SET completed_at = updated_at WHERE state = 'Completed';
