-- A payment of a batch that is refused gives its request id back: its claim, made before the
-- batch knew the outcome, is removed in the batch's own transaction, so the same id may run
-- afresh later (as a lone payment's rolled-back claim would). The application role may not delete
-- from processed_requests (the idempotency record of every answered request), so the release is
-- this function, which deletes only claims still without a reply: a claim of an open transaction,
-- never the record of an answered request.
CREATE FUNCTION release_claims(p_request_ids uuid[]) RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    WITH released AS (
        DELETE FROM processed_requests
        WHERE request_id = ANY(p_request_ids) AND reply IS NULL
        RETURNING 1)
    SELECT count(*)::integer FROM released
$$;

REVOKE ALL ON FUNCTION release_claims(uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION release_claims(uuid[]) TO qbill_application;
