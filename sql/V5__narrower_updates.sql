-- The application may change a bill's state and a processed request's reply, nothing else of
-- them: not an amount, not a stored fingerprint. (V2 granted UPDATE on whole rows.)
REVOKE UPDATE ON bills FROM qbill_application;
GRANT UPDATE (status, payment_id) ON bills TO qbill_application;
REVOKE UPDATE ON processed_requests FROM qbill_application;
GRANT UPDATE (reply) ON processed_requests TO qbill_application;
