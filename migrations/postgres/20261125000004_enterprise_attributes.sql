-- The rest of the SCIM Enterprise User extension, kept as sent: an identity provider's
-- department text (when it names no org unit), organization, division and cost center.
ALTER TABLE members ADD COLUMN department TEXT;
ALTER TABLE members ADD COLUMN organization TEXT;
ALTER TABLE members ADD COLUMN division TEXT;
ALTER TABLE members ADD COLUMN cost_center TEXT;
