-- Streamplane schema: users, paths, ACL rules, workers, signing keys and an audit log.
-- Every change to what workers must serve bumps one global generation and notifies listeners,
-- whichever control-plane process made it.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    -- PHC string, argon2id.
    password_hash text NOT NULL,
    -- NULL: no access to the REST API, media access through ACL rules only.
    role          text CHECK (role IN ('admin', 'operator', 'viewer')),
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    created_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    updated_by    uuid REFERENCES users (id) ON DELETE SET NULL
);

CREATE TABLE paths (
    id                          uuid PRIMARY KEY,
    -- Exact name, or '~' followed by a regular expression.
    name                        text NOT NULL UNIQUE,
    source_kind                 text NOT NULL CHECK (source_kind IN ('publisher', 'url')),
    source_url                  text,
    source_on_demand            boolean NOT NULL DEFAULT false,
    source_on_demand_start_timeout_ms integer NOT NULL DEFAULT 10000 CHECK (source_on_demand_start_timeout_ms > 0),
    source_on_demand_close_after_ms   integer NOT NULL DEFAULT 10000 CHECK (source_on_demand_close_after_ms >= 0),
    max_readers                 integer NOT NULL DEFAULT 0 CHECK (max_readers >= 0),
    override_publisher          boolean NOT NULL DEFAULT true,
    record                      boolean NOT NULL DEFAULT false,
    publisher_grace_ms          integer NOT NULL DEFAULT 0 CHECK (publisher_grace_ms >= 0),
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    created_by                  uuid REFERENCES users (id) ON DELETE SET NULL,
    updated_by                  uuid REFERENCES users (id) ON DELETE SET NULL,
    CHECK ((source_kind = 'url') = (source_url IS NOT NULL))
);

CREATE TABLE acl_rules (
    id           uuid PRIMARY KEY,
    -- NULL: the rule applies to everyone, anonymous clients included.
    user_id      uuid REFERENCES users (id) ON DELETE CASCADE,
    action       text NOT NULL CHECK (action IN ('publish', 'read', 'playback', 'api', 'metrics')),
    -- Empty: every path. Otherwise an exact name or '~regex'.
    path_pattern text NOT NULL DEFAULT '',
    ip_networks  cidr[] NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    created_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    updated_by   uuid REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX acl_rules_user_id ON acl_rules (user_id);

CREATE TABLE workers (
    id                   uuid PRIMARY KEY,
    name                 text NOT NULL UNIQUE,
    advertised_addresses text[] NOT NULL DEFAULT '{}',
    capabilities         text[] NOT NULL DEFAULT '{}',
    version              text NOT NULL DEFAULT '',
    labels               jsonb NOT NULL DEFAULT '{}',
    status               text NOT NULL DEFAULT 'online' CHECK (status IN ('online', 'offline')),
    registered_at        timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at    timestamptz,
    applied_generation   bigint NOT NULL DEFAULT 0,
    apply_error          text,
    last_report          jsonb
);

CREATE TABLE signing_keys (
    kid         text PRIMARY KEY,
    algorithm   text NOT NULL CHECK (algorithm = 'EdDSA'),
    -- PKCS#8 DER of the Ed25519 private key.
    private_key bytea NOT NULL,
    -- Raw 32-byte public key.
    public_key  bytea NOT NULL,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor_id   uuid,
    actor_name text NOT NULL,
    action     text NOT NULL,
    entity     text NOT NULL,
    entity_id  text NOT NULL,
    detail     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_entity ON audit_log (entity, entity_id);

-- One row: the generation of the desired state. It only ever grows.
CREATE TABLE desired_state (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    generation bigint NOT NULL
);
INSERT INTO desired_state (singleton, generation) VALUES (true, 1);

CREATE FUNCTION bump_desired_state() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    next bigint;
BEGIN
    UPDATE desired_state SET generation = generation + 1 RETURNING generation INTO next;
    -- Delivered on commit, to every control-plane process listening.
    PERFORM pg_notify('streamplane_desired_state', next::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER users_bump AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION bump_desired_state();
CREATE TRIGGER paths_bump AFTER INSERT OR UPDATE OR DELETE ON paths
    FOR EACH STATEMENT EXECUTE FUNCTION bump_desired_state();
CREATE TRIGGER acl_rules_bump AFTER INSERT OR UPDATE OR DELETE ON acl_rules
    FOR EACH STATEMENT EXECUTE FUNCTION bump_desired_state();
CREATE TRIGGER signing_keys_bump AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION bump_desired_state();
