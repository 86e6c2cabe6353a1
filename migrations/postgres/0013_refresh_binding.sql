-- A refresh family remembers the DPoP key its login was bound to (RFC 9449 §5): every
-- refresh of a bound family must prove possession of that key. NULL: not bound.
ALTER TABLE refresh_families ADD COLUMN jkt TEXT;
