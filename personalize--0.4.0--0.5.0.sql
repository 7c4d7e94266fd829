-- personalize 0.4.0 -> 0.5.0: a wait for the worker that holds no snapshot.
--
-- wait_for_apply() waits inside its statement's snapshot, whose xmin keeps
-- VACUUM and page pruning from removing the row versions that die
-- meanwhile, the worker's updates of the profiles among them.  The
-- procedure await_apply() releases CALL's snapshot before it waits.

\echo Use "ALTER EXTENSION personalize UPDATE TO '0.5.0'" to load this file. \quit

CREATE PROCEDURE await_apply(timeout interval DEFAULT '60 seconds')
AS 'MODULE_PATHNAME', 'pz_await_apply'
LANGUAGE C;
COMMENT ON PROCEDURE await_apply(interval) IS
    'CALL it to wait until this database''s worker has applied every transaction committed before the call; an ERROR if timeout passes first.  Unlike wait_for_apply(), it holds no snapshot while it waits, so VACUUM and page pruning go on meanwhile.  A statement of its own, or in a DO block or procedure run outside a transaction block; not in REPEATABLE READ or SERIALIZABLE transactions.';

COMMENT ON FUNCTION wait_for_apply(interval) IS
    'Wait until this database''s worker has applied every transaction committed before the call; false if timeout passed first.  Call it after committing, not inside the transaction that wrote the events.  It waits inside its statement''s snapshot, which keeps VACUUM from removing what dies meanwhile: for long waits CALL await_apply().';
