-- Records many events of one kind at once: one per (user, key, data, address) of the arrays, each as
-- the user's preferences say (see `notify` in V11: in the inbox, mailed, both or neither; security
-- mail cannot be turned off; verification and reset mail go to the address given and never to the
-- inbox; other mail to the user's verified address only; the same key again changes nothing). One
-- INSERT for the lot, where a call of `notify` each was a function call, a lookup of the user and an
-- INSERT each: a batch of payments records its receipts with one statement. Returns, for each row
-- recorded, its id when it is to be mailed (else NULL), for the prompt send after the commit.
CREATE FUNCTION notify_all(p_users bigint[], p_event text, p_keys text[], p_data jsonb[], p_to text[] DEFAULT NULL)
RETURNS SETOF bigint LANGUAGE sql AS $$
    WITH wanted AS (
        SELECT t.user_id, t.key, t.data,
               CASE WHEN p_event IN ('account.verify_email', 'account.password_reset') THEN t.address
                    ELSE coalesce(t.address, CASE WHEN u.email_verified THEN u.email END) END AS address,
               CASE WHEN p_event IN ('account.verify_email', 'account.password_reset') THEN true
                    ELSE p_event = 'account.security'
                         OR coalesce((u.notification_preferences -> p_event ->> 'email')::boolean, true) END AS mail,
               CASE WHEN p_event IN ('account.verify_email', 'account.password_reset') THEN false
                    ELSE coalesce((u.notification_preferences -> p_event ->> 'inbox')::boolean, true) END AS inbox
        FROM unnest(p_users, p_keys, p_data,
                    coalesce(p_to, array_fill(NULL::text, ARRAY[cardinality(p_users)])))
             AS t(user_id, key, data, address)
        JOIN users u ON u.id = t.user_id AND u.deleted_at IS NULL
    )
    INSERT INTO notifications (user_id, event, key, data, in_inbox, mail_to, mail_status, next_attempt_at)
    SELECT user_id, p_event, key, data, inbox,
           CASE WHEN mail AND address IS NOT NULL THEN address END,
           CASE WHEN mail AND address IS NOT NULL THEN 'pending' END,
           CASE WHEN mail AND address IS NOT NULL THEN now() END
    FROM wanted
    WHERE (mail AND address IS NOT NULL) OR inbox
    ON CONFLICT (key) DO NOTHING
    RETURNING CASE WHEN mail_to IS NOT NULL THEN id END
$$;

-- One event for one user: `notify_all` of one, so that the rules live in one place.
CREATE OR REPLACE FUNCTION notify(p_user bigint, p_event text, p_key text, p_data jsonb, p_to text DEFAULT NULL)
RETURNS bigint LANGUAGE sql AS $$
    SELECT max(m) FROM notify_all(ARRAY[p_user], p_event, ARRAY[p_key], ARRAY[p_data], ARRAY[p_to]) AS m
$$;

REVOKE EXECUTE ON FUNCTION notify_all(bigint[], text, text[], jsonb[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION notify_all(bigint[], text, text[], jsonb[], text[]) TO qbill_application;
