-- Media sessions an operator kicked (DELETE /api/v1/sessions/{id}). Part of the desired state:
-- workers close any session listed in a recent snapshot. Rows older than ten minutes are no
-- longer sent and are deleted opportunistically (a reconnecting client gets a new session id).
CREATE TABLE kicked_sessions (
    session_id text PRIMARY KEY,
    kicked_at  timestamptz NOT NULL DEFAULT now(),
    kicked_by  uuid
);

CREATE TRIGGER kicked_sessions_bump AFTER INSERT OR UPDATE OR DELETE ON kicked_sessions
    FOR EACH STATEMENT EXECUTE FUNCTION bump_desired_state();
