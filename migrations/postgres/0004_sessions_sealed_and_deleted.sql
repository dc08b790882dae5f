-- session_key is kept sealed (AES-256-GCM under a key derived from the merchant API key, see
-- src/sealed.rs): the database alone reveals nothing. Sessions from before this migration hold
-- it in plain text: they are deleted, not converted (SQL cannot seal), so those users log in
-- again (wx.login); their orders stay theirs (by openid).
DELETE FROM sessions;
ALTER TABLE sessions RENAME COLUMN session_key TO session_key_sealed;

-- Expired sessions are deleted after MINIPAY_SESSION_RETENTION_SECS.
CREATE INDEX sessions_expiry ON sessions (expires_at);
