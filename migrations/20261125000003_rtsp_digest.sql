-- RTSP Digest, opt-in per user: HA1 = MD5(username ":" realm ":" password) with the realm
-- "streamplane" (streamplane_proto::RTSP_REALM). HA1 is a password equivalent for RTSP Digest
-- and a fast hash, so it is stored only for users with rtsp_digest turned on (NULL otherwise),
-- computed when their password is set, and never returned by the API. rtsp_digest is
-- `digest_ha1 IS NOT NULL`.
ALTER TABLE users
    ADD COLUMN digest_ha1 bytea CHECK (digest_ha1 IS NULL OR octet_length(digest_ha1) = 16);
